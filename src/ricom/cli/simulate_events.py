"""ricom simulate events -o FILE [--format tpx3|t3p|h5] [--from COUNTS.npy] [options]

Write an event file of the built-in SrTiO3 specimen (Poisson counts at --dose electrons
per probe position, default 100) or of a 4D count array (--from, shape SY SX DY DX):
one event per count, arriving uniformly within the dwell time of its position.

  .tpx3  Timepix3 raw packets: TDC1 rise/fall around every scan line, a quad chip
         layout (ASI CheeTah, 512×512; the patterns are centred), packets out of order
         by up to --jitter-ns; set --start-ns near 26843545600 to cross a ToA roll-over.
  .t3p   PIXet records on one 256×256 chip; read back with --dwell-ns and --scan-shape
         (also stored in FILE.t3p.ricom.json, which the readers pick up).
  .h5    ricom's HDF5 event layout (events grouped by position, x/y, arrival times,
         scan shape, dwell and calibration as attributes; no sidecar).

Example: ricom simulate events -o scan.tpx3 --scan-shape 32 32 --dose 200
         ricom reconstruct scan.tpx3 --acceptance-ns 300
"""
from __future__ import annotations

import os

import numpy as np

from ricom.cli.simulate import add_specimen_arguments, simulation_params

DEFAULT_DOSE = 100.0


def add_arguments(p) -> None:
    p.add_argument("-o", "--output", required=True, metavar="FILE", help=".tpx3, .t3p or .h5")
    p.add_argument("--format", choices=("tpx3", "t3p", "h5"), help="default: from the extension of FILE")
    p.add_argument("--from", dest="counts", metavar="COUNTS.npy",
                   help="4D integer count array (SY, SX, DY, DX) instead of the built-in specimen")
    g = p.add_argument_group("timing")
    g.add_argument("--dwell-ns", type=float, default=1000.0, metavar="NS", help="dwell per position (default 1000)")
    g.add_argument("--line-gap-ns", type=float, default=2000.0, metavar="NS",
                   help="flyback time between scan lines, .tpx3 (default 2000)")
    g.add_argument("--start-ns", type=float, default=0.0, metavar="NS", help="arrival of the first position")
    g.add_argument("--jitter-ns", type=float, default=500.0, metavar="NS",
                   help="packets arrive up to this late (out of order) in the stream (default 500)")
    g.add_argument("--chip-layout", metavar="LAYOUT",
                   help="'cheetah' (quad, .tpx3 default), 'single' (.t3p default) or 'ox,oy,sx,sy;…' per chip")
    add_specimen_arguments(p)


def _count_bands(path: str, rows: int = 4):
    from ricom.core.errors import InputError
    from ricom.sources.arrays import read_sidecar

    try:
        data = np.load(path, mmap_mode="r")
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: not a readable .npy file ({exc})") from None
    if data.ndim != 4 or data.dtype.kind not in "ui":
        raise InputError(f"{path}: need a 4D integer count array (SY, SX, DY, DX), got {data.ndim}D {data.dtype}")
    sy, sx, dy, dx = data.shape
    bands = ((np.asarray(data[r:r + rows]).reshape(-1, dy, dx), np.arange(r * sx, min(sy, r + rows) * sx))
             for r in range(0, sy, rows))
    return bands, (sy, sx), (dy, dx), read_sidecar(path), {"source": os.path.abspath(path)}


def _specimen_bands(args):
    from dataclasses import asdict

    from ricom.simulators.specimen import detector_calibration, simulate_chunks

    if args.dose is None:
        args.dose = DEFAULT_DOSE
    params = simulation_params(args)
    pixel_mrad, centre = detector_calibration(params)
    cal = {"step_A": params.step_A, "pixel_size_mrad": pixel_mrad, "energy_keV": params.energy_keV,
           "center_yx": list(centre)}
    return simulate_chunks(params, 4), params.scan_shape, params.detector_shape, cal, \
        {"simulation": {"params": asdict(params)}}


def _counted(bands, progress):
    """The bands, telling ``progress`` of the positions of each."""
    for frames, positions in bands:
        yield frames, positions
        progress.update(len(positions))


def run(args) -> int:
    from ricom.core.progress import Progress, count_text
    from ricom.simulators.events import write_events

    if args.counts:
        bands, scan, det, cal, extra = _count_bands(args.counts)
    else:
        bands, scan, det, cal, extra = _specimen_bands(args)
    n_pos = scan[0] * scan[1]
    with Progress("simulate events", n_pos, "positions") as progress:
        info = write_events(args.output, _counted(bands, progress), scan, det, args.format, dwell_ns=args.dwell_ns,
                            line_gap_ns=args.line_gap_ns, start_ns=args.start_ns, jitter_ns=args.jitter_ns,
                            chip_layout=args.chip_layout, seed=args.seed, calibration=cal, extra=extra)
    from ricom.core.sidecar import sidecar_path

    side = "" if info["format"] == "h5" else f" and {sidecar_path(args.output)}"
    print(progress.summary(f"wrote {args.output}{side}: {count_text(info['n_events'])} events "
                           f"({info['n_events'] / n_pos:.1f} per position) of a {scan[0]}×{scan[1]} scan, "
                           f"dwell {info['dwell_ns']:g} ns"))
    return 0
