"""The command line's phase-contrast options (tcBF and SSB beside riCOM, ``--signals
ricom,tcbf,ssb``): the "phase contrast" argument group of the commands that reconstruct
a whole scan (``ricom reconstruct``, ``ricom live …``), and the `ricom.phase.methods.phase_methods`
keywords they give.  Units as in the names: mrad, Å (positive defocus = underfocus, as
``ricom simulate --defocus``), detector pixels, GiB.
"""
from __future__ import annotations

import argparse

from ricom.core.errors import SettingsError


def add_phase_options(p: argparse.ArgumentParser) -> None:
    """``--convergence-mrad``, ``--defocus``, ``--tcbf-fit``, ``--tcbf-bin``, ``--tcbf-upsample``,
    ``--ssb-bin``, ``--ssb-max-memory-gb``."""
    g = p.add_argument_group("phase contrast (with tcbf or ssb in --signals; energy and step from the calibration)")
    g.add_argument("--convergence-mrad", type=float, metavar="MRAD",
                   help="probe convergence semi-angle in mrad; ssb needs it (default: none)")
    g.add_argument("--defocus", type=float, metavar="ANGSTROM",
                   help="defocus in Å; positive = underfocus (Kirkland's Δf, C1 = −Δf): SSB's aberration "
                        "correction and tcBF's shifts with --tcbf-fit given (default: SSB takes tcBF's fitted "
                        "defocus when both run, else 0)")
    g.add_argument("--tcbf-fit", choices=("auto", "first", "given"), default="auto",
                   help="where tcBF's shifts come from: auto refits as the scan fills, first fits once on the "
                        "first rows, given uses --defocus")
    g.add_argument("--tcbf-bin", type=int, metavar="PX",
                   help="tcBF bins of PX×PX detector pixels (default: a twelfth of the bright-field disc across)")
    g.add_argument("--tcbf-upsample", type=int, default=1, metavar="N",
                   help="tcBF image on a grid N times finer than the scan")
    g.add_argument("--ssb-bin", type=int, metavar="PX",
                   help="SSB bins of PX×PX detector pixels (default: about 64 binned pixels across the detector)")
    g.add_argument("--ssb-max-memory-gb", type=float, metavar="GB",
                   help="memory SSB's accumulators may take in GiB; past it the run is refused before it starts "
                        "(default: a quarter of this machine's memory)")


def phase_kwargs(args, names) -> dict:
    """The `ricom.phase.methods.phase_methods` keywords of the parsed options (empty without them)."""
    if not hasattr(args, "tcbf_fit"):
        return {}
    gb = args.ssb_max_memory_gb
    if gb is not None and not gb > 0:
        raise SettingsError(f"--ssb-max-memory-gb must be positive, got {gb:g}")
    return {"signals": [n for n in names if n in ("tcbf", "ssb")], "convergence_mrad": args.convergence_mrad,
            "defocus_A": args.defocus, "tcbf_fit": args.tcbf_fit, "tcbf_bin_px": args.tcbf_bin,
            "tcbf_upsample": args.tcbf_upsample, "ssb_bin_factor": args.ssb_bin,
            "ssb_max_memory_bytes": None if gb is None else int(gb * 2**30)}
