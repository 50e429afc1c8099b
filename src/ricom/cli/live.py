"""ricom live merlin|dectris|timepix3 [options] -o OUTPUT

Reconstruct while a detector streams its data, and save each acquisition when it ends:
'ricom live merlin' (Quantum Detectors Merlin over TCP), 'ricom live dectris' (DECTRIS
SIMPLON: REST API and ZeroMQ stream), 'ricom live timepix3' (Serval's raw packets or
ASI's sparse stream).  'ricom live DETECTOR --help' lists each one's options.  The
session logic is `ricom.live.session`; this module holds the Merlin frontend and the
options every live detector shares.
"""
from __future__ import annotations

import signal
import sys
import threading

from ricom.cli.options import (
    HelpFormatter,
    add_layout_options,
    add_reconstruction_options,
    signals_and_settings,
    source_options,
)

MERLIN_DOC = """ricom live merlin [--host H] [--data-port P] [--acquisitions N|forever] [options] -o OUTPUT

Reconstruct while a Quantum Detectors Merlin (or 'ricom simulate merlin') streams frames
over TCP, and save each acquisition when it ends.  By default the session is passive:
it connects to the data port and waits for the acquisitions the microscope software
starts (skipping stale bytes before each header); --acquisitions N (default 1) or
'forever' handles several in one run, each saved as its own file (OUTPUT_0001.h5, …
when more than one).  With --start ricom arms and starts each acquisition itself
through the control port: frame count (from the scan shape), ScanX/ScanY, --depth,
--raw, a soft trigger (--trigger soft, the default) and STARTACQUISITION.  The scan
shape comes from --scan-shape, else from the header (ScanX/ScanY, or frames per
trigger); --record FILE.h5 also writes every received frame.

Exit codes: 0 every acquisition was reconstructed as announced; 2 bad settings, or the
stream broke before any frame; 3 an acquisition broke off (the partial result is saved);
4 frames and scan shape do not add up (the result is saved; give the right
--scan-shape, or --scan-pad / --scan-crop); 130 Ctrl-C (the partial result is saved).
"""

HELP = "reconstruct live from a detector stream (Merlin over TCP, DECTRIS SIMPLON)"


def add_arguments(p) -> None:
    from ricom.cli import live_dectris

    sub = p.add_subparsers(dest="detector", metavar="DETECTOR", required=True)
    m = sub.add_parser("merlin", help="Quantum Detectors Merlin data (and control) port", description=MERLIN_DOC,
                       formatter_class=HelpFormatter)
    add_merlin_arguments(m)
    m.set_defaults(_run=run_merlin)
    d = sub.add_parser("dectris", help="DECTRIS ARINA, QUADRO, EIGER2 (SIMPLON REST + stream V1/V2)",
                       description=live_dectris.__doc__, formatter_class=HelpFormatter)
    live_dectris.add_arguments(d)
    d.set_defaults(_run=live_dectris.run)
    from ricom.cli import live_timepix3
    t = sub.add_parser("timepix3", help="Timepix3: the camera server's raw packet stream (Serval)",
                       description=live_timepix3.__doc__, formatter_class=HelpFormatter)
    live_timepix3.add_arguments(t)
    t.set_defaults(_run=live_timepix3.run)


def add_session_arguments(p, c) -> None:
    """Options every live detector shares (``c``: the connection group)."""
    p.add_argument("-o", "--output", required=True, metavar="OUTPUT",
                   help="output file .h5 (every signal), .npy/.tif (first signal) or .png")
    p.add_argument("--no-progress", action="store_true", help="no status line")
    c.add_argument("--frames", type=int, metavar="N", help="frames to read (default: from the acquisition header)")
    c.add_argument("--timeout", type=float, metavar="S",
                   help="end an acquisition when no data arrives for S seconds while it is received "
                        "(default: wait); waiting for an acquisition to start has no limit")
    c.add_argument("--record", metavar="FILE.h5",
                   help="also write every received frame to FILE.h5 (/data, compressed; FILE_0001.h5 … for several "
                        "acquisitions), readable by 'ricom reconstruct FILE.h5:/data'; event cameras: every "
                        "electron (/events, 'ricom reconstruct FILE.h5')")
    c.add_argument("--reconnect", action="store_true",
                   help="after a dropped connection, connect again and wait for the next acquisition")
    c.add_argument("--acquisitions", default="1", metavar="N|forever",
                   help="acquisitions to handle in this run (default 1); with more than one, each is saved as "
                        "OUTPUT_0001.h5, OUTPUT_0002.h5, …")


def add_merlin_arguments(p) -> None:
    c = p.add_argument_group("detector connection")
    add_session_arguments(p, c)
    c.add_argument("--host", default="127.0.0.1", metavar="H", help="the Merlin PC: name or IP address")
    c.add_argument("--data-port", type=int, default=6342, metavar="P", help="data port (default 6342)")
    c.add_argument("--control-port", type=int, default=6341, metavar="P", help="control port (default 6341)")
    c.add_argument("--start", action="store_true",
                   help="arm and start the acquisition through the control port")
    c.add_argument("--depth", type=int, choices=(1, 6, 12, 24),
                   help="with --start: counter depth in bits (default: the detector's)")
    c.add_argument("--raw", action="store_true", help="with --start: raw R64 frames (FILEFORMAT 2)")
    c.add_argument("--trigger", choices=("soft", "external"), default="soft",
                   help="with --start: soft trigger (TRIGGERSTART 5 + SOFTTRIGGER) or leave the trigger "
                        "to the scan engine")
    add_layout_options(p)
    add_reconstruction_options(p)


def run(args) -> int:  # only reached without a detector name, which argparse already refuses
    return run_merlin(args)


def _arm(args, opts: dict):
    """(trigger callback, MerlinControl) for --start, else (None, None)."""
    from ricom.core.chunks import ScanLayout
    from ricom.core.errors import SettingsError
    from ricom.core.scan_positions import scan_positions_from
    from ricom.sources.merlin.control import MerlinControl

    if not args.start:
        if args.depth or args.raw:
            raise SettingsError("--depth and --raw set the detector through its control port; add --start")
        return None, None
    if "scan_shape" not in opts:
        raise SettingsError("--start needs --scan-shape SY SX (it sets the frame count and ScanX/ScanY)")
    layout = ScanLayout(opts["scan_shape"], opts["skip_frames"], opts["flyback_frames"],
                        opts["frames_per_position"], scan_positions_from(opts.get("scan_positions")))
    n = args.frames or layout.skip_frames + layout.frames_per_pass
    control = MerlinControl(args.host, args.control_port, timeout=args.timeout or 5.0)
    soft = args.trigger == "soft"

    def trigger() -> None:
        control.configure(depth=args.depth, n_frames=n, scan_shape=opts["scan_shape"],
                          raw=True if args.raw else None, soft_trigger=soft)
        control.start(soft_trigger=soft)

    return trigger, control


def run_merlin(args) -> int:
    from ricom.live.merlin import MerlinAcquisitions

    def make_stream(opts, stop):
        trigger, control = _arm(args, opts)
        return MerlinAcquisitions(args.host, args.data_port, stop=stop, timeout=args.timeout, trigger=trigger,
                                  control=control, n_frames=args.frames, **opts)

    return run_session(args, make_stream, f"merlin://{args.host}:{args.data_port}",
                       f"{args.host}:{args.data_port}")


def run_session(args, make_stream, input_label: str, where: str) -> int:
    """Check the options, then run a live session of ``make_stream(opts, stop)`` and save
    each acquisition; Ctrl-C (or kill) ends it and saves what was received."""
    from ricom.io import outputs

    outputs.check_output_path(args.output)
    names, kwargs = signals_and_settings(args)  # everything is checked before connecting
    opts = source_options(args)
    stop = threading.Event()
    stream = make_stream(opts, stop)

    def on_signal(signum, frame):  # the first Ctrl-C (or kill) ends the run and saves; a second one aborts
        if stop.is_set():
            raise KeyboardInterrupt
        print("ricom: stopping after the current chunk (Ctrl-C again to abort)", file=sys.stderr)
        stop.set()

    main = threading.current_thread() is threading.main_thread()
    previous = [signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)] if main else None
    try:
        return _run_live(args, names, kwargs, opts, stream, stop, input_label, where)
    finally:
        if main:
            signal.signal(signal.SIGINT, previous[0])
            signal.signal(signal.SIGTERM, previous[1])


def _run_live(args, names, kwargs, opts, stream, stop, input_label, where) -> int:
    from ricom.cli.options import parse_descan
    from ricom.live.session import LiveSession

    output = args.output
    descan, descan_ref = parse_descan(args.descan, args.reference)
    count = _acquisition_count(args.acquisitions)
    status = _StatusLine(not args.no_progress)
    codes: list[int] = []
    record = None
    if args.record:
        from ricom.io.attach import attach_recorder
        from ricom.io.outputs import check_output_path

        check_output_path(args.record)

        def record(index, rec, source):
            return attach_recorder(rec, output_name(args.record, index, count), source)

    def save(acq) -> None:
        codes.append(_save(args, output, names, acq, count, descan, input_label))

    session = LiveSession(stream, acquisitions=count, stop=stop, on_status=status, pad=opts.get("pad", False),
                          record=record, reconnect=args.reconnect, keep=False, on_acquisition=save,
                          on_start=_announce_plan,
                          reconstruct={"reference": args.reference, "descan": descan,
                                       "descan_reference": descan_ref, "chunk_size": args.chunk_size, **kwargs})
    print(f"waiting for an acquisition on {where} …", file=sys.stderr, flush=True)
    session.run()
    status.close()
    if not codes:
        print("ricom: stopped before any acquisition arrived; nothing was written", file=sys.stderr)
        return 130
    return max(codes, key=lambda c: (c != 0, c))


def _announce_plan(index, rec, source) -> None:
    """SSB's memory plan of each acquisition, before its first chunk (checked already)."""
    from ricom.phase.methods import methods_of

    methods = methods_of(rec)
    if methods is not None and methods.plan_text:
        print(methods.plan_text, file=sys.stderr, flush=True)


def _acquisition_count(text: str) -> int | None:
    from ricom.core.errors import SettingsError

    if text == "forever":
        return None
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 1:
        raise SettingsError(f"--acquisitions takes a number ≥ 1 or 'forever', got {text!r}")
    return n


def output_name(output: str, index: int, count: int | None) -> str:
    """``live.h5`` for a single acquisition, else ``live_0001.h5``, ``live_0002.h5``, …"""
    if count == 1:
        return output
    stem, dot, ext = output.rpartition(".")
    return f"{stem}_{index:04d}.{ext}" if dot else f"{output}_{index:04d}"


def _save(args, output, names, acq, count, descan, input_label: str) -> int:
    from ricom.cli.finish import save_result
    from ricom.cli.options import error_text, parse_rotation

    path = output_name(output, acq.index, count)
    info = acq.source_info
    extra = {"input": input_label, "acquisition": acq.index,
             "frames_received": acq.count.n_received, "frames_in_acquisition": acq.count.n_expected or 0,
             "acquisition_header": acq.header, "started_unix_s": acq.started, "ended_unix_s": acq.ended,
             "acquisition_state": acq.state.value, "partial_reason": error_text(acq.reason) if acq.reason else "",
             **{k: info[k] for k in ("counter_depth", "series", "bit_depth", "masked_pixels", "readings_removed")
                if info.get(k) is not None}, **acq.count.as_attrs()}
    if acq.recording:
        extra.update(recorded_to=output_name(args.record, acq.index, count),
                     n_recorded=acq.recording.get("n_recorded", 0),
                     n_not_recorded=acq.recording.get("n_not_recorded", 0))
        if extra["n_not_recorded"]:
            unit = acq.recording.get("unit", "frames")
            print(f"ricom: warning: {extra['n_not_recorded']} {unit} could not be recorded (the disk did not keep "
                  f"up); they are in the reconstruction but not in {extra['recorded_to']}", file=sys.stderr)
    if descan:
        extra["descan"] = descan
    code = save_result(path, names, acq.result, acq.reconstruction, extra, parse_rotation(args.rotation) == "auto",
                       interrupted=acq.result.interrupted, command="live")
    if code == 0 and acq.count.problem:
        print(f"ricom: error: {error_text(acq.count.problem)}; the result is saved in {path} "
              f"(n_expected={acq.count.n_expected}, n_received={acq.count.n_received}, "
              f"empty positions {acq.count.empty_positions.size}); give the right --scan-shape, or --scan-pad / "
              f"--scan-crop to accept it", file=sys.stderr)
        return 4
    return code


class _StatusLine:
    """The session's status: rewritten in place on a terminal, one line per change when piped."""

    def __init__(self, show: bool) -> None:
        self.show, self.tty, self.width = show, sys.stderr.isatty(), 0
        self.last = None

    def __call__(self, status) -> None:
        if status.announce:
            self._end_line()
            print(status.announce, file=sys.stderr, flush=True)
        if status.warning:
            self._end_line()
            print(f"ricom: warning: {status.warning}", file=sys.stderr, flush=True)
        if not self.show:
            return
        line = status.line()
        if self.tty:
            sys.stderr.write("\r" + line.ljust(self.width))
            self.width = max(self.width, len(line))
            sys.stderr.flush()
        elif (status.state, status.acquisition) != self.last or status.state.value == "receiving":
            print(line, file=sys.stderr, flush=True)
        self.last = (status.state, status.acquisition)

    def _end_line(self) -> None:
        if self.tty and self.width:
            sys.stderr.write("\n")
            self.width = 0

    def close(self) -> None:
        self._end_line()
