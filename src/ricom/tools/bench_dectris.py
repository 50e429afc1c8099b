"""The DECTRIS cases of ``ricom bench``: live streams and files, against plain decompression.

The physical limit of this path is decompressing the detector's bitshuffle-LZ4 blobs, so
every case is measured against the rate of plain decompression of the *same* blobs
(``dectris-compression``, one and two threads) in the same run: ``memread_ratio`` here is
end-to-end frames/s ÷ plain one-thread decompression frames/s.  Cases: low-dose 192×192
uint16 frames (ARINA full frame) and 96×96 binned frames, streamed by the project's
DECTRIS simulator (a separate process on this machine, so it shares the cores) over
loopback in stream V1 and V2 and read from a NeXus master + data file pair.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from ricom.engine.pipeline import run
from ricom.engine.reconstruction import Reconstruction
from ricom.tools.bench_core import BenchRecord, bench_settings, make_record

ARINA = (192, 192)
BINNED = (96, 96)


def low_dose_frames(n: int, detector_shape, seed: int = 0) -> np.ndarray:
    """Poisson frames of a bright-field disc (radius 1/6 of the detector; 3 e/px on 192², as many
    electrons per binned pixel on smaller detectors) on a 0.02 e/px background: about 10⁴
    electrons per frame."""
    rng = np.random.default_rng(seed)
    ny, nx = detector_shape
    yy, xx = np.mgrid[:ny, :nx]
    frames = np.empty((n, ny, nx), np.uint16)
    scale = (ARINA[0] / ny) ** 2
    for i in range(n):
        cy, cx = ny / 2 + 1.5 * np.sin(i / 7), nx / 2 + 1.5 * np.cos(i / 5)
        disc = (yy - cy) ** 2 + (xx - cx) ** 2 < (ny / 6) ** 2
        frames[i] = rng.poisson(np.where(disc, 3.0 * scale, 0.02 * scale))
    return frames


def blobs_of(frames: np.ndarray) -> list[bytes]:
    """bitshuffle-LZ4 blobs in the HDF5 framing, as the detector sends them."""
    from ricom.simulators.dectris.encode import bslz4

    return [bslz4(f) for f in frames]


def plain_decompression_fps(blobs: list[bytes], threads: int, repeat: int = 3) -> float:
    """Best-of-``repeat`` frames/s of decompressing ``blobs`` (nothing else) on ``threads`` threads."""
    from dectris.compression import decompress

    def work(part):
        for b in part:
            decompress(b, "bslz4", elem_size=2)

    parts = [blobs[i::threads] for i in range(threads)]
    best = float("inf")
    with ThreadPoolExecutor(threads) as pool:
        for _ in range(repeat):
            t = time.perf_counter()
            list(pool.map(work, parts))
            best = min(best, time.perf_counter() - t)
    return len(blobs) / best


def _plain(frames) -> tuple[float, float, int]:
    blobs = blobs_of(frames)
    return plain_decompression_fps(blobs, 1), plain_decompression_fps(blobs, 2), int(np.mean([len(b) for b in blobs]))


def _note(rate: float, plain1: float, plain2: float, extra: str) -> str:
    return (f"plain decompression {plain1:,.0f}/s (1 thread), {plain2:,.0f}/s (2 threads); "
            f"end to end {rate / plain1:.2f}× the 1-thread rate; {extra}")


def bench_dectris_live(folder: str, detector_shape, stream: str, threads: int, n_frames: int = 100_000,
                       kernel: int = 21, rate_hz: float = 0.0) -> BenchRecord:
    """Frames from ``ricom simulate dectris`` (a separate process) over loopback, armed by ricom;
    ``rate_hz`` paces the detector (0: as fast as it can send), for latency at a given rate."""
    from ricom.live.dectris import ArmSettings
    from ricom.sources.dectris.connection import StreamConnection
    from ricom.sources.dectris.live import DectrisLiveSource
    from ricom.sources.dectris.rest import SimplonClient
    from ricom.sources.dectris.stream_v1 import V1Protocol
    from ricom.sources.dectris.stream_v2 import V2Protocol

    frames = low_dose_frames(1024, detector_shape)
    path = os.path.join(folder, f"dectris_{detector_shape[0]}.npy")
    np.save(path, frames)
    plain1, plain2, blob_bytes = _plain(frames)
    sx = 500
    scan = (max(1, n_frames // sx), sx)
    cmd = [sys.executable, "-m", "ricom", "simulate", "dectris", "--from", path, "--api-port", "0", "--stream-port",
           "0", "--stream", stream, "--quiet", "--scan-shape", "32", "32", "--rate", str(rate_hz)]
    server = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        banner = server.stdout.readline()
        api_port = int(re.search(r"http://[^:]+:(\d+)/", banner).group(1))
        stream_port = int(re.search(r"tcp://[^:]+:(\d+)", banner).group(1))
        client = SimplonClient("127.0.0.1", api_port)
        ArmSettings(scan).apply(client, stream)  # ntrigger = the scan's frames (the file's repeat)
        conn = StreamConnection("127.0.0.1", stream_port)
        rec = Reconstruction(scan, detector_shape, bench_settings(kernel, detector_shape), threads=threads)
        series = client.arm()
        src = DectrisLiveSource(conn, V1Protocol() if stream == "v1" else V2Protocol(), series=series,
                                scan_shape=scan, header_timeout=30, timeout=30)
        res = run(src, rec, chunk_size=512)
        conn.close()
    finally:
        server.kill()
        server.wait()
    n = int(res.snapshot.n_patterns)
    lat_ms = 1e3 * np.array(res.latency_s or [np.nan])
    lost = scan[0] * scan[1] - n
    extra = (("no frame lost" if lost == 0 else f"{lost} frames lost") +
             f"; latency arrival→image median {np.median(lat_ms):.1f} ms, max {lat_ms.max():.1f} ms; "
             f"{blob_bytes} B per frame compressed; the simulator shares the 2 cores")
    rate = n / res.seconds_processing
    paced = f" at {rate_hz / 1e3:g} kHz" if rate_hz else ""
    rec_ = make_record(f"dectris live {stream} bslz4{paced}", threads, kernel, detector_shape,
                       res.seconds_processing, n, blob_bytes, plain1 * blob_bytes / 1e9,
                       _note(rate, plain1, plain2, extra))
    rec_.latency_ms_median, rec_.latency_ms_max = float(np.median(lat_ms)), float(lat_ms.max())
    return rec_


def bench_dectris_file(folder: str, detector_shape, threads: int, n_frames: int = 65_536,
                       kernel: int = 21) -> BenchRecord:
    """A NeXus master + bitshuffle-LZ4 data file (one frame per HDF5 chunk) from the page cache."""
    import h5py
    import hdf5plugin

    from ricom.sources import open_source

    frames = low_dose_frames(1024, detector_shape)
    plain1, plain2, blob_bytes = _plain(frames)
    side = int(np.sqrt(n_frames))
    n = side * side
    stem = os.path.join(folder, f"dectris_{detector_shape[0]}")
    with h5py.File(stem + "_data_000001.h5", "w") as f:
        ds = f.create_dataset("entry/data/data", (n, *detector_shape), np.uint16, chunks=(1, *detector_shape),
                              **hdf5plugin.Bitshuffle(cname="lz4"))
        for i in range(0, n, 1024):
            ds[i:i + 1024] = frames[:min(1024, n - i)]
    with h5py.File(stem + "_master.h5", "w") as f:
        f["entry/data/data_000001"] = h5py.ExternalLink(os.path.basename(stem) + "_data_000001.h5", "entry/data/data")
        spec = f.create_group("entry/instrument/detector/detectorSpecific")
        spec["ntrigger"], spec["nimages"] = n, 1
    scan = (side, side)
    rec = Reconstruction(scan, detector_shape, bench_settings(kernel, detector_shape), threads=threads)
    run(open_source(stem + "_master.h5"), rec, chunk_size=512)  # warm the page cache and the compiled code
    rec = Reconstruction(scan, detector_shape, bench_settings(kernel, detector_shape), threads=threads)
    res = run(open_source(stem + "_master.h5"), rec, chunk_size=512)
    rate = n / res.seconds_processing
    return make_record("dectris file bslz4", threads, kernel, detector_shape, res.seconds_processing, n, blob_bytes,
                       plain1 * blob_bytes / 1e9, _note(rate, plain1, plain2, "HDF5 filter 32008 via hdf5plugin"))


def plan(quick: bool) -> list[tuple[str, dict]]:
    """The DECTRIS cases (kind, arguments)."""
    if quick:
        return [("dectris-live", dict(detector_shape=BINNED, stream="v2", threads=2, n_frames=20_000)),
                ("dectris-file", dict(detector_shape=ARINA, threads=2, n_frames=4096))]
    cases = []
    for threads in (1, 2):
        cases.append(("dectris-live", dict(detector_shape=ARINA, stream="v1", threads=threads, n_frames=50_000)))
        cases.append(("dectris-file", dict(detector_shape=ARINA, threads=threads)))
    cases.append(("dectris-live", dict(detector_shape=ARINA, stream="v2", threads=2, n_frames=50_000)))
    for stream in ("v1", "v2"):
        cases.append(("dectris-live", dict(detector_shape=BINNED, stream=stream, threads=2, n_frames=200_000)))
    cases.append(("dectris-live", dict(detector_shape=BINNED, stream="v2", threads=2, n_frames=100_000,
                                       rate_hz=20_000.0)))  # latency at a rate the receiver sustains
    return cases


RUNNERS = {"dectris-live": bench_dectris_live, "dectris-file": bench_dectris_file}


__all__ = ["RUNNERS", "bench_dectris_file", "bench_dectris_live", "low_dose_frames", "plain_decompression_fps",
           "plan"]
