"""ricom live merlin [--host H] [--data-port P] [--scan-shape SY SX] [options] -o OUTPUT

Reconstruct while a Quantum Detectors Merlin (or 'ricom simulate merlin') streams frames
over TCP, and save the images when the acquisition ends.  The client connects to the
data port, waits for the acquisition header (skipping stale bytes), and reads frames up
to the header's frame count.  The scan shape comes from --scan-shape, else from the
header (ScanX/ScanY, or frames per trigger).  With --start it also arms the detector
through the control port: frame count (from the scan shape), ScanX/ScanY, --depth,
--raw, a soft trigger (--trigger soft, the default) and STARTACQUISITION; otherwise
start the acquisition yourself (Merlin software, scan engine) after this command waits.

Exit codes: 0 the whole acquisition was reconstructed; 2 bad settings, or the stream
broke before any frame; 3 the connection broke off mid-scan (the partial result is
saved); 130 Ctrl-C (the partial result is saved).
"""
from __future__ import annotations

import argparse
import signal
import sys
import threading

from ricom.cli.options import add_reconstruction_options, add_source_options, signals_and_settings, source_options

HELP = "reconstruct live from a detector stream (Merlin over TCP)"


def add_arguments(p) -> None:
    sub = p.add_subparsers(dest="detector", metavar="DETECTOR", required=True)
    m = sub.add_parser("merlin", help="Quantum Detectors Merlin data (and control) port", description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    add_merlin_arguments(m)
    m.set_defaults(_run=run_merlin)


def add_merlin_arguments(p) -> None:
    p.add_argument("-o", "--output", required=True, metavar="OUTPUT",
                   help="output file .h5 (every signal), .npy/.tif (first signal) or .png")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    c = p.add_argument_group("detector connection")
    c.add_argument("--host", default="127.0.0.1", help="detector PC (default 127.0.0.1)")
    c.add_argument("--data-port", type=int, default=6342, metavar="P", help="data port (default 6342)")
    c.add_argument("--control-port", type=int, default=6341, metavar="P", help="control port (default 6341)")
    c.add_argument("--start", action="store_true",
                   help="arm and start the acquisition through the control port")
    c.add_argument("--depth", type=int, choices=(1, 6, 12, 24), help="with --start: counter depth")
    c.add_argument("--raw", action="store_true", help="with --start: raw R64 frames (FILEFORMAT 2)")
    c.add_argument("--trigger", choices=("soft", "external"), default="soft",
                   help="with --start: soft trigger (TRIGGERSTART 5 + SOFTTRIGGER) or leave the trigger "
                        "to the scan engine")
    c.add_argument("--frames", type=int, metavar="N", help="frames to read (default: from the header)")
    c.add_argument("--timeout", type=float, metavar="S",
                   help="give up when no data arrives for S seconds (default: wait)")
    add_source_options(p)
    add_reconstruction_options(p)


def run(args) -> int:  # only reached without a detector name, which argparse already refuses
    return run_merlin(args)


def _arm(args, opts: dict):
    """(trigger callback, MerlinControl) for --start, else (None, None)."""
    from ricom.core.chunks import ScanLayout
    from ricom.core.errors import SettingsError
    from ricom.sources.merlin.control import MerlinControl

    if not args.start:
        if args.depth or args.raw:
            raise SettingsError("--depth and --raw set the detector through its control port; add --start")
        return None, None
    if "scan_shape" not in opts:
        raise SettingsError("--start needs --scan-shape SY SX (it sets the frame count and ScanX/ScanY)")
    layout = ScanLayout(opts["scan_shape"], opts["skip_frames"], opts["flyback_frames"],
                        opts["frames_per_position"])
    n = args.frames or layout.skip_frames + layout.frames_per_pass
    control = MerlinControl(args.host, args.control_port, timeout=args.timeout or 5.0)
    soft = args.trigger == "soft"

    def trigger() -> None:
        control.configure(depth=args.depth, n_frames=n, scan_shape=opts["scan_shape"],
                          raw=True if args.raw else None, soft_trigger=soft)
        control.start(soft_trigger=soft)

    return trigger, control


def run_merlin(args) -> int:
    from ricom.io import outputs

    output = args.output
    outputs.check_output_path(output)
    names, kwargs = signals_and_settings(args)  # everything is checked before connecting
    opts = source_options(args)
    trigger, control = _arm(args, opts)
    stop = threading.Event()

    def on_signal(signum, frame):  # the first Ctrl-C (or kill) ends the run and saves; a second one aborts
        if stop.is_set():
            raise KeyboardInterrupt
        print("ricom: stopping after the current chunk (Ctrl-C again to abort)", file=sys.stderr)
        stop.set()

    main = threading.current_thread() is threading.main_thread()
    previous = [signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)] if main else None
    try:
        return _run_live(args, output, names, kwargs, opts, trigger, control, stop)
    finally:
        if main:
            signal.signal(signal.SIGINT, previous[0])
            signal.signal(signal.SIGTERM, previous[1])


def _run_live(args, output, names, kwargs, opts, trigger, control, stop) -> int:
    from ricom import api
    from ricom.cli.finish import save_result
    from ricom.cli.options import parse_descan, parse_rotation
    from ricom.sources.merlin.live import MerlinLiveSource

    descan, descan_ref = parse_descan(args.descan, args.reference)
    print(f"waiting for an acquisition on {args.host}:{args.data_port} …", file=sys.stderr, flush=True)
    source = MerlinLiveSource(args.host, args.data_port, stop=stop, trigger=trigger, control=control,
                              timeout=args.timeout, n_frames=args.frames, **opts)
    sy, sx = source.scan_shape
    print(f"acquisition: {source.n_frames or 'continuous'} frames, {source.frame_header.summary()}, "
          f"scan {sy}×{sx}", file=sys.stderr, flush=True)
    result, rec, _ = api.reconstruct_run(source, reference=args.reference, descan=descan,
                                         descan_reference=descan_ref, progress=not args.no_progress,
                                         chunk_size=args.chunk_size, stop=stop, **kwargs)
    extra = {"input": f"merlin://{args.host}:{args.data_port}", "frames_received": source.frames_received,
             "frames_in_acquisition": source.n_frames or 0}
    if descan:
        extra["descan"] = descan
    return save_result(output, names, result, rec, extra, parse_rotation(args.rotation) == "auto",
                       interrupted=stop.is_set())
