"""Measuring tools of ``ricom bench``: the record format, a same-run memory-read
baseline, synthetic inputs, the timing of one reconstruction run and of a recording."""
from __future__ import annotations

import os
import resource
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numba
import numpy as np

from ricom.core.params import DetectorGeometry, KernelSettings, Settings
from ricom.engine.pipeline import run
from ricom.engine.reconstruction import Reconstruction
from ricom.io.recorder import FrameRecorder
from ricom.sources.merlin.encode import encode_frames


@dataclass
class BenchRecord:
    """One measured case (the JSON schema of ``ricom bench --json``)."""

    case: str
    threads: int
    kernel_size: int
    detector_shape: list
    patterns_per_s: float | None
    gb_per_s: float
    memread_ratio: float
    seconds: float
    n_patterns: int
    events_per_s: float | None = None
    note: str = ""
    latency_ms_median: float | None = None
    """Live cases: arrival of a chunk's first pattern → image updated, median and maximum."""
    latency_ms_max: float | None = None

    def as_dict(self) -> dict:
        return asdict(self)


@numba.njit(nogil=True, cache=True)
def _touch_all(words):
    acc = np.uint64(0)
    for i in range(words.shape[0]):
        acc += words[i]
    return acc


def memread_gb_per_s(buf: np.ndarray, repeat: int = 3, threads: int = 1) -> float:
    """Best-of-``repeat`` rate of reading every byte of ``buf`` once (compiled loop), with
    the bytes shared over ``threads`` threads like a run with that many."""
    words = np.asarray(buf).reshape(-1).view(np.uint8)
    words = words[: words.size // 8 * 8].view(np.uint64)
    _touch_all(words[:8])
    parts = np.array_split(words, max(1, threads))
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        if len(parts) == 1:
            _touch_all(words)
        else:
            from concurrent.futures import ThreadPoolExecutor
            with ThreadPoolExecutor(len(parts)) as pool:
                list(pool.map(_touch_all, parts))
        best = min(best, time.perf_counter() - t)
    return words.nbytes / best / 1e9


def memread_pair(buf: np.ndarray, threads: int) -> tuple[float, str]:
    """The memory read of ``buf`` by ``threads`` threads (GB/s) and, for more than one, a
    note giving the one-thread rate beside it (the ratio a run with more threads can at
    best reach over one)."""
    rate = memread_gb_per_s(buf, threads=threads)
    if threads <= 1:
        return rate, ""
    one = memread_gb_per_s(buf, threads=1)
    return rate, f"memread 1 thread {one:.1f} GB/s, {threads} threads {rate:.1f} GB/s ({rate / one:.2f}×)"


def age_in_page_cache(path: str, aged: str) -> str:
    """A copy of ``path`` at ``aged`` whose pages came back from the disk into the page cache
    (as a file a user reprocesses has: not the large folios a file just written sits in);
    made once."""
    if os.path.exists(aged):
        return aged
    tmp = aged + ".part"
    with open(path, "rb") as src, open(tmp, "wb") as dst:
        while block := src.read(64 << 20):
            dst.write(block)
    os.replace(tmp, aged)
    return settle_in_page_cache(aged)


def settle_in_page_cache(path: str) -> str:
    """Write ``path``'s dirty pages to the disk and wait for them, drop its pages and read them
    back: the file then sits in the page cache as one a user reprocesses does (clean, in the
    folios a read from the disk makes), whoever wrote it and how; no writeback is left to
    compete with the run that reads it.  Returns ``path``."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)  # waits for the writeback of every dirty page (a mapping's too, once synced)
        if hasattr(os, "posix_fadvise"):
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)  # drop the written pages …
        while os.read(fd, 8 << 20):  # … and read them back
            pass
    finally:
        os.close(fd)
    return path


def synthetic_frames(n_unique: int, detector_shape, max_count: int, seed: int = 0) -> np.ndarray:
    """Poisson patterns with a bright-field disc, clipped to ``max_count`` (made in small
    blocks, so that making them never takes more memory than the result)."""
    rng = np.random.default_rng(seed)
    ny, nx = detector_shape
    yy, xx = np.indices(detector_shape)
    disc = np.hypot(yy - ny / 2, xx - nx / 2) < min(ny, nx) / 5
    lam = np.where(disc, min(max_count, 40) * 0.5, 0.2)
    out = np.empty((n_unique, ny, nx), np.uint16 if max_count > 255 else np.uint8)
    for a in range(0, n_unique, 16):
        block = rng.poisson(lam, (min(16, n_unique - a), ny, nx))
        out[a:a + len(block)] = np.minimum(block, max_count)
    return out


def bench_settings(kernel: int, detector_shape) -> Settings:
    c = ((detector_shape[0] - 1) / 2, (detector_shape[1] - 1) / 2)
    return Settings(kernel=KernelSettings(kernel), geometry=DetectorGeometry(c))


def cli_settings(kernel: int) -> Settings:
    """What ``ricom reconstruct --kernel-size KERNEL`` uses: the default signals' virtual
    detectors (``vbf``, ``vadf``: ring sums in the per-pattern reduction) and the centre
    found from the data."""
    from ricom.api import make_settings

    return make_settings(kernel_size=kernel, virtual_names=["vbf", "vadf"])


def time_run(make_source: Callable, scan_shape, detector_shape, kernel: int, threads: int,
              chunk_size: int = 512, settings: Settings | None = None) -> tuple[float, int]:
    """Seconds and patterns of one full run, timed after an identical warm-up run in this process
    (``settings``: else `bench_settings`, the given centre and no virtual detectors)."""
    settings = settings if settings is not None else bench_settings(kernel, detector_shape)
    rec = Reconstruction(scan_shape, detector_shape, settings, threads=threads)
    run(make_source(), rec, chunk_size=chunk_size)
    rec = Reconstruction(scan_shape, detector_shape, settings, threads=threads)
    res = run(make_source(), rec, chunk_size=chunk_size)
    return res.seconds_processing, res.snapshot.n_patterns


def make_record(case, threads, kernel, det, seconds, n, bytes_per_pattern, memread, note="") -> BenchRecord:
    rate = n / seconds if seconds > 0 else float("nan")
    gbs = rate * bytes_per_pattern / 1e9
    return BenchRecord(case, threads, kernel, list(det), rate, gbs, gbs / memread, seconds, n, note=note)


def write_mib(path: str, scan_shape, detector_shape, depth: int, raw: bool, n_unique: int = 256) -> int:
    """A simulated `.mib` file, settled in the page cache (`settle_in_page_cache`); returns
    bytes per frame."""
    quad = detector_shape[0] > 256
    unique = synthetic_frames(n_unique, detector_shape, 2 ** depth - 1)
    n = scan_shape[0] * scan_shape[1]
    with open(path, "wb") as fh:
        for start in range(0, n, n_unique):
            count = min(n_unique, n - start)
            block = encode_frames(unique[:count], depth, raw, quad=quad, start_seq=start + 1)
            fh.write(block)
    settle_in_page_cache(path)
    return len(block) // count


def peak_rss_mb() -> float:
    """Peak resident memory of this process in MB (VmHWM: unlike ``ru_maxrss`` on Linux,
    not inherited from the parent process)."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def recording_note(recorder: FrameRecorder, seconds_run: float, seconds_plain: float | None) -> str:
    """Close ``recorder`` (and remove its file) and describe it: GB/s of patterns written (until
    the file was complete), patterns not recorded, file size, and the run's time against
    ``seconds_plain``, the same case without recording."""
    t0 = time.perf_counter()
    counts = recorder.close()
    seconds = seconds_run + time.perf_counter() - t0
    size = os.path.getsize(recorder.path)
    written = counts["n_recorded"] * int(np.prod(recorder.detector_shape)) * recorder.dtype.itemsize
    vs = f", run {seconds_run / seconds_plain:.2f}× the time without recording" if seconds_plain else ""
    os.remove(recorder.path)
    return (f"recorded {counts['n_recorded']} patterns at {written / seconds / 1e9:.2f} GB/s "
            f"({recorder.dtype}, {recorder.compression}, file {size / max(written, 1):.0%} of the patterns), "
            f"{counts['n_not_recorded']} not recorded{vs}")
