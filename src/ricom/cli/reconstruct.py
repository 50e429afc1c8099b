"""ricom reconstruct INPUT [-o OUTPUT] [options]

Reconstruct riCOM (and iCOM, COM, virtual detectors, …) from a whole dataset and save
the images.  INPUT is a .npy 4D array, a file of another supported format, or 'demo'.
OUTPUT .h5 holds every signal; .npy/.tif the first signal; .png a preview.

Exit codes: 0 done; 2 bad input (nothing written); 3 the input broke off and the
partial result was saved; 130 interrupted with Ctrl-C, partial result saved.
"""
from __future__ import annotations

import os
import sys

from .options import add_reconstruction_options, add_source_options, settings_kwargs, signal_list, source_options

HELP = "reconstruct riCOM and other signals from a dataset"


def add_arguments(p) -> None:
    p.add_argument("input", metavar="INPUT", help="data file (.npy, .mib, file.h5:/dataset, …) or 'demo'")
    p.add_argument("-o", "--output", metavar="OUTPUT",
                   help="output file .h5/.npy/.tif/.png (default: INPUT name + _ricom.h5 here)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_source_options(p)
    add_reconstruction_options(p)


def default_output(spec: str) -> str:
    stem = "demo" if spec == "demo" else os.path.splitext(os.path.basename(spec.split(":")[0].rstrip("/")))[0]
    return f"{stem}_ricom.h5"


def run(args) -> int:
    from .. import api, outputs
    from .options import parse_descan, parse_rotation

    output = args.output or default_output(args.input)
    outputs.check_output_path(output)
    from ..snapshot import expand_signals

    kwargs = settings_kwargs(args)
    vd_names = [vd.name for vd in api.make_settings(**{**kwargs, "kernel_size": 3}).virtual_detectors]
    names = expand_signals(signal_list(args.signals), vd_names)
    kwargs["virtual_names"] = [n for n in names if n in vd_names]
    descan, descan_ref = parse_descan(args.descan, args.reference)
    result, rec, _ = api.reconstruct_run(
        args.input, reference=args.reference, descan=descan, descan_reference=descan_ref,
        progress=not args.no_progress, chunk_size=args.chunk_size, source_options=source_options(args),
        threads=args.threads, **kwargs)
    snap = result.snapshot
    extra = {"input": args.input}
    if descan:
        extra["descan"] = descan
    if parse_rotation(args.rotation) == "auto":
        from ..calibrate import apply_auto_rotation
        report = apply_auto_rotation(rec)
        snap = rec.snapshot()
        snap.seconds_processing = result.seconds_processing
        extra.update({f"auto_rotation_{k}": v for k, v in report.items() if k not in ("rotation_deg", "flip")})
        print(f"rotation: {report['rotation_deg']:.2f}° flip: {report['flip']} "
              f"(confidence {report['confidence']:.2f})", file=sys.stderr)
    written = outputs.save(output, snap, names, extra)
    rate = snap.n_patterns / result.seconds_processing if result.seconds_processing > 0 else float("nan")
    if snap.n_invalid:
        print(f"warning: {snap.n_invalid} patterns contained NaN or infinite values and were skipped",
              file=sys.stderr)
    print(f"{snap.n_patterns} patterns in {result.seconds_processing:.2f} s ({rate:,.0f}/s); "
          f"wrote {', '.join(written)} to {output}")
    if result.interrupted:
        print(f"ricom: interrupted; the partial result ({snap.n_patterns} patterns) is saved in {output}",
              file=sys.stderr)
        return 130
    if result.error:
        print(f"ricom: error: {result.error}; the partial result ({snap.n_patterns} patterns) is saved "
              f"in {output}", file=sys.stderr)
        return 3
    return 0
