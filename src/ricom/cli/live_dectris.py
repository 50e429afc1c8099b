"""ricom live dectris --host H [--api-port 80] [--stream-port P] [--stream v1|v2] [--active] -o OUTPUT

Reconstruct while a DECTRIS ARINA, QUADRO or EIGER2 (or 'ricom simulate dectris') streams
images through its SIMPLON interface, and save each acquisition when it ends.

Passive (the default): ricom connects to the ZMQ stream and waits for the series the
microscope software arms; it skips messages of other series until a header arrives.  The
pixel mask comes from the REST API (if reachable) or the stream header.  Active
(--active): ricom sets the detector up through the REST API — --trigger-mode (exte: one
frame per scan pulse, the usual 4D-STEM mode; exts: one pulse per line; ints: software
trigger), the frame counts from --scan-shape, --count-time/--frame-time, --roi (merge2x2:
ARINA's binned 96×96), --compression, the stream's format and full header — arms it for
each acquisition, reads only the armed series, and disarms afterwards (a series cut short
is aborted).  Stream V1 (--stream v1, port 9999) is DECTRIS's legacy JSON format; V2
(--stream v2, port 31001) its CBOR successor.  Masked pixels (the detector's pixel mask,
and readings of 2^bit depth − 1) count in no signal.  --record FILE.h5 writes the frames
still compressed as the detector sent them.

Exit codes as for 'ricom live merlin': 0 complete; 2 bad settings, a REST refusal, or the
stream broke before any frame; 3 an acquisition broke off (the partial result is saved);
4 frames and scan shape do not add up; 130 Ctrl-C (the partial result is saved).
"""
from __future__ import annotations

from ricom.cli.live import add_session_arguments, run_session
from ricom.cli.options import add_layout_options, add_reconstruction_options


def add_arguments(p) -> None:
    c = p.add_argument_group("detector connection")
    add_session_arguments(p, c)
    c.add_argument("--host", required=True, metavar="H", help="the detector control unit (DCU): name or IP address")
    c.add_argument("--api-port", type=int, default=80, metavar="P", help="SIMPLON REST port (default 80)")
    c.add_argument("--stream-port", type=int, metavar="P", help="ZMQ stream port (default 9999 for v1, 31001 for v2)")
    c.add_argument("--stream", choices=("v1", "v2"), default="v1", help="stream format (default v1)")
    mode = c.add_mutually_exclusive_group()
    mode.add_argument("--active", action="store_true", help="configure and arm the detector for each scan")
    mode.add_argument("--passive", action="store_true", help="only listen; the microscope software arms (default)")
    a = p.add_argument_group("active mode")
    a.add_argument("--trigger-mode", choices=("exte", "exts", "ints"), default="exte",
                   help="exte one frame per pulse (default), exts one pulse per line, ints software trigger")
    a.add_argument("--count-time", type=float, metavar="S", help="exposure per frame in s (default: the detector's)")
    a.add_argument("--frame-time", type=float, metavar="S", help="frame period in s (default: the detector's)")
    a.add_argument("--roi", choices=("disabled", "merge2x2", "lines"),
                   help="detector ROI mode (ARINA merge2x2; default: the detector's)")
    a.add_argument("--compression", choices=("bslz4", "lz4"), default="bslz4", help="image compression")
    add_layout_options(p)
    add_reconstruction_options(p)


def run(args) -> int:
    from ricom.core.errors import SettingsError
    from ricom.live.dectris import PROTOCOLS, ArmSettings, DectrisAcquisitions

    def make_stream(opts, stop):
        arm = None
        if args.active:
            if "scan_shape" not in opts:
                raise SettingsError("--active needs --scan-shape SY SX (it sets the detector's frame counts)")
            arm = ArmSettings(opts["scan_shape"], args.trigger_mode, args.count_time, args.frame_time, args.roi,
                              args.compression, opts["skip_frames"], opts["flyback_frames"],
                              opts["frames_per_position"])
        elif args.count_time or args.frame_time or args.roi:
            raise SettingsError("--count-time, --frame-time and --roi set the detector up; add --active")
        return DectrisAcquisitions(args.host, api_port=args.api_port, stream_port=args.stream_port,
                                   stream=args.stream, arm=arm, stop=stop, timeout=args.timeout,
                                   n_frames=args.frames, **opts)

    port = args.stream_port or PROTOCOLS[args.stream].port
    return run_session(args, make_stream, f"dectris://{args.host}:{port}", f"{args.host}:{port} (stream {args.stream})")
