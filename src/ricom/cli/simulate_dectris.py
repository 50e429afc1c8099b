"""ricom simulate dectris --api-port P --stream-port Z (--from FILE | --demo) [options]

Serve frames exactly as a DECTRIS detector (ARINA, QUADRO, EIGER2) does: the SIMPLON
REST API on --api-port (http://HOST:P/detector/api/1.8.0/config/nimages, …/command/arm,
…) and a ZeroMQ PUSH stream on --stream-port, in the legacy format V1 (multipart JSON
+ blobs) or V2 (CBOR), compressed with bitshuffle-LZ4, LZ4 or not at all.  A client
sets trigger_mode/nimages/ntrigger, arms (the answer holds the sequence id, the series
header goes out at once), and reads the header, ntrigger × nimages frames and the end
message.  In the external trigger modes (exts, exte: the default, ntrigger = scan
positions) the frames follow the arm at once, as if the scan generator pulsed; ints/inte
wait for PUT …/command/trigger.  --acquisitions N arms by itself N times, as microscope
software does for a passive client.  --from serves the frames of a file any ricom reader
opens (repeated when a series is longer); --demo serves the built-in SrTiO3 specimen
(specimen options below; --dose gives realistic low-count Poisson frames).  The fault
options exercise clients: image messages of the previous series before a header, a
series that ends early, a stream that stalls, masked and hot pixels, a header without
bit_depth_image (like EIGER firmware 1.6.6), no header.  Ctrl-C stops the server.

Example:  ricom simulate dectris --demo --dose 50 --scan-shape 64 64 --detector-shape 96 96 \\
              --api-port 8910 --stream-port 9999 --rate 2000
          curl -X PUT http://127.0.0.1:8910/detector/api/1.8.0/command/arm
"""
from __future__ import annotations

import sys

from ricom.cli.simulate import add_server_arguments, add_specimen_arguments, simulator_data

HELP = "a DECTRIS detector: SIMPLON REST API and ZeroMQ stream V1/V2"


def add_arguments(p) -> None:
    s = add_server_arguments(p, "serve the frames of this file")
    s.add_argument("--api-port", type=int, default=8910, metavar="P", help="REST API port (default 8910; 0 = any)")
    s.add_argument("--stream-port", type=int, default=9999, metavar="Z",
                   help="ZeroMQ stream port (default 9999; V2 detectors use 31001; 0 = any)")
    s.add_argument("--stream", choices=("v1", "v2"), default="v1",
                   help="stream format: v1 (legacy: multipart JSON) or v2 (CBOR); REST stream/config/format too")
    s.add_argument("--compression", choices=("bslz4", "lz4", "none"), default="bslz4",
                   help="image compression: bitshuffle-LZ4, LZ4 or none")
    s.add_argument("--bit-depth", type=int, choices=(8, 16, 32), default=16, help="bit_depth_image (default 16)")
    s.add_argument("--roi", choices=("disabled", "merge2x2"), default="disabled",
                   help="merge2x2 sums 2×2 pixels (ARINA's 96×96 mode)")
    s.add_argument("--header-detail", choices=("all", "basic", "none"), default="all",
                   help="how much of the detector configuration the series header carries")
    s.add_argument("--split-header", action="store_true",
                   help="V1: send the dheader and the config JSON as two single-part messages")
    s.add_argument("--rate", type=float, default=0.0, metavar="HZ", help="frames per second (0 = as fast as possible)")
    s.add_argument("--acquisitions", type=int, default=0, metavar="N",
                   help="arm by itself N times (0 = only on arm commands), --between apart")
    s.add_argument("--between", type=float, default=0.5, metavar="S", help="pause before each of those (default 0.5)")
    s.add_argument("--quiet", action="store_true", help="do not log series")
    f = p.add_argument_group("fault injection")
    f.add_argument("--leftover-images", type=int, default=0, metavar="K",
                   help="K image messages of the previous series before each header")
    f.add_argument("--end-after", type=int, metavar="N", help="end each series after N frames (with its end message)")
    f.add_argument("--stall-after", type=int, metavar="N",
                   help="send N frames, then nothing (no end message) with the socket open")
    f.add_argument("--masked-pixels", type=int, default=0, metavar="N",
                   help="N random dead/noisy pixels in the pixel mask (read 2^bit_depth − 1)")
    f.add_argument("--hot-readings", type=int, default=0, metavar="N",
                   help="N single readings at the saturation value")
    f.add_argument("--omit-bit-depth", action="store_true",
                   help="V1 header config without bit_depth_image (as EIGER firmware 1.6.6)")
    f.add_argument("--no-header", action="store_true", help="never send the series header")
    add_specimen_arguments(p)
    p.set_defaults(scan_shape=None)


def build_simulator(args):
    """The `DectrisSimulator` that ``args`` describe (not started)."""
    from ricom.simulators.dectris import DectrisFaults, DectrisSimulator

    data = simulator_data(args)
    faults = DectrisFaults(leftover_images=args.leftover_images, end_after=args.end_after,
                           stall_after=args.stall_after, masked_pixels=args.masked_pixels,
                           hot_readings=args.hot_readings, omit_bit_depth=args.omit_bit_depth,
                           no_header=args.no_header, seed=args.seed)
    def log(text: str) -> None:  # one write per line: the REST and stream threads both log
        sys.stderr.write(f"ricom simulate dectris: {text}\n")
        sys.stderr.flush()

    return DectrisSimulator(data, scan_shape=args.scan_shape, host=args.host, api_port=args.api_port,
                            stream_port=args.stream_port, stream=args.stream, compression=args.compression,
                            rate_hz=args.rate, roi=args.roi, bit_depth=args.bit_depth,
                            header_detail=args.header_detail, faults=faults, acquisitions=args.acquisitions,
                            between_s=args.between, split_header=args.split_header,
                            log=None if args.quiet else log)


def run(args) -> int:
    sim = build_simulator(args).start()
    h, w = sim.image_shape
    frames = sim.config["detector"]["ntrigger"] * sim.config["detector"]["nimages"]
    print(f"DECTRIS simulator on {args.host}: REST http://{args.host}:{sim.api_port}/detector/api/1.8.0/, "
          f"stream tcp://{args.host}:{sim.stream_port} ({args.stream}, {args.compression}); {sim.store.n_frames} "
          f"frames of {h}×{w}, {frames} per series ({sim.config['detector']['trigger_mode']}); Ctrl-C stops",
          flush=True)
    try:
        sim.serve_forever()
    except KeyboardInterrupt:
        print("ricom simulate dectris: stopped", file=sys.stderr)
    return 0
