"""ricom simulate timepix3 (--raw | --asi) --port P (--from FILE | --demo) [--rate R] [--sync line|pixel]

Send raw Timepix3 packets over TCP as the camera server Serval does: the words of a
.tpx3 file (--from) or of the built-in specimen (--demo: written with TDC1 line triggers,
or with --sync pixel one trigger per position) — chunk headers, TDC triggers and hits in
their recorded (not time-sorted) order.  By default it listens on --port (Serval's
tcp://listen@… destination: 'ricom live timepix3 --raw --host … --port P' connects; each
connection gets one scan); --connect sends to a client listening on --host:--port
(Serval's tcp://connect@…).  Fault options: --split-bytes N (send in pieces of 1…N
bytes), --drop-line-trigger K, --disconnect-at F (close mid-chunk after fraction F),
--cancel-at F (end cleanly after fraction F of the chunks).  --asi serves ASI's sparse
stream instead (listening on --port, 8283 on the camera PC): each connection gets one
acquisition of --scans scans (default 1) of CSR frames (--rate frames/s; --cancel-at F
ends the first scan with AcquisitionEnd after fraction F of its frames; --from takes an
event file or an array).  Ctrl-C stops it.
"""
from __future__ import annotations

import sys

from ricom.cli.simulate import add_server_arguments, add_specimen_arguments

HELP = "a Timepix3 camera server's raw packet stream over TCP"


def add_arguments(p) -> None:
    s = add_server_arguments(p, "send the packets of this .tpx3 file", "FILE.tpx3")
    kind = s.add_mutually_exclusive_group(required=True)
    kind.add_argument("--raw", action="store_true", help="Serval's raw packet stream")
    kind.add_argument("--asi", action="store_true", help="ASI's sparse frame stream (CSR)")
    s.add_argument("--port", type=int, default=8451, metavar="P", help="port to listen on (0 = any) or connect to")
    s.add_argument("--connect", action="store_true", help="connect to a listening client instead of listening")
    s.add_argument("--rate", type=float, default=0.0, metavar="EVENTS_PER_S", help="packets per second (0 = fast)")
    s.add_argument("--sync", choices=("line", "pixel"), default="line", help="--demo triggers (default line)")
    s.add_argument("--scans", type=int, default=0, metavar="N", help="scans to send, then exit (0 = until Ctrl-C)")
    f = p.add_argument_group("fault injection")
    f.add_argument("--split-bytes", type=int, default=0, metavar="N", help="send in pieces of 1…N bytes")
    f.add_argument("--drop-line-trigger", type=int, metavar="K", help="leave out line K's TDC1 rising edge")
    f.add_argument("--disconnect-at", type=float, metavar="F", help="close mid-chunk after fraction F of the bytes")
    f.add_argument("--cancel-at", type=float, metavar="F", help="end the scan after fraction F of the chunks")
    add_specimen_arguments(p)
    p.set_defaults(scan_shape=None)


def run(args) -> int:
    from ricom.simulators.timepix import RawFaults, RawSimulator
    from ricom.simulators.timepix.raw import temporary_demo

    if args.asi:
        return _run_asi(args)
    faults = RawFaults(args.split_bytes, args.drop_line_trigger, args.disconnect_at, args.cancel_at)
    path = args.from_file or temporary_demo(scan_shape=tuple(args.scan_shape or (32, 32)),
                                            detector_shape=tuple(args.detector_shape), dose=args.dose or 100.0,
                                            sync=args.sync, seed=args.seed)

    def log(text: str) -> None:
        print(f"ricom simulate timepix3: {text}", file=sys.stderr, flush=True)

    sim = RawSimulator(path, host=args.host, port=args.port, connect=args.connect, rate=args.rate, scans=args.scans,
                       faults=faults, log=log)
    how = f"connecting to {args.host}:{sim.port}" if args.connect else f"listening on {args.host}:{sim.port}"
    print(f"Timepix3 raw simulator {how}: {sim.n_words} packets of {path}; Ctrl-C stops", flush=True)
    try:
        sim.serve_forever()
    except KeyboardInterrupt:
        print("ricom simulate timepix3: stopped", file=sys.stderr)
    finally:
        sim.close()
    return 0


def _run_asi(args) -> int:
    import threading

    from ricom.cli.simulate import simulator_data
    from ricom.simulators.timepix.asi import AsiServer

    if args.dose is None and not args.from_file:
        args.dose = 50.0
    data = _frames_of(args.from_file, args.scan_shape) if args.from_file else simulator_data(args)
    server = AsiServer(data, host=args.host, port=args.port, scans=max(1, args.scans), rate_hz=args.rate)
    n_frames = server.n_frames
    if args.cancel_at is not None:
        server.cancel_after = int(args.cancel_at * n_frames)
    server.start()
    print(f"ASI sparse-stream simulator listening on {args.host}:{server.port}: {n_frames} frames per scan, "
          f"{max(1, args.scans)} scan(s) per connection; Ctrl-C stops", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        print("ricom simulate timepix3: stopped", file=sys.stderr)
    finally:
        server.stop()
    return 0


def _frames_of(path: str, scan_shape):
    """An event file as it is (the server reads it), or the frames of any other input as an array."""
    import numpy as np

    from ricom.sources import open_source

    with open_source(path, **({"scan_shape": tuple(scan_shape)} if scan_shape else {})) as src:
        if src.kind == "events":
            return path
        frames = np.concatenate([np.asarray(c.frames) for c in src.chunks()])
        return frames.reshape(*src.scan_shape, *frames.shape[1:]) if src.scan_shape else frames

