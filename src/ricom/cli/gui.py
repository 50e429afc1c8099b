"""ricom gui [--source demo|FILE | --merlin HOST[:PORT]] [--screenshot FILE.png] [--exit-after S] [options]

The live GUI: riCOM, virtual detectors, iCOM, COM, E-field, divergence, FFT, the
latest diffraction pattern and the kernel in dockable panels, all updated while the
data flow, with every setting changeable during the scan.

--source demo runs the built-in simulator as an endless live stream (adjust its rate,
defocus and astigmatism in the window); --source FILE reads any supported file;
--merlin connects to a Merlin live stream.  Without a source the window opens idle.

Headless use: --screenshot FILE.png saves a PNG of the whole window after
--exit-after SECONDS (default 5) and exits 0; without a display, Qt's offscreen
platform is used.  The reconstruction options are those of `ricom reconstruct`
and set the starting values of the settings column (without --rotation auto and
--descan, which the GUI does not offer, and --signals: every panel has its signal).
"""
from __future__ import annotations

import os

from ricom.cli.options import add_reconstruction_options, add_source_options, settings_kwargs

HELP = "the live GUI: watch the reconstruction while the scan runs"


def add_arguments(p) -> None:
    g = p.add_argument_group("source (started at once)")
    src = g.add_mutually_exclusive_group()
    src.add_argument("--source", metavar="demo|FILE",
                     help="'demo' = the built-in simulator as a live stream, or a data file")
    src.add_argument("--merlin", metavar="HOST[:PORT]", help="a Merlin live stream (data port, default 6342)")
    src.add_argument("--dectris", metavar="HOST[:PORT]",
                     help="a DECTRIS stream, listened to (stream port; default 9999 for v1, 31001 for v2)")
    src.add_argument("--timepix3", metavar="raw:PORT|raw:HOST:PORT|asi:HOST[:PORT]",
                     help="a Timepix3 stream: Serval's raw packets (listen on PORT, or connect to HOST:PORT) "
                          "or ASI's sparse stream")
    g.add_argument("--dectris-stream", choices=("v1", "v2"), default="v1",
                   help="the DECTRIS stream format: v1 (legacy JSON) or v2 (CBOR)")
    g.add_argument("--dectris-api-port", type=int, default=80, metavar="PORT", help="DECTRIS REST port")
    g.add_argument("--merlin-control-port", type=int, metavar="PORT",
                   help="start the acquisition through this Merlin control port (usually 6341)")
    g.add_argument("--repeats", choices=("replace", "sum"),
                   help="repeated scans: show the newest pass (default for streams) or sum them (files)")
    s = p.add_argument_group("simulator (--source demo)")
    s.add_argument("--rate", type=float, default=2000.0, metavar="PER_S",
                   help="patterns per second (0 = as fast as simulated; default 2000)")
    s.add_argument("--defocus", type=float, default=0.0, metavar="ANGSTROM", help="defocus (positive = under)")
    s.add_argument("--astigmatism", type=float, default=0.0, metavar="ANGSTROM", help="two-fold astigmatism |A1|")
    s.add_argument("--dose", type=float, default=2e4, metavar="E_PER_PROBE", help="electrons per probe (0 = noiseless)")
    s.add_argument("--detector-size", type=int, default=48, metavar="PX", help="simulated pattern size")
    h = p.add_argument_group("headless control")
    h.add_argument("--screenshot", metavar="FILE.png", help="save a PNG of the whole window, then exit")
    h.add_argument("--exit-after", type=float, metavar="SECONDS", help="quit after this many seconds")
    h.add_argument("--settings", metavar="FILE.json", help="load settings saved from the GUI")
    h.add_argument("--reset-layout", action="store_true", help="start with the default panel layout")
    add_source_options(p)
    add_reconstruction_options(p, batch=False)


def _request(args):
    from ricom.cli.options import source_options
    from ricom.core.errors import SettingsError

    if args.source is None and args.merlin is None and args.dectris is None and args.timepix3 is None:
        return None
    from ricom.gui.source_panel import SourceRequest

    opts = source_options(args)
    sim = {"defocus_A": args.defocus, "astigmatism_A": args.astigmatism,
           "dose_e_per_probe": args.dose if args.dose > 0 else None,
           "detector_shape": (args.detector_size, args.detector_size)}
    if args.timepix3 is not None:
        return _timepix3_request(args.timepix3, args.repeats, opts)
    if args.dectris is not None:
        from ricom.gui.dectris_page import DectrisOptions

        host, port = _host_port(args.dectris, "--dectris")
        options = DectrisOptions(stream=args.dectris_stream, api_port=args.dectris_api_port, stream_port=port)
        return SourceRequest("dectris", host=host, dectris=options, repeats=args.repeats or "replace",
                             source_options=opts)
    if args.merlin is not None:
        host, _, port = args.merlin.partition(":")
        try:
            port = int(port) if port else 6342
        except ValueError:
            raise SettingsError(f"--merlin takes HOST[:PORT], got {args.merlin!r}") from None
        return SourceRequest("merlin", host=host or "127.0.0.1", data_port=port,
                             control_port=args.merlin_control_port, repeats=args.repeats or "replace",
                             source_options=opts)
    if args.source == "demo":
        return SourceRequest("simulator", sim=sim, rate=args.rate or None, repeats=args.repeats or "replace")
    return SourceRequest("file", path=args.source, repeats=args.repeats or "sum", source_options=opts)


def _timepix3_request(text: str, repeats, opts):
    """The request of ``--timepix3 raw:PORT | raw:HOST:PORT | asi:HOST[:PORT]``."""
    import dataclasses

    from ricom.core.errors import SettingsError
    from ricom.gui.source_panel import SourceRequest
    from ricom.gui.timepix_page import Tpx3Options

    protocol, _, rest = text.partition(":")
    if protocol not in ("raw", "asi") or not rest:
        raise SettingsError(f"--timepix3 takes raw:PORT, raw:HOST:PORT or asi:HOST[:PORT], got {text!r}")
    if protocol == "raw" and rest.isdigit():
        options, host = Tpx3Options(listen=True, port=int(rest)), "0.0.0.0"
    else:
        host, port = _host_port(rest, "--timepix3")
        options = Tpx3Options(protocol=protocol, listen=False)
        if port is not None or protocol == "asi":
            options = dataclasses.replace(options, port=port or 8283)
    return SourceRequest("timepix3", host=host, timepix=options, repeats=repeats or "replace", source_options=opts)


def _host_port(text: str, flag: str) -> tuple[str, int | None]:
    from ricom.core.errors import SettingsError

    host, _, port = text.partition(":")
    try:
        return host or "127.0.0.1", int(port) if port else None
    except ValueError:
        raise SettingsError(f"{flag} takes HOST[:PORT], got {text!r}") from None


def run(args) -> int:
    from ricom import api
    from ricom.cli.options import parse_rotation
    from ricom.core.errors import SettingsError
    from ricom.io import outputs

    if args.screenshot:
        outputs.check_output_path(args.screenshot)
        if not args.screenshot.lower().endswith(".png"):
            raise SettingsError("--screenshot must be a .png file")
    if args.exit_after is not None and not args.exit_after >= 0:
        raise SettingsError("--exit-after must be a number of seconds ≥ 0")
    if args.rate < 0 or args.detector_size < 8:
        raise SettingsError("--rate must be ≥ 0 and --detector-size ≥ 8")
    if getattr(args, "descan", None):
        raise SettingsError("--descan is not available in the GUI yet; use `ricom reconstruct --descan`")
    if parse_rotation(args.rotation) == "auto":
        raise SettingsError("--rotation auto is not available in the GUI; give an angle (find it with "
                            "`ricom reconstruct --rotation auto`)")
    kwargs = settings_kwargs(args)
    if kwargs["center_yx"] == "auto":
        kwargs["center_yx"] = None
    settings = api.make_settings(**kwargs)
    request = _request(args)
    import importlib.util

    missing = [m for m in ("PySide6", "pyqtgraph") if importlib.util.find_spec(m) is None]
    if missing:
        raise SettingsError(f"the GUI needs {' and '.join(missing)}; install them with "
                            f"pip install 'ricom[gui]' (PySide6-Essentials and pyqtgraph)")
    from ricom.tools.environment import qt_platform_problem

    if not args.screenshot or os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"):
        problem = qt_platform_problem()  # before Qt exists: it aborts the process on a missing library
        if problem is not None:
            raise SettingsError(problem)
    from ricom.gui.app import run_gui

    return run_gui(request, settings, tuple(args.scan_shape) if args.scan_shape else None,
                   settings_file=args.settings, reference=args.reference, screenshot=args.screenshot,
                   exit_after=args.exit_after, remember_layout=not args.reset_layout)
