"""ricom simulate merlin --port P (--from FILE.mib | --demo) [options]

Serve MIB frames over TCP exactly as a Quantum Detectors Merlin does: a control port
(GET/SET/CMD requests, e.g. SET COUNTERDEPTH 6, CMD STARTACQUISITION) and a data port
that sends, for each acquisition, the acquisition header and then one message per
frame, each framed as 'MPX,<10-digit length + 1>,<payload>'.  --from serves the frames
of a .mib file (byte for byte unless --depth/--raw ask for another encoding); --demo
serves the built-in SrTiO3 specimen (specimen options below; without --dose the
intensities are scaled so the brightest pixel is full scale at the counter depth).

An acquisition starts on CMD STARTACQUISITION (--start-on command), as soon as a data
client connects (--start-on connect), or by default on whichever comes first:
STARTACQUISITION, or 0.5 s after the data client connected.  With SET TRIGGERSTART 5
(soft trigger) the frames then wait for CMD SOFTTRIGGER.  The fault options
exercise clients: stale bytes before a header, several acquisitions one after another
on one connection (each with its own header, sequence numbers from 1 and perhaps its
own scan size), a scan aborted after K frames, a header whose scan size disagrees
with the frames, a stream that stalls with the connection open, a connection dropped
mid-frame, a truncated frame, messages split into random small pieces.  Options that
take K[,K…] give one value per acquisition in turn ('none' = no fault in that one).
Ctrl-C stops the server.

Example:  ricom simulate merlin --demo --scan-shape 32 32 --depth 6 --rate 2000
          ricom live merlin --data-port 6342 -o live.h5
          ricom simulate merlin --demo --acquisitions 3 --between 1 --scan-shapes 64x64,32x32 \
              --abort-after none,100 --junk-between 300
"""
from __future__ import annotations

import argparse
import sys

from ricom.cli.simulate import add_server_arguments, add_specimen_arguments, simulator_data

HELP = "a Merlin detector server over TCP"


def add_arguments(p) -> None:
    s = add_server_arguments(p, "serve the frames of this .mib file", "FILE.mib")
    s.add_argument("--port", type=int, default=6342, metavar="P", help="data port (default 6342; 0 = any free)")
    s.add_argument("--control-port", type=int, metavar="P",
                   help="control port (default: data port − 1, i.e. 6341; 0 = any free; -1 = none)")
    s.add_argument("--rate", type=float, default=0.0, metavar="HZ", help="frames per second (0 = as fast as possible)")
    s.add_argument("--depth", type=int, choices=(1, 6, 12, 24),
                   help="counter depth (default: the file's, else 12); SET COUNTERDEPTH changes it")
    s.add_argument("--raw", action="store_true", help="send raw R64 frames (SET FILEFORMAT 2 does the same)")
    s.add_argument("--repeat", type=int, default=1, metavar="K", help="passes over the frames per acquisition")
    s.add_argument("--start-on", choices=("auto", "connect", "command"), default="auto",
                   help="when an acquisition starts (default auto: STARTACQUISITION or 0.5 s after a client "
                        "connects)")
    s.add_argument("--cache-mb", type=int, default=1024, metavar="MB",
                   help="keep an encoded pass over the frames in memory up to this size (default 1024)")
    s.add_argument("--preload", action="store_true",
                   help="encode the pass into that cache before listening, so even the first pass is sent from memory")
    s.add_argument("--once", action="store_true", help="exit after the first data connection ends")
    s.add_argument("--quiet", action="store_true", help="do not log connections and acquisitions")
    f = p.add_argument_group("fault injection")
    f.add_argument("--junk-bytes", type=int, default=0, metavar="N", help="stale bytes before the first header")
    f.add_argument("--junk-between", type=int, default=0, metavar="N", help="stale bytes before each later header")
    f.add_argument("--acquisitions", type=int, default=1, metavar="N",
                   help="acquisitions one after another on each data connection, without the control port")
    f.add_argument("--between", type=float, default=0.0, metavar="S", help="pause between those acquisitions")
    f.add_argument("--scan-shapes", type=_shapes, metavar="SYxSX[,SYxSX…]",
                   help="scan of each acquisition in turn (its frames: the first SY·SX of the data, cycling)")
    f.add_argument("--abort-after", type=_counts, metavar="K[,K…]", help="end each acquisition after K frames")
    f.add_argument("--header-scan-shape", type=int, nargs=2, metavar=("SY", "SX"),
                   help="write this ScanY/ScanX in the header (frame count SY·SX) whatever is sent")
    f.add_argument("--header-frames", type=_counts, metavar="N[,N…]",
                   help="write this 'Frames in Acquisition' in the header")
    f.add_argument("--stall-after", type=_counts, metavar="K[,K…]",
                   help="send K frames, then nothing while the connection stays open")
    f.add_argument("--disconnect-after", type=int, metavar="N",
                   help="drop the connection after N frames, in the middle of frame N+1")
    f.add_argument("--truncate-frame", type=int, metavar="N", help="send frame N with its last quarter missing")
    f.add_argument("--split-messages", action="store_true", help="send in random pieces of 1 B to 4 KiB")
    add_specimen_arguments(p)
    p.set_defaults(scan_shape=None)


def _shapes(text: str) -> list[tuple[int, int]]:
    """``"64x64,32x32"`` → ``[(64, 64), (32, 32)]``."""
    try:
        return [tuple(int(v) for v in item.lower().split("x", 1)) for item in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected SYxSX[,SYxSX…], e.g. 64x64,32x32; got {text!r}") from None


def _counts(text: str):
    """``"5"`` → 5; ``"5,none,3"`` → ``[5, None, 3]`` (one per acquisition; ``none`` or ``-``: no fault)."""
    try:
        items = [None if item.strip().lower() in ("none", "-") else int(item) for item in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected K or K,K,… ('none' = no fault); got {text!r}") from None
    return items[0] if len(items) == 1 else items


def build_server(args):
    """The `MerlinServer` that ``args`` describe (not started)."""
    from ricom.simulators.merlin.server import MerlinServer

    data = simulator_data(args)
    control = args.control_port if args.control_port is not None else max(0, args.port - 1)
    log = None if args.quiet else (lambda text: print(f"ricom simulate merlin: {text}", file=sys.stderr,
                                                     flush=True))
    return MerlinServer(data, scan_shape=args.scan_shape, host=args.host, data_port=args.port,
                        control_port=None if control < 0 else control, depth=args.depth,
                        raw=True if args.raw else None, rate_hz=args.rate, repeat=args.repeat,
                        junk_bytes=args.junk_bytes, disconnect_after=args.disconnect_after,
                        truncate_frame=args.truncate_frame, split_messages=args.split_messages,
                        start_on=args.start_on, once=args.once, seed=args.seed, log=log,
                        cache_bytes=args.cache_mb << 20, preload=args.preload, junk_between=args.junk_between,
                        acquisitions=args.acquisitions, between_s=args.between, scan_shapes=args.scan_shapes,
                        abort_after=args.abort_after, header_scan_shape=args.header_scan_shape,
                        header_frames=args.header_frames, stall_after=args.stall_after)


def run(args) -> int:
    server = build_server(args).start()
    feed, p = server.feed, server.params
    dy, dx = feed.detector_shape
    scan = f", scan {server.scan_shape[0]}×{server.scan_shape[1]}" if server.scan_shape else ""
    control = f", control port {server.control_port}" if server.control_port is not None else ""
    print(f"Merlin simulator on {args.host}: data port {server.data_port}{control}; {feed.n_frames} frames "
          f"of {dy}×{dx}{scan}, depth {p['COUNTERDEPTH']} {'raw' if p['FILEFORMAT'] == 2 else 'processed'}"
          f"; Ctrl-C stops", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        print("ricom simulate merlin: stopped", file=sys.stderr)
    return 0
