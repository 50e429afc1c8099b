"""Command-line options shared by every command that reconstructs (reconstruct, live, gui),
and how errors name them.

Units, as the help says: ``--center`` in detector pixels (row, column); ``--rotation`` in
degrees, turning the measured COM from detector +x towards +y (clockwise on screen);
``--flip`` mirrors detector x before the rotation; ``--filter`` in cycles per scan pixel
(0.5 = Nyquist) unless ``--filter-unit inv_A``; ``--virtual-detector`` in detector pixels
unless ``--virtual-detector-unit mrad``.

Library errors name the parameters to change by their Python keyword (see
`ricom.core.errors`); `FLAGS` says which option sets each, and `error_text` phrases an
error with them, e.g. "give --scan-shape SY SX" where Python reads "give scan_shape=(SY, SX)".
"""
from __future__ import annotations

import argparse

from ricom.core.errors import Phrasebook, SettingsError, Wording, render
from ricom.core.progress import yes_no

FLAGS = {
    "scan_shape": Wording("--scan-shape", "SY SX"),
    "skip_frames": Wording("--skip-frames", "N"),
    "flyback_frames": Wording("--flyback-frames", "N"),
    "frames_per_position": Wording("--frames-per-position", "N"),
    "scan_positions": Wording("--scan-positions", "FILE"),
    "pad": Wording("--scan-pad", switch=True),
    "crop": Wording("--scan-crop", switch=True),
    "dwell_ns": Wording("--dwell-ns", "NS"),
    "acceptance_ns": Wording("--acceptance-ns", "NS"),
    "keep_times": Wording("--record FILE.h5", switch=True),  # live Timepix3 keeps arrival times to record them
    "sync": Wording("--sync", "MODE"),
    "skip_lines": Wording("--skip-lines", "N"),
    "chip_layout": Wording("--chip-layout", "LAYOUT"),
    "kernel_size": Wording("--kernel-size", "N"),
    "band_pass": Wording("--filter", "KMIN KMAX"),
    "band_pass_unit": Wording("--filter-unit", "UNIT"),
    "rotation_deg": Wording("--rotation", "DEG"),
    "flip": Wording("--flip", "yes|no"),
    "center_yx": Wording("--center", "CY CX"),
    "center": Wording("--center", "CY CX"),
    "reference": Wording("--reference", "FILE"),
    "descan": Wording("--descan", "MODE"),
    "descan_reference": Wording("--descan reference", "FILE"),
    "com_mask_px": Wording("--com-mask", "RIN ROUT"),
    "step_A": Wording("--step", "ANGSTROM"),
    "pixel_size_mrad": Wording("--pixel-size-mrad", "MRAD"),
    "energy_keV": Wording("--energy-kev", "KEV"),
    "virtual_detector": Wording("--virtual-detector", "RIN ROUT"),
    "virtual_detector_unit": Wording("--virtual-detector-unit", "UNIT"),
    "chunk_size": Wording("--chunk-size", "N"),
    "threads": Wording("--threads", "N"),
    "client": Wording("--cluster/--scheduler"),
    "timeout": Wording("--timeout", "S"),
    "host": Wording("--host", "H"),
    "port": Wording("--port", "P"),
    "listen_port": Wording("--listen", "PORT"),
    "signals": Wording("--signals", "LIST"),
    "convergence_mrad": Wording("--convergence-mrad", "MRAD"),
    "defocus_A": Wording("--defocus", "ANGSTROM"),
    "tcbf_fit": Wording("--tcbf-fit", "auto|first|given"),
    "tcbf_bin_px": Wording("--tcbf-bin", "PX"),
    "tcbf_upsample": Wording("--tcbf-upsample", "N"),
    "ssb_bin_factor": Wording("--ssb-bin", "PX"),
    "ssb_max_memory_bytes": Wording("--ssb-max-memory-gb", "GB"),
}
"""The option that sets each library parameter, and the form of its value (its metavar)."""


def _flag_value(value) -> str:
    if isinstance(value, bool):
        return yes_no(value)
    if isinstance(value, (tuple, list)):
        return " ".join(_flag_value(v) for v in value)
    return f"{value:g}" if isinstance(value, float) else str(value)


CLI = Phrasebook(FLAGS, assign=" ", show=_flag_value)
"""Names parameters as options: ``Param("scan_shape", form=True)`` → ``--scan-shape SY SX``."""


def error_text(error) -> str:
    """An error (or the text of one, e.g. ``RunResult.error``) with its parameters named as options."""
    return render(error, CLI)

DEFAULT_SIGNALS = "ricom,icom,com,vbf,vadf"


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Keeps the layout of a command's description and ends every option's help with its
    default (``(default: 64 64)``) unless the help already says it."""

    def _get_help_string(self, action) -> str:
        text = action.help or ""
        default = action.default
        if (not action.option_strings or default is None or default is False or default == argparse.SUPPRESS
                or "default" in text.lower()):
            return text
        shown = " ".join(map(str, default)) if isinstance(default, (list, tuple)) else str(default)
        return f"{text} (default: {shown.replace('%', '%%')})"


def use_help_formatter(p: argparse.ArgumentParser) -> None:
    """Give ``p`` the `HelpFormatter` (every command's ``add_arguments`` calls it first)."""
    p.formatter_class = HelpFormatter


def add_layout_options(p: argparse.ArgumentParser) -> None:
    """Scan shape, skipped and flyback frames, repeats: how frames map onto scan positions."""
    use_help_formatter(p)
    g = p.add_argument_group("input layout")
    g.add_argument("--scan-shape", nargs=2, type=int, metavar=("SY", "SX"),
                   help="scan shape (rows, columns of probe positions) where the input does not carry it")
    g.add_argument("--skip-frames", type=int, default=0, metavar="N", help="frames to drop at the start")
    g.add_argument("--flyback-frames", type=int, default=0, metavar="N",
                   help="extra frames at the end of every scan line, dropped")
    g.add_argument("--frames-per-position", type=int, default=1, metavar="N",
                   help="consecutive frames per scan position (summed)")
    g.add_argument("--scan-positions", metavar="FILE",
                   help="scan order: the position of every scan point in acquisition order, a CSV/text file "
                        "(one flat index iy*SX+ix, or 'row, col', per line; -1 = none) or .npy; repeats are "
                        "summed, positions never visited stay empty and are reported")
    g.add_argument("--scan-pad", action="store_true",
                   help="accept fewer frames than the scan shape needs (missing positions stay empty)")
    g.add_argument("--scan-crop", action="store_true",
                   help="accept more frames than the scan shape needs (the extra frames are dropped)")


def add_event_options(p: argparse.ArgumentParser) -> None:
    """Options of event data (Timepix3 .tpx3/.t3p, event-list .h5, Timepix3 streams)."""
    use_help_formatter(p)
    e = p.add_argument_group("event data (.tpx3, .t3p, event .h5, Timepix3 streams)")
    e.add_argument("--dwell-ns", type=float, metavar="NS",
                   help="dwell time per probe position in ns; needed for .t3p and for .tpx3 without line "
                        "triggers (default: measured from the line triggers, or from FILE.ricom.json)")
    e.add_argument("--acceptance-ns", type=float, metavar="NS",
                   help="keep only electrons arriving within NS ns of the probe reaching each position "
                        "(lowers the dose after the fact; the mean dose is reported; default: keep all)")
    e.add_argument("--sync", choices=("auto", "line", "pixel", "dwell"), default="auto",
                   help="scan sync: TDC1 line trigger, pixel trigger, or dwell time alone; auto: line if "
                        "the file has line triggers")
    e.add_argument("--skip-lines", type=int, default=0, metavar="N",
                   help="line trigger: lines to drop at the start")
    e.add_argument("--chip-layout", metavar="LAYOUT",
                   help="'cheetah' (ASI quad 512×512, the default for several chips), 'single' (one 256×256 "
                        "chip), or 'ox,oy,sx,sy[,t];…' per chip (origin, axis signs ±1, t=1 swaps x and y)")


def add_source_options(p: argparse.ArgumentParser) -> None:
    """Every option of reading an input: `add_layout_options` and `add_event_options`."""
    add_layout_options(p)
    add_event_options(p)


def source_options(args) -> dict:
    """The `ricom.sources.open_source` keywords of the options ``add_*_options`` gave."""
    opts = {"skip_frames": args.skip_frames, "flyback_frames": args.flyback_frames,
            "frames_per_position": args.frames_per_position}
    if args.scan_shape:
        opts["scan_shape"] = tuple(args.scan_shape)
    opts.update(pad=args.scan_pad, crop=args.scan_crop)
    if getattr(args, "scan_positions", None):
        opts["scan_positions"] = args.scan_positions
    for name in ("dwell_ns", "acceptance_ns", "chip_layout"):
        if getattr(args, name, None) is not None:
            opts[name] = getattr(args, name)
    if getattr(args, "sync", "auto") != "auto":
        opts["sync"] = args.sync
    if getattr(args, "skip_lines", 0):
        opts["skip_lines"] = args.skip_lines
    return opts


def add_reconstruction_options(p: argparse.ArgumentParser, cluster: bool = False, batch: bool = True) -> None:
    """The reconstruction, calibration and signal options.

    ``cluster`` adds the run options of ``ricom reconstruct``: ``--cluster``/``--scheduler``
    and ``--threads`` (the live commands and the GUI run their own way); ``batch=False``
    (the GUI, where the window chooses the signals) leaves out ``--signals``,
    ``--chunk-size``, ``--descan`` and ``--rotation auto``.
    """
    use_help_formatter(p)
    g = p.add_argument_group("reconstruction")
    g.add_argument("--kernel-size", type=int, metavar="N",
                   help="odd n of the n×n kernel (default 21, or less for scans smaller than 10 positions)")
    g.add_argument("--filter", nargs=2, type=float, metavar=("KMIN", "KMAX"),
                   help="band-pass folded into the kernel, in cycles per scan pixel (0.5 = Nyquist) unless "
                        "--filter-unit inv_A (default: none)")
    g.add_argument("--filter-unit", choices=("cycles_per_pixel", "inv_A"), default="cycles_per_pixel",
                   help="unit of --filter; inv_A (1/Å) needs --step")
    auto = "; 'auto' finds it from the data" if batch else ""
    g.add_argument("--rotation", default="0", metavar="DEG|auto" if batch else "DEG",
                   help="scan-detector rotation in degrees: the measured COM is turned by DEG from "
                        f"detector +x towards +y (clockwise on screen){auto}")
    add_flip_option(g, "mirror the detector x axis (columns) before the rotation: yes or no; --flip alone = yes")
    g.add_argument("--center", nargs="+", metavar="CY CX|auto",
                   help="pattern centre in detector pixels (row column), or 'auto' (running mean COM); "
                        "default: from the input if it knows it, else auto")
    g.add_argument("--reference", metavar="FILE",
                   help="vacuum reference scan; its mean COM is the centre (default: none)")
    if batch:
        g.add_argument("--descan", nargs="+", metavar="ARG",
                       help="descan correction: 'plane' (or 'quadratic') fitted to the COM over the scan (this "
                            "also removes real long-range fields of that shape), or 'reference [FILE]': the COM "
                            "map of a vacuum scan (FILE defaults to --reference); see docs/calibration.md "
                            "(default: none)")
    g.add_argument("--com-mask", nargs=2, type=float, metavar=("RIN", "ROUT"),
                   help="only pixels with RIN ≤ r < ROUT (detector pixels from the centre) enter the COM "
                        "(default: every pixel)")
    if cluster:
        _add_cluster_options(g)
    c = p.add_argument_group("calibration (all three give riCOM and iCOM in V·Å)")
    c.add_argument("--step", type=float, metavar="ANGSTROM", help="scan step in Å (default: from the input, if any)")
    c.add_argument("--pixel-size-mrad", type=float, metavar="MRAD",
                   help="detector pixel size in mrad (default: from the input, if any)")
    c.add_argument("--energy-kev", type=float, metavar="KEV",
                   help="beam energy in keV (default: from the input, if any)")
    o = p.add_argument_group("signals")
    if batch:
        o.add_argument("--signals", default=DEFAULT_SIGNALS, metavar="LIST",
                       help="comma list: ricom, icom, com (com_x, com_y), vbf, vabf, vadf, divergence, curl, "
                            "efield, counts, and the phase-contrast methods tcbf (tilt-corrected bright field) "
                            "and ssb (single side-band ptychography), all in one pass")
    o.add_argument("--virtual-detector", nargs=2, type=float, metavar=("RIN", "ROUT"),
                   help="annulus of vadf (vbf is the disc inside RIN), in --virtual-detector-unit; default: "
                        "from the bright-field disc")
    o.add_argument("--virtual-detector-unit", choices=("px", "mrad"), default="px",
                   help="unit of --virtual-detector: detector pixels or mrad (mrad needs --pixel-size-mrad)")
    if batch:
        o.add_argument("--chunk-size", type=int, default=512, metavar="N", help="patterns per chunk")
    if cluster:
        o.add_argument("--threads", type=int, default=1, metavar="N",
                       help="threads for the per-pattern sums (the kernel scatter uses one)")
    if batch:
        from ricom.cli.phase_options import add_phase_options
        add_phase_options(p)


def add_flip_option(group, text: str) -> None:
    """``--flip [yes|no]`` (alone: yes), the same words as ``ricom calibrate --flip``."""
    group.add_argument("--flip", nargs="?", choices=("yes", "no"), const="yes", default="no", metavar="yes|no",
                       help=text)


def _add_cluster_options(g) -> None:
    where = g.add_mutually_exclusive_group()
    where.add_argument("--cluster", metavar="local:N",
                       help="read and reduce the patterns on N local worker processes with Dask (needs "
                            "ricom[distributed]); the input must be a file that can be split (not .tpx3/.t3p); "
                            "default: this process")
    where.add_argument("--scheduler", metavar="tcp://HOST:PORT",
                       help="the same on an existing Dask cluster; every worker must read INPUT under the "
                            "same path (shared file system); default: none")


def cluster_address(args) -> str | None:
    """``--cluster local:N`` or ``--scheduler tcp://HOST:PORT`` as one address, or None."""
    cluster, scheduler = getattr(args, "cluster", None), getattr(args, "scheduler", None)
    if cluster is not None:
        from ricom.dask.client import parse_cluster
        try:
            return f"local:{parse_cluster(cluster)}"
        except SettingsError:
            raise SettingsError(f"--cluster takes local:N with N ≥ 1 worker processes, got {cluster!r}") from None
    if scheduler is not None and "://" not in scheduler:
        raise SettingsError(f"--scheduler takes an address tcp://HOST:PORT, got {scheduler!r}")
    return scheduler


def parse_center(values) -> tuple[float, float] | str | None:
    if values is None:
        return None
    if len(values) == 1 and values[0] == "auto":
        return "auto"
    if len(values) != 2:
        raise SettingsError("--center takes two numbers CY CX (detector pixels) or 'auto'")
    try:
        return float(values[0]), float(values[1])
    except ValueError:
        raise SettingsError(f"--center takes two numbers CY CX or 'auto', got {' '.join(values)}") from None


def parse_rotation(value: str) -> float | str:
    if value == "auto":
        return "auto"
    try:
        return float(value)
    except ValueError:
        raise SettingsError(f"--rotation takes an angle in degrees or 'auto', got {value!r}") from None


def signal_list(text: str) -> list[str]:
    names = [s.strip() for s in text.split(",") if s.strip()]
    if not names:
        raise SettingsError("--signals needs at least one name, e.g. ricom,icom,com")
    return names


def signals_and_settings(args) -> tuple[list[str], dict]:
    """The signals to save (checked) and the `make_settings` keywords for them: only the
    virtual detectors that are asked for get computed."""
    from ricom.api import virtual_detectors_from_annulus
    from ricom.engine.snapshot import expand_signals

    kwargs = settings_kwargs(args)
    vd_names = [vd.name for vd in virtual_detectors_from_annulus(kwargs["virtual_detector"],
                                                                  kwargs["virtual_detector_unit"])]
    names = expand_signals(signal_list(args.signals), vd_names)
    kwargs["virtual_names"] = [n for n in names if n in vd_names]
    from ricom.cli.phase_options import phase_kwargs
    kwargs.update(phase_kwargs(args, names))
    return names, kwargs


def settings_kwargs(args) -> dict:
    """Keyword arguments of `ricom.api.make_settings` from parsed options."""
    rotation = parse_rotation(args.rotation)
    if getattr(args, "chunk_size", 1) < 1:
        raise SettingsError("--chunk-size must be at least 1")
    return {
        "kernel_size": args.kernel_size,
        "band_pass": tuple(args.filter) if args.filter else None,
        "band_pass_unit": args.filter_unit,
        "rotation_deg": 0.0 if rotation == "auto" else rotation,
        "flip": args.flip == "yes",
        "center_yx": parse_center(args.center),
        "step_A": args.step,
        "pixel_size_mrad": args.pixel_size_mrad,
        "energy_keV": args.energy_kev,
        "virtual_detector": tuple(args.virtual_detector) if args.virtual_detector else None,
        "virtual_detector_unit": args.virtual_detector_unit,
        "com_mask_px": tuple(args.com_mask) if args.com_mask else None,
    }


def parse_descan(values, reference=None) -> tuple[str | None, str | None]:
    """``--descan`` words → (mode, reference file); FILE defaults to ``--reference``.

    Shared with ``ricom reconstruct --descan plane|quadratic|none|reference [FILE]``.
    """
    if not values:
        return None, None
    mode = values[0]
    if mode not in ("plane", "quadratic", "none", "reference") or len(values) > (2 if mode == "reference" else 1):
        raise SettingsError(f"--descan takes plane, quadratic, none or 'reference FILE', got {' '.join(values)}")
    if mode == "reference":
        reference = values[1] if len(values) == 2 else reference
        if reference is None:
            raise SettingsError("--descan reference needs the vacuum scan: --descan reference FILE")
    return mode, reference
