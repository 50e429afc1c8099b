"""ricom calibrate INPUT [--json FILE] [options]

Find the scan–detector rotation, the detector flip, the pattern centre and the descan
from the data in one pass, print them with a confidence, and the options to pass to
``ricom reconstruct``.  Conventions: ``--flip`` mirrors detector x (columns) first, then
the rotation θ turns the measured COM from detector +x towards detector +y (clockwise
on screen); centres are (row, column) in detector pixels.

When the data cannot decide (vacuum, noise only, no atomic contrast) it prints
"cannot determine" with the reason instead of an angle (exit 0; exit 2 with --require).
Fitting the descan on the specimen itself also removes real long-range fields.
"""
from __future__ import annotations

import json
import os
import sys

from ricom.cli.options import CLI, add_source_options, error_text, parse_descan, source_options
from ricom.core.progress import Progress, yes_no

HELP = "find rotation, flip, centre and descan from the data"


def add_arguments(p) -> None:
    p.add_argument("input", metavar="INPUT", help="data file (.npy, .mib, file.h5:/dataset, …) or 'demo'")
    p.add_argument("--json", metavar="FILE", help="also write the full result as JSON (default: none)")
    p.add_argument("--center", nargs="+", default=["com"], metavar="ARG",
                   help="com (default: the mean COM, as --center auto does), disc (fit of the bright-field "
                        "disc edge), reference (the reference's mean COM), or CY CX in detector pixels")
    p.add_argument("--descan", nargs="+", default=["plane"], metavar="ARG",
                   help="plane (default) or quadratic: fitted to the COM over the scan (also removes real "
                        "long-range fields); none; or 'reference FILE': a vacuum scan's COM map")
    p.add_argument("--reference", metavar="FILE",
                   help="vacuum reference scan (same scan) for the 'reference' modes (default: none)")
    p.add_argument("--flip", choices=("auto", "yes", "no"), default="auto",
                   help="find whether detector x (columns) is mirrored (auto), or fix it: yes or no")
    p.add_argument("--require", action="store_true",
                   help="exit with status 2 if the rotation cannot be determined")
    p.add_argument("--chunk-size", type=int, default=512, metavar="N", help="patterns per chunk")
    p.add_argument("--no-progress", action="store_true", help="no progress bar or progress lines")
    add_source_options(p)


def _center(values):
    from ricom.core.errors import SettingsError

    if len(values) == 1 and values[0] in ("com", "auto", "disc", "reference"):
        return "com" if values[0] == "auto" else values[0]
    try:
        cy, cx = (float(v) for v in values)
    except ValueError:
        raise SettingsError(f"--center takes com, disc, reference or two numbers CY CX, got {' '.join(values)}") \
            from None
    return cy, cx


def reconstruct_options(report) -> str:
    """The ``ricom reconstruct`` options that apply a determined calibration."""
    r = report.rotation
    opts = f"--rotation {r.rotation_deg:.2f} --flip {yes_no(r.flip)}"
    opts += f" --center {report.center_yx[0]:.2f} {report.center_yx[1]:.2f}"
    if report.descan_method in ("plane", "reference"):
        opts += " --descan " + report.descan_method + (" FILE" if report.descan_method == "reference" else "")
    return opts


def run(args) -> int:
    from ricom.calibration.calibrate import calibrate
    from ricom.core.errors import SettingsError

    if args.json:
        folder = os.path.dirname(os.path.abspath(args.json))
        if not os.path.isdir(folder):
            raise SettingsError(f"--json folder {folder!r} does not exist; create it or choose another file")
    if args.chunk_size < 1:
        raise SettingsError("--chunk-size must be at least 1")
    center = _center(args.center)
    descan, reference = parse_descan(args.descan, args.reference)
    if center == "reference" and reference is None:
        raise SettingsError("--center reference needs the vacuum scan: --reference FILE")
    flip = {"auto": None, "yes": True, "no": False}[args.flip]
    with Progress("calibrate", show=False) as clock:  # the pass over the data shows its own progress
        report = calibrate(args.input, center=center, descan=descan, reference=reference, flip=flip,
                           chunk_size=args.chunk_size, progress=not args.no_progress, **source_options(args))
    clock.update(report.n_patterns)
    print(report.summary(CLI))
    if report.rotation.determined:
        print(f"use: ricom reconstruct INPUT {reconstruct_options(report)}")
    if not report.complete:
        print(f"warning: the input ended early; calibrated from {report.n_patterns} patterns", file=sys.stderr)
    if args.json:
        from ricom.io.outputs import atomic_path

        found = report.to_dict()
        if not report.rotation.determined:
            found["rotation"]["reason"] = error_text(report.rotation.reason)
        with atomic_path(args.json) as tmp, open(tmp, "w") as fh:
            json.dump({"input": args.input, **found}, fh, indent=1)
    print(clock.summary(f"wrote {args.json}" if args.json else ""))
    if args.require and not report.rotation.determined:
        raise SettingsError(report.rotation.reason)
    return 0
