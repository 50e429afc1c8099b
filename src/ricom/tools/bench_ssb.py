"""The SSB cases of ``ricom bench``: live SSB beside riCOM, and offline SSB of a file in bounded memory.

``ssb-live``: a 128×128 scan of 128×128 patterns (a bright-field disc with Poisson
noise, a few hundred distinct frames cycled from memory) binned 4×4 to 32×32, through
the pipeline with riCOM (61×61) alone and with an `SsbReducer` attached; reports the
patterns/s of both, the accumulator's bytes (and the plan's), and the time one image takes.

``ssb-offline``: a 256×256-scan ``.npy`` file (64×64 patterns, binned 2×2) reconstructed by
`ssb_offline` in a fresh process with a memory limit; reports the seconds, the plan's
passes and bytes, the peak of memory allocated (``tracemalloc``, which NumPy reports to)
and the peak resident set (``getrusage``; it includes the pages of the memory-mapped
file that were read).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import numpy as np

from ricom.core.chunks import FrameChunk
from ricom.core.params import Calibration, DetectorGeometry, KernelSettings, Settings
from ricom.engine.pipeline import run
from ricom.engine.reconstruction import Reconstruction
from ricom.phase.ssb import SsbOptions, attach_ssb
from ricom.tools.bench_core import BenchRecord, make_record, memread_gb_per_s, synthetic_frames
from ricom.tools.bench_frames import write_npy_scan

CONVERGENCE_MRAD = 20.0


def calibration(detector_shape) -> Calibration:
    """A calibration whose bright-field disc is that of `synthetic_frames` (radius min(det)/5 px)."""
    return Calibration(step_A=0.2, pixel_size_mrad=CONVERGENCE_MRAD / (min(detector_shape) / 5), energy_keV=300.0)


class _Cycled:
    """A scan whose patterns cycle through frames held in memory (the engine and reducers alone)."""

    kind = "frames"

    def __init__(self, frames: np.ndarray, scan_shape) -> None:
        self.frames, self.scan_shape = frames, tuple(scan_shape)
        self.detector_shape = frames.shape[1:]
        self.n_frames = self.scan_shape[0] * self.scan_shape[1]

    def chunks(self, chunk_size: int = 256):
        step = max(1, min(chunk_size, len(self.frames)))
        for start in range(0, self.n_frames, step):
            k = min(step, self.n_frames - start)
            yield FrameChunk(self.frames[:k], np.arange(start, start + k, dtype=np.int64))

    def close(self) -> None:
        pass


def _timed(frames, scan_shape, kernel: int, options: SsbOptions | None):
    """Seconds of a run (after a warm-up run), its reconstruction and its SSB reducer, if any."""
    det = frames.shape[1:]
    settings = Settings(kernel=KernelSettings(kernel), geometry=DetectorGeometry(((det[0] - 1) / 2, (det[1] - 1) / 2)),
                        calibration=calibration(det))
    best = None
    for _ in range(2):
        rec = Reconstruction(scan_shape, det, settings)
        ssb = attach_ssb(rec, options) if options is not None else None
        res = run(_Cycled(frames, scan_shape), rec, chunk_size=512)
        if best is None or res.seconds_processing < best[0]:
            best = (res.seconds_processing, res.snapshot.n_patterns, ssb)
    return best


def bench_ssb_live(scan_shape=(128, 128), detector_shape=(128, 128), bin_factor: int = 4, kernel: int = 61,
                   threads: int = 1) -> BenchRecord:
    """riCOM alone, then riCOM with live SSB, on the same in-memory patterns."""
    frames = synthetic_frames(256, detector_shape, 4095)
    options = SsbOptions(CONVERGENCE_MRAD, bin_factor=bin_factor)
    plain, _, _ = _timed(frames, scan_shape, kernel, None)
    secs, n, ssb = _timed(frames, scan_shape, kernel, options)
    t = time.perf_counter()
    image = ssb.image()
    t_image = time.perf_counter() - t
    by, bx = ssb.plan.binned_shape
    note = (f"{by}×{bx} binned, {ssb.accumulator_bytes / 2**20:.0f} MiB accumulator ({len(ssb._kept)} pixels; "
            f"planned ≤ {ssb.plan.total_bytes / 2**20:.0f} MiB); riCOM alone {n / plain:.0f} patterns/s, riCOM + SSB "
            f"{plain / secs:.2f} of that; one SSB image {t_image:.2f} s; finite {bool(np.isfinite(image).all())}")
    return make_record("ssb live", threads, kernel, list(detector_shape), secs, n, frames[0].nbytes,
                       memread_gb_per_s(frames), note)




def offline_in_process(path: str, bin_factor: int, max_memory_bytes: int) -> dict:
    """`ssb_offline` of ``path`` with the memory traced (run in a fresh process by `bench_ssb_offline`)."""
    import resource
    import tracemalloc

    from ricom.phase.ssb import ssb_offline

    det = np.load(path, mmap_mode="r").shape[2:]
    tracemalloc.start()
    res = ssb_offline(path, SsbOptions(CONVERGENCE_MRAD, bin_factor=bin_factor), calibration(det),
                      DetectorGeometry(((det[0] - 1) / 2, (det[1] - 1) / 2)), max_memory_bytes=max_memory_bytes)
    traced = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    rss_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"seconds": res.seconds, "n": res.n_patterns, "plan": res.plan.describe(), "passes": res.plan.n_passes,
            "planned": res.plan.bytes_needed, "traced": traced, "maxrss": rss_kb * 1024,
            "finite": bool(np.isfinite(res.image).all())}


def bench_ssb_offline(folder: str, scan_shape=(256, 256), detector_shape=(64, 64), bin_factor: int = 2,
                      max_memory_mb: int = 256) -> BenchRecord:
    """Offline SSB of a page-cached ``.npy`` file in a fresh process, its memory limited and measured."""
    path = os.path.join(folder, f"ssb_{scan_shape[0]}x{scan_shape[1]}_{detector_shape[0]}.npy")
    if not os.path.exists(path):
        write_npy_scan(path, scan_shape, detector_shape)
    code = ("import json; from ricom.tools.bench_ssb import offline_in_process; "
            f"print(json.dumps(offline_in_process({path!r}, {bin_factor}, {max_memory_mb << 20})))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    r = json.loads(out.stdout.strip().splitlines()[-1])
    mib = 2**20
    note = (f"{r['plan']}; peak allocated (tracemalloc) {r['traced'] / mib:.0f} MiB, peak RSS {r['maxrss'] / mib:.0f} "
            f"MiB (with the mapped file's pages; the file is {os.path.getsize(path) / mib:.0f} MiB); "
            f"finite {r['finite']}")
    mm = np.load(path, mmap_mode="r")
    memread, frame_bytes = memread_gb_per_s(mm), mm[0, 0].nbytes
    del mm
    return make_record("ssb offline npy", 1, 0, list(detector_shape), r["seconds"], r["n"], frame_bytes, memread,
                       note)


def plan(quick: bool) -> list[tuple[str, dict]]:
    """The SSB cases (kind, arguments)."""
    offline_scan = (128, 128) if quick else (256, 256)
    return [("ssb-live", dict(scan_shape=(128, 128), detector_shape=(128, 128), bin_factor=4)),
            ("ssb-offline", dict(scan_shape=offline_scan, detector_shape=(64, 64), bin_factor=2))]


RUNNERS = {"ssb-live": bench_ssb_live, "ssb-offline": bench_ssb_offline}
NEEDS_FOLDER = {"ssb-offline"}


def joined(plan_fn, runners: dict, needs_folder: set):
    """``ricom bench``'s plan with the SSB cases after its own; their runners added to ``runners``
    (and ``needs_folder``)."""
    runners.update(RUNNERS)
    needs_folder.update(NEEDS_FOLDER)

    def with_ssb(quick: bool) -> list[tuple[str, dict]]:
        return [*plan_fn(quick), *plan(quick)]
    with_ssb.__doc__ = plan_fn.__doc__
    return with_ssb


__all__ = ["RUNNERS", "bench_ssb_live", "bench_ssb_offline", "joined", "offline_in_process", "plan"]
