"""The phase-contrast cases of ``ricom bench``: tcBF (and later SSB) beside riCOM, live.

Each case drives the pipeline (`ricom.engine.pipeline.run`, reader thread and workers as
in a live run) over the same in-memory patterns twice — riCOM alone, then riCOM with the
phase reducer attached — best of two runs each (the first also loads the compiled code),
and reports the rate with the reducer, and in its note the ratio to the riCOM-only rate
measured in the same run.

Adding a case: a runner ``bench_<method>_live(**args) -> BenchRecord`` here, its kind in
`RUNNERS` and its arguments in `plan`.  ``ricom.tools.bench`` runs every kind listed.
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ricom.core.params import Calibration
from ricom.engine.pipeline import run
from ricom.engine.reconstruction import Reconstruction
from ricom.phase.tcbf import TcbfSettings, attach_tcbf
from ricom.sources.arrays import ArraySource
from ricom.tools.bench_core import BenchRecord, bench_settings, make_record, memread_gb_per_s, synthetic_frames

CALIBRATION = Calibration(step_A=0.2, pixel_size_mrad=0.5, energy_keV=300.0)
"""A plausible calibration for the synthetic patterns (a 256² detector, BF disc radius ≈ 51 px)."""


def in_memory_frames(scan_shape, detector_shape, n_unique: int = 1024) -> np.ndarray:
    """Poisson patterns with a bright-field disc (`synthetic_frames`), repeated over the scan (uint16)."""
    unique = synthetic_frames(n_unique, detector_shape, 4095)
    return np.resize(unique, (scan_shape[0] * scan_shape[1], *detector_shape))


def compare_rates(frames: np.ndarray, scan_shape, kernel: int, threads: int,
                  attach: Callable[[Reconstruction], object]) -> tuple[float, float, object]:
    """Best-of-two seconds of riCOM alone and of riCOM with ``attach(rec)``'s reducer (runs
    alternate), and the last attached reducer."""
    det = frames.shape[1:]
    settings = bench_settings(kernel, det).with_(calibration=CALIBRATION)
    best = {False: float("inf"), True: float("inf")}
    reducer = None
    for _ in range(2):
        for with_phase in (False, True):
            rec = Reconstruction(scan_shape, det, settings, threads=threads)
            if with_phase:
                reducer = attach(rec)
            res = run(ArraySource(frames, scan_shape=scan_shape), rec, chunk_size=512)
            best[with_phase] = min(best[with_phase], res.seconds_processing)
    return best[False], best[True], reducer


def bench_tcbf_live(scan_shape=(128, 128), detector_shape=(256, 256), kernel: int = 61, threads: int = 1,
                    fit: str = "given", defocus_A: float = 200.0) -> BenchRecord:
    """tcBF beside riCOM on 256² patterns: with ``fit="given"`` every chunk is binned and
    added at once (shifts known); ``"auto"`` also fits and rebuilds as complete rows double."""
    frames = in_memory_frames(scan_shape, detector_shape)
    memread = memread_gb_per_s(frames, threads=threads)
    tcbf = TcbfSettings(fit=fit, defocus_A=defocus_A, fit_rows=max(16, scan_shape[0] // 4))
    plain, with_tcbf, red = compare_rates(frames, scan_shape, kernel, threads, lambda rec: attach_tcbf(rec, tcbf))
    n = scan_shape[0] * scan_shape[1]
    r = red.get_results()
    note = (f"tcBF ({fit}, {r['n_bins']} bins of {r['bin_px']}×{r['bin_px']} px, {r['n_fits']} fits) beside riCOM-"
            f"{kernel}: {plain / with_tcbf:.2f}× the riCOM-only rate ({n / plain:,.0f} patterns/s)")
    return make_record(f"tcbf live {fit}", threads, kernel, detector_shape, with_tcbf, n, frames[0].nbytes, memread,
                       note=note)


def plan(quick: bool) -> list[tuple[str, dict]]:
    """The phase-contrast cases (kind, arguments)."""
    scan = (128, 64) if quick else (128, 128)
    det = (256, 256)
    return [("tcbf-live", dict(scan_shape=scan, detector_shape=det, kernel=61, threads=1, fit="given")),
            ("tcbf-live", dict(scan_shape=scan, detector_shape=det, kernel=61, threads=1, fit="auto"))]


RUNNERS = {"tcbf-live": bench_tcbf_live}


__all__ = ["CALIBRATION", "RUNNERS", "bench_tcbf_live", "compare_rates", "in_memory_frames", "plan"]
