"""ricom reconstruct INPUT [-o OUTPUT] [options]

Reconstruct riCOM (and iCOM, COM, virtual detectors, …) from a whole dataset and save
the images.  INPUT is a .npy 4D array, a file of another supported format, or 'demo'.
With tcbf or ssb in --signals, tilt-corrected bright field and single side-band
ptychography are computed in the same pass (options under "phase contrast"; SSB's memory
plan is printed before the run and a plan past --ssb-max-memory-gb is refused).
OUTPUT .h5 holds every signal; .hspy every signal as calibrated HyperSpy signals (COM as a
pyxem beam shift); .npy/.tif the first signal (TIFF in ImageJ format, pixel size in Å), or
one file per signal with {signal} in the name; .png a preview with scale and colour bars.

With --cluster local:N or --scheduler tcp://HOST:PORT the patterns are read and reduced
by Dask workers, each reading its own part of INPUT (see docs/howto/dask.md).

Exit codes: 0 done; 2 bad input (nothing written); 3 the input broke off (a damaged
frame, a truncated file) and the partial result was saved; 130 Ctrl-C: nothing is
written during start-up, later the result so far is saved (a save under way is
finished first).
"""
from __future__ import annotations

import os
import sys

from ricom.cli.options import add_reconstruction_options, add_source_options, signals_and_settings, source_options

HELP = "reconstruct riCOM and other signals from a dataset"


def add_arguments(p) -> None:
    p.add_argument("input", metavar="INPUT", help="data file (.npy, .mib, file.h5:/dataset, …) or 'demo'")
    p.add_argument("-o", "--output", metavar="OUTPUT",
                   help="output file .h5/.hspy/.npy/.tif/.png; {signal} in an .npy/.tif name: one file per "
                        "signal (default: INPUT name + _ricom.h5 here)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_source_options(p)
    add_reconstruction_options(p, cluster=True)


def default_output(spec: str) -> str:
    stem = "demo" if spec == "demo" else os.path.splitext(os.path.basename(spec.split(":")[0].rstrip("/")))[0]
    return f"{stem}_ricom.h5"


def run(args) -> int:
    from ricom.cli.interrupts import Interrupts

    with Interrupts() as interrupts:
        return _run(args, interrupts)


def _run(args, interrupts) -> int:
    from ricom import api
    from ricom.cli.finish import save_result
    from ricom.cli.options import cluster_address, parse_descan, parse_rotation
    from ricom.core.errors import SettingsError
    from ricom.engine.snapshot import PHASE_SIGNALS
    from ricom.io import outputs
    from ricom.phase.methods import KEYWORDS as PHASE_KEYWORDS

    output = args.output or default_output(args.input)
    outputs.check_output_path(output)
    outputs.load_writer(output)  # during start-up, not in the save
    names, kwargs = signals_and_settings(args)
    descan, descan_ref = parse_descan(args.descan, args.reference)
    address = cluster_address(args)
    phase = [n for n in names if n in PHASE_SIGNALS]
    if address is not None:  # Dask handles Ctrl-C while the cluster works (keeps the ranges done)
        from ricom.dask.client import reconstruct_run_distributed
        if phase:
            raise SettingsError(f"{' and '.join(phase)} need the patterns in this process, and Dask workers "
                                "send back moments only; leave out --cluster/--scheduler")
        kwargs = {k: v for k, v in kwargs.items() if k not in PHASE_KEYWORDS}
        interrupts.hand_back()
        result, rec, source = reconstruct_run_distributed(
            args.input, client=address, reference=args.reference, descan=descan, descan_reference=descan_ref,
            progress=not args.no_progress, chunk_size=args.chunk_size, source_options=source_options(args),
            threads=args.threads, **kwargs)
        interrupts.keep()
    else:
        result, rec, source = api.reconstruct_run(
            args.input, reference=args.reference, descan=descan, descan_reference=descan_ref,
            progress=not args.no_progress, chunk_size=args.chunk_size, source_options=source_options(args),
            threads=args.threads, stop=interrupts.stop, before_run=_before_run(interrupts), **kwargs)
    extra = {"input": args.input, **({"descan": descan} if descan else {}), **_order_attrs(source)}
    return save_result(output, names, result, rec, extra, parse_rotation(args.rotation) == "auto",
                       interrupted=interrupts.count > 0)


def _before_run(interrupts):
    """Once the engine exists: SSB's memory plan on stderr, then Ctrl-C keeps the result."""
    from ricom.phase.methods import methods_of

    def before_run(rec, source) -> None:
        methods = methods_of(rec)
        if methods is not None and methods.plan_text:
            print(methods.plan_text, file=sys.stderr, flush=True)
        interrupts.keep()

    return before_run


def _order_attrs(source) -> dict:
    """The scan-positions file and its count of never-visited positions, when one was used."""
    describe = getattr(source, "describe_order", None)
    return describe() if describe is not None else {}
