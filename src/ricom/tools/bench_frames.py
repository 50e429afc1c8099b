"""Frame cases of ``ricom bench``: patterns in memory, `.npy`, uncompressed HDF5 and Merlin
`.mib` files from the page cache (in this process), and ``fresh``: ``ricom reconstruct`` of
a `.mib` in a new process, as a user runs it.

Files are read from the page cache: every input is written, synced and read back before it
is timed (`settle_in_page_cache`: no writeback competes with the run, and the pages sit in
the folios a read from the disk makes, as a user's file does); ``aged`` cases read a copy
made the same way (`age_in_page_cache`), a check that the written files stand for it.
Cases with more than one thread give the one-thread memory read beside their own
(`memread_pair`).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import numpy as np

from ricom.sources.arrays import ArraySource, open_npy
from ricom.sources.hdf5 import open as open_hdf5
from ricom.sources.merlin.file import MerlinSource
from ricom.tools.bench_core import (
    BenchRecord,
    age_in_page_cache,
    cli_settings,
    make_record,
    memread_gb_per_s,
    memread_pair,
    settle_in_page_cache,
    synthetic_frames,
    time_run,
    write_mib,
)


def bench_in_memory(scan_shape, detector_shape, kernel: int, threads: int, n_unique: int = 1024) -> BenchRecord:
    """The engine on frames already in memory (uint16)."""
    sy, sx = scan_shape
    unique = synthetic_frames(n_unique, detector_shape, 4095)
    frames = np.resize(unique, (sy * sx, *detector_shape))
    memread, note = memread_pair(frames, threads)
    secs, n = time_run(lambda: ArraySource(frames, scan_shape=scan_shape), scan_shape, detector_shape,
                        kernel, threads)
    return make_record("memory uint16", threads, kernel, detector_shape, secs, n, frames[0].nbytes, memread, note)


def mib_path(folder: str, scan_shape, detector_shape, depth: int, raw: bool, aged: bool = False) -> str:
    """The bench's `.mib` of this kind (written once; ``aged``: its copy from the disk)."""
    path = os.path.join(folder, f"bench_{detector_shape[0]}_{depth}{'r' if raw else ''}.mib")
    if not os.path.exists(path):
        write_mib(path, scan_shape, detector_shape, depth, raw)
    return age_in_page_cache(path, path[:-4] + "_aged.mib") if aged else path


def bench_mib(folder: str, scan_shape, detector_shape, depth: int, raw: bool, kernel: int,
              threads: int, aged: bool = False, cli: bool = False) -> BenchRecord:
    """A Merlin file from the page cache, through `MerlinSource`; ``cli``: with the settings of
    ``ricom reconstruct`` (`cli_settings`: the default virtual detectors, the centre from the
    data), the in-process counterpart of the ``fresh`` case."""
    path = mib_path(folder, scan_shape, detector_shape, depth, raw, aged)
    mm = np.memmap(path, np.uint8, "r")
    memread, note = memread_pair(mm, threads)
    frame_bytes = mm.size // (scan_shape[0] * scan_shape[1])
    del mm
    secs, n = time_run(lambda: MerlinSource(path, scan_shape=scan_shape), scan_shape, detector_shape,
                        kernel, threads, settings=cli_settings(kernel) if cli else None)
    name = f"mib {'raw ' if raw else ''}{depth}-bit" + (" aged" if aged else "") + (" cli settings" if cli else "")
    return make_record(name, threads, kernel, detector_shape, secs, n, frame_bytes, memread, note)


def write_npy_scan(path: str, scan_shape, detector_shape) -> None:
    """A 12-bit uint16 `.npy` scan of 256 synthetic patterns repeated, written in blocks (by
    ``write``, not through a mapping) and settled in the page cache like the `.mib`."""
    unique = synthetic_frames(256, detector_shape, 4095)
    n = scan_shape[0] * scan_shape[1]
    header = {"descr": np.lib.format.dtype_to_descr(np.dtype(np.uint16)), "fortran_order": False,
              "shape": (*scan_shape, *detector_shape)}
    with open(path, "wb") as fh:
        np.lib.format.write_array_header_1_0(fh, header)
        for i in range(0, n, 256):
            fh.write(unique[: n - i].tobytes())
    settle_in_page_cache(path)


def npy_path(folder: str, scan_shape, detector_shape, aged: bool = False) -> str:
    """The bench's 12-bit uint16 `.npy` (the same patterns as its 12-bit `.mib`)."""
    path = os.path.join(folder, f"bench_{detector_shape[0]}.npy")
    if not os.path.exists(path):
        write_npy_scan(path, scan_shape, detector_shape)
    return age_in_page_cache(path, path[:-4] + "_aged.npy") if aged else path


def bench_npy(folder: str, scan_shape, detector_shape, kernel: int, threads: int, aged: bool = False) -> BenchRecord:
    """A `.npy` file from the page cache (memory-mapped)."""
    path = npy_path(folder, scan_shape, detector_shape, aged)
    mm = np.load(path, mmap_mode="r")
    memread, note = memread_pair(mm, threads)
    bytes_per = mm[0, 0].nbytes
    del mm
    secs, n = time_run(lambda: open_npy(path), scan_shape, detector_shape, kernel, threads)
    return make_record("npy uint16" + (" aged" if aged else ""), threads, kernel, detector_shape, secs, n,
                       bytes_per, memread, note)


def bench_h5(folder: str, scan_shape, detector_shape, kernel: int, threads: int) -> BenchRecord:
    """An uncompressed HDF5 dataset of the `.npy` case's patterns, from the page cache."""
    import h5py

    path = os.path.join(folder, f"bench_{detector_shape[0]}.h5")
    if not os.path.exists(path):
        data = np.load(npy_path(folder, scan_shape, detector_shape), mmap_mode="r")
        with h5py.File(path, "w") as f:
            ds = f.create_dataset("data", data.shape, data.dtype)
            for r in range(data.shape[0]):
                ds[r] = data[r]
        settle_in_page_cache(path)
    mm = np.memmap(path, np.uint8, "r")
    memread, note = memread_pair(mm, threads)
    bytes_per = int(np.prod(detector_shape)) * 2
    del mm
    secs, n = time_run(lambda: open_hdf5(path + ":/data"), scan_shape, detector_shape, kernel, threads)
    return make_record("hdf5 uint16", threads, kernel, detector_shape, secs, n, bytes_per, memread, note)


def run_cli(path: str, out: str, scan_shape, kernel: int, threads: int) -> tuple[float, int, float]:
    """``ricom reconstruct`` in a new process: its ``seconds_processing``, patterns and wall time."""
    cmd = [sys.executable, "-m", "ricom", "reconstruct", path, "-o", out, "--no-progress", "--kernel-size",
           str(kernel), "--threads", str(threads), "--scan-shape", str(scan_shape[0]), str(scan_shape[1])]
    t = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True)
    wall = time.perf_counter() - t
    code = ("import h5py, json, sys; f = h5py.File(sys.argv[1]); "
            "print(json.dumps([float(f['seconds_processing'][()]), int(f['n_patterns'][()])]))")
    secs, n = json.loads(subprocess.run([sys.executable, "-c", code, out], check=True, capture_output=True,
                                        text=True).stdout)
    os.remove(out)
    return secs, n, wall


def bench_fresh(folder: str, scan_shape, detector_shape, depth: int, kernel: int, threads: int,
                repeat: int = 3) -> BenchRecord:
    """``ricom reconstruct`` of the aged 12-bit `.mib` in a fresh process (default signals,
    so the virtual detectors too), best ``seconds_processing`` of ``repeat`` runs after one
    that fills numba's cache; the memory read is this process's of the same file."""
    path = mib_path(folder, scan_shape, detector_shape, depth, False, aged=True)
    out = os.path.join(folder, "bench_fresh.h5")
    run_cli(path, out, scan_shape, kernel, threads)
    best = min((run_cli(path, out, scan_shape, kernel, threads) for _ in range(repeat)), key=lambda r: r[0])
    secs, n, wall = best
    mm = np.memmap(path, np.uint8, "r")
    memread, note = memread_pair(mm, threads)
    frame_bytes = mm.size // n
    del mm
    note = (f"process {wall:.2f} s, {wall - secs:.2f} s of it outside seconds_processing (start-up, output)"
            + (f"; {note}" if note else ""))
    return make_record(f"fresh mib {depth}-bit", threads, kernel, detector_shape, secs, n, frame_bytes, memread,
                       note)


__all__ = ["bench_fresh", "bench_h5", "bench_in_memory", "bench_mib", "bench_npy", "memread_gb_per_s"]
