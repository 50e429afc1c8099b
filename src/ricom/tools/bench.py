"""``ricom bench``: measure the whole path on this machine, with inputs it makes itself.

Every case reports patterns/s (or events/s), GB/s of input bytes, and the ratio to a plain
memory read of the same bytes (by as many threads) measured in the same run
(`memread_gb_per_s`), so figures
from different machines compare by ratio.  Cases: in-memory engine, `.npy`, uncompressed
HDF5 and Merlin `.mib` files from the page cache (12-bit, 6-bit, raw 1-bit; 256² and 512²;
also a copy read back from the disk, ``aged``), ``fresh``: ``ricom reconstruct`` in a new
process (`ricom.tools.bench_frames`), live over
loopback from the project's Merlin simulator (also with every pattern recorded to HDF5,
``live+record``), Timepix3 events (a file; raw and ASI streams over loopback:
`ricom.tools.bench_timepix`), for several kernel
sizes and thread counts.  ``--only dask`` (never run otherwise) reconstructs a multi-GB
`.mib` in one process and on local Dask clusters of 1 and 2 worker processes
(`ricom.dask.client`), once with a worker killed in the middle, and compares the images.
"""
from __future__ import annotations

import json
import math
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable

import numpy as np

from ricom.api import reconstruct_run
from ricom.core.chunks import FrameChunk
from ricom.dask.client import connect, reconstruct_run_distributed
from ricom.engine.pipeline import run
from ricom.engine.reconstruction import Reconstruction
from ricom.io.attach import attach_recorder
from ricom.simulators.events import write_events
from ricom.simulators.specimen import SimulationParams, simulate_chunks
from ricom.sources import open_source
from ricom.sources.merlin.live import MerlinLiveSource
from ricom.tools import bench_dectris, bench_phase, bench_ssb, bench_timepix
from ricom.tools.bench_core import (
    BenchRecord,
    bench_settings,
    make_record,
    memread_gb_per_s,
    peak_rss_mb,
    recording_note,
    synthetic_frames,
    write_mib,
)
from ricom.tools.bench_frames import bench_fresh, bench_h5, bench_in_memory, bench_mib, bench_npy


def bench_live(folder: str, scan_shape, detector_shape, depth: int, raw: bool, kernel: int,
               threads: int, repeat: int = 4, record: bool = False) -> BenchRecord:
    """Frames over loopback from the project's Merlin simulator, run as a separate process;
    with ``record``, every pattern is also recorded to HDF5 (`ricom.io.recorder`)."""

    path = os.path.join(folder, f"bench_{detector_shape[0]}_{depth}{'r' if raw else ''}.mib")
    if not os.path.exists(path):
        write_mib(path, scan_shape, detector_shape, depth, raw)
    n_file = scan_shape[0] * scan_shape[1]
    cmd = [sys.executable, "-m", "ricom", "simulate", "merlin", "--from", path, "--port", "0", "--control-port",
           "0", "--once", "--start-on", "connect", "--quiet", "--repeat", str(repeat), "--preload", "--cache-mb",
           "4096", "--scan-shape",
           str(scan_shape[0]), str(scan_shape[1])]
    server = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        banner = server.stdout.readline()
        port = int(re.search(r"data port (\d+)", banner).group(1))
        src = MerlinLiveSource("127.0.0.1", port, scan_shape=scan_shape, timeout=60)
        frame_bytes = src.frame_header.frame_bytes
        rec = Reconstruction(scan_shape, detector_shape, bench_settings(kernel, detector_shape),
                             threads=threads)
        recorder = attach_recorder(rec, os.path.join(folder, "bench_record.h5"), src) if record else None
        res = run(src, rec, chunk_size=256)
        n = res.snapshot.hits.sum()
        lost = n_file * repeat - int(n)
        lat_ms = 1e3 * np.array(res.latency_s or [np.nan])
        note = ("no pattern lost" if lost == 0 else f"{lost} patterns lost") + \
            f"; latency arrival→image median {np.median(lat_ms):.1f} ms, max {lat_ms.max():.1f} ms"
        if recorder is not None:
            plain = _LIVE_SECONDS.get((tuple(scan_shape), tuple(detector_shape), depth, raw))
            note += "; " + recording_note(recorder, res.seconds_processing, plain)
    finally:
        server.kill()
        server.wait()
    # the network itself (no decoding): memread stands for the same bytes read from memory
    memread = memread_gb_per_s(np.zeros(64 << 20, np.uint8))
    name = f"live {'raw ' if raw else ''}{depth}-bit" + ("+record" if record else "")
    if not record:
        _LIVE_SECONDS[(tuple(scan_shape), tuple(detector_shape), depth, raw)] = res.seconds_processing
    result = make_record(name, threads, kernel, detector_shape, res.seconds_processing, int(n), frame_bytes, memread,
                         note)
    result.latency_ms_median, result.latency_ms_max = float(np.median(lat_ms)), float(lat_ms.max())
    return result


_LIVE_SECONDS: dict = {}
"""Seconds of the live cases without recording in this run, by (scan, detector, depth, raw)."""


def bench_live_record(folder: str, scan_shape, detector_shape, depth: int, raw: bool, kernel: int,
                      threads: int, repeat: int = 4) -> BenchRecord:
    """The live case with every pattern recorded to HDF5 (runs the plain live case first if this
    run has not, to compare)."""
    if (tuple(scan_shape), tuple(detector_shape), depth, raw) not in _LIVE_SECONDS:
        bench_live(folder, scan_shape, detector_shape, depth, raw, kernel, threads, repeat)
    return bench_live(folder, scan_shape, detector_shape, depth, raw, kernel, threads, repeat, record=True)


def bench_events(folder: str, scan_shape, kernel: int, threads: int, dose: float = 200.0) -> BenchRecord:
    """A page-cached `.tpx3` file: decode, scan synchronisation and reconstruction."""
    path = os.path.join(folder, f"bench_events_{scan_shape[0]}.tpx3")
    if not os.path.exists(path):
        params = SimulationParams(scan_shape=scan_shape, detector_shape=(128, 128), dose_e_per_probe=dose)
        write_events(path, simulate_chunks(params, rows_per_chunk=8), scan_shape, (128, 128))
    size = os.path.getsize(path)
    mm = np.memmap(path, np.uint8, "r")
    memread = memread_gb_per_s(mm)
    del mm
    best = None
    for _ in range(2):  # the first run also warms the compiled code
        src = open_source(path)
        rec = Reconstruction(scan_shape, src.detector_shape, bench_settings(kernel, src.detector_shape),
                             threads=threads)
        res = run(src, rec, chunk_size=1 << 20)
        if best is None or res.seconds_processing < best[0]:
            best = (res.seconds_processing, rec.n_events, res.snapshot.n_patterns)
    secs, n_events, n_pos = best
    rec_ = BenchRecord("events tpx3", threads, kernel, [512, 512], n_pos / secs, size / secs / 1e9,
                       size / secs / 1e9 / memread, secs, n_pos, events_per_s=n_events / secs,
                       note=f"{n_events / n_pos:.0f} events per position")
    return rec_


def bench_large_scan(scan_shape=(1024, 1024), detector_shape=(256, 256), kernel: int = 61,
                     threads: int = 1, source: str = "simulator") -> BenchRecord:
    """Runs `large_scan` in a fresh process, so that its peak memory is its own."""
    code = ("import json, sys; from ricom.tools.bench import large_scan; "
            f"r = large_scan({tuple(scan_shape)}, {tuple(detector_shape)}, {kernel}, {threads}, {source!r}); "
            "print(json.dumps(r.as_dict()))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return BenchRecord(**json.loads(out.stdout.strip().splitlines()[-1]))


def large_scan(scan_shape=(1024, 1024), detector_shape=(256, 256), kernel: int = 61,
               threads: int = 1, source: str = "simulator") -> BenchRecord:
    """A million-position scan streamed through the engine; reports the peak resident memory.

    ``source="simulator"`` serves 12-bit frames from the project's Merlin simulator over
    loopback (the full path); ``"memory"`` repeats a small set of frames in memory (the
    engine alone, much faster).
    """

    n = scan_shape[0] * scan_shape[1]
    unique = synthetic_frames(256, detector_shape, 4095)
    rec = Reconstruction(scan_shape, detector_shape, bench_settings(kernel, detector_shape), threads=threads)
    server = None
    try:
        if source == "simulator":
            path = os.path.join(tempfile.gettempdir(), f"ricom_bench_unique_{detector_shape[0]}.mib")
            write_mib(path, (16, 16), detector_shape, 12, False)
            server = subprocess.Popen(
                [sys.executable, "-m", "ricom", "simulate", "merlin", "--from", path, "--port", "0",
                 "--control-port", "0", "--once", "--start-on", "connect", "--quiet", "--repeat", str(n // 256),
                 "--scan-shape", str(scan_shape[0]), str(scan_shape[1])],
                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
            port = int(re.search(r"data port (\d+)", server.stdout.readline()).group(1))
            src = MerlinLiveSource("127.0.0.1", port, scan_shape=scan_shape, timeout=120)
        else:
            src = _Repeating(unique, scan_shape)
        res = run(src, rec, chunk_size=512)
    finally:
        if server is not None:
            server.kill()
            server.wait()
    peak_mb = peak_rss_mb()
    memread = memread_gb_per_s(unique)
    rec_ = make_record(f"{scan_shape[0]}×{scan_shape[1]} scan ({source})", threads, kernel, detector_shape,
                   res.seconds_processing, res.snapshot.n_patterns, unique[0].nbytes, memread,
                   note=f"peak RSS {peak_mb:.0f} MB")
    return rec_


class _Repeating:
    """A scan whose patterns cycle through a few frames held in memory (engine-only cases)."""

    kind = "frames"

    def __init__(self, frames: np.ndarray, scan_shape) -> None:
        self.frames, self.scan_shape = frames, tuple(scan_shape)
        self.detector_shape = frames.shape[1:]
        self.n_frames = scan_shape[0] * scan_shape[1]

    def chunks(self, chunk_size: int = 256):
        m = self.frames.shape[0]
        step = max(1, min(chunk_size, m))
        for start in range(0, self.n_frames, step):
            k = min(step, self.n_frames - start)
            yield FrameChunk(self.frames[:k], np.arange(start, start + k, dtype=np.int64))

    def close(self) -> None:
        pass


_DASK_TIMES: dict = {}
"""Single-process seconds and snapshot, and seconds per worker count, of each dask bench file."""


def _warm_worker(path: str, scan_shape) -> None:
    """Load the compiled kernels in this process (run on every worker before timing)."""
    reconstruct_run(path, source_options={"scan_shape": scan_shape}, kernel_size=3)


def _kill_one_busy_worker(client) -> Callable[[int], None]:
    """A progress callback that SIGKILLs a worker holding a range, once, after the first range is done."""
    pids, killed = client.run(os.getpid), []

    def kill(_units: int) -> None:
        busy = [addr for addr, keys in client.processing().items() if keys and addr in pids]
        if busy and not killed:
            os.kill(pids[busy[0]], getattr(signal, "SIGKILL", signal.SIGTERM))
            killed.append(busy[0])
    return kill


def bench_dask(folder: str, scan_shape, detector_shape, depth: int, kernel: int, workers: int,
               kill: bool = False, repeat: int = 3) -> BenchRecord:
    """A simulated `.mib` on a local Dask cluster of ``workers`` processes (0: the single-process path).

    Timed from the call to the images (reading the file from the page cache, the client's
    first chunk, all ranges, assembling, one rebuild), best of ``repeat`` runs, after the
    compiled kernels are loaded in every process; the cluster's start-up is reported
    separately.  With ``kill`` one run, in which a busy worker is killed.  The note
    compares with the single-process time and images of the same file.
    """
    sy, sx = scan_shape
    path = os.path.join(folder, f"bench_dask_{sy}x{sx}_{detector_shape[0]}_{depth}.mib")
    warm = path[:-4] + "_warm.mib"
    if not os.path.exists(path):
        write_mib(path, scan_shape, detector_shape, depth, False)
        write_mib(warm, (8, 8), detector_shape, depth, False)
    mm = np.memmap(path, np.uint8, "r")
    memread = memread_gb_per_s(mm)
    frame_bytes = mm.size // (sy * sx)
    del mm
    args = dict(source_options={"scan_shape": tuple(scan_shape)}, kernel_size=kernel)
    if path not in _DASK_TIMES:
        _warm_worker(warm, (8, 8))
        best = math.inf
        for _ in range(repeat):
            t = time.perf_counter()
            res, _, _ = reconstruct_run(path, **args)
            best = min(best, time.perf_counter() - t)
        _DASK_TIMES[path] = (best, res.snapshot)
    single, ref = _DASK_TIMES[path]
    if workers == 0:
        return make_record("dask: single process", 1, kernel, detector_shape, single, sy * sx, frame_bytes, memread,
                       note="the baseline of the dask cases")
    t = time.perf_counter()
    with connect(f"local:{workers}") as client:
        startup = time.perf_counter() - t
        client.run(_warm_worker, warm, (8, 8))
        secs = math.inf
        for _ in range(1 if kill else repeat):
            progress = _kill_one_busy_worker(client) if kill else False
            t = time.perf_counter()
            res, _, _ = reconstruct_run_distributed(path, client=client, progress=progress, **args)
            secs = min(secs, time.perf_counter() - t)
    snap = res.snapshot
    diff = max(float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-300))
               for a, b in ((snap.ricom, ref.ricom), (snap.virtual["vadf"], ref.virtual["vadf"])))
    complete = snap.n_patterns == ref.n_patterns and np.array_equal(snap.hits, ref.hits)
    note = (f"{single / secs:.2f}× the single-process speed ({single:.2f} s)"
            + (f", {_DASK_TIMES[(path, 1)] / secs:.2f}× 1 worker" if (path, 1) in _DASK_TIMES and workers > 1 else "")
            + f"; cluster start {startup:.1f} s; max |Δ|/max {diff:.1e}; {'complete' if complete else 'INCOMPLETE'}"
            + ("; a busy worker was killed after the first range" if kill else ""))
    if not kill:
        _DASK_TIMES[(path, workers)] = secs
    case = f"dask {workers} worker{'s' if workers > 1 else ''}" + (", 1 killed" if kill else "")
    return make_record(case, workers, kernel, detector_shape, secs, sy * sx, frame_bytes, memread, note=note)


def plan(quick: bool) -> list[tuple[str, dict]]:
    """The cases to run: (kind, arguments)."""
    det = (256, 256)
    if quick:
        scan = (128, 64)
        dask = dict(scan_shape=(64, 64), detector_shape=det, depth=12, kernel=61)
        return [*(("dask", {**dask, "workers": w}) for w in (0, 1, 2)), ("dask", {**dask, "workers": 2, "kill": True}),
                *bench_dectris.plan(quick), *bench_timepix.plan(quick), *bench_phase.plan(quick),
                ("memory", dict(scan_shape=scan, detector_shape=det, kernel=61, threads=1)),
                ("memory", dict(scan_shape=scan, detector_shape=det, kernel=201, threads=1)),
                ("mib", dict(scan_shape=scan, detector_shape=det, depth=12, raw=False, kernel=61, threads=1)),
                ("mib", dict(scan_shape=scan, detector_shape=det, depth=1, raw=True, kernel=61, threads=1)),
                ("live", dict(scan_shape=scan, detector_shape=det, depth=12, raw=False, kernel=61, threads=1)),
                ("live+record", dict(scan_shape=scan, detector_shape=det, depth=12, raw=False, kernel=61, threads=1)),
                ("events", dict(scan_shape=(64, 64), kernel=21, threads=1))]
    scan = (128, 128)
    cases = []
    for k in (21, 61, 101, 201):
        cases.append(("memory", dict(scan_shape=scan, detector_shape=det, kernel=k, threads=1)))
    for t in (1, 2):
        cases.append(("npy", dict(scan_shape=scan, detector_shape=det, kernel=61, threads=t)))
        cases.append(("npy", dict(scan_shape=scan, detector_shape=det, kernel=61, threads=t, aged=True)))
        cases.append(("h5", dict(scan_shape=scan, detector_shape=det, kernel=61, threads=t)))
        for depth, raw in ((12, False), (6, False), (1, True)):
            cases.append(("mib", dict(scan_shape=scan, detector_shape=det, depth=depth, raw=raw, kernel=61,
                                      threads=t)))
        cases.append(("mib", dict(scan_shape=scan, detector_shape=det, depth=12, raw=False, kernel=61, threads=t,
                                  aged=True)))
        cases.append(("mib", dict(scan_shape=scan, detector_shape=det, depth=12, raw=False, kernel=61, threads=t,
                                  aged=True, cli=True)))
        cases.append(("fresh", dict(scan_shape=scan, detector_shape=det, depth=12, kernel=61, threads=t)))
    cases.append(("mib", dict(scan_shape=(64, 64), detector_shape=(512, 512), depth=12, raw=False, kernel=61,
                              threads=1)))
    for depth, raw in ((12, False), (6, False), (1, True)):
        cases.append(("live", dict(scan_shape=scan, detector_shape=det, depth=depth, raw=raw, kernel=61, threads=1)))
    cases.append(("live+record", dict(scan_shape=scan, detector_shape=det, depth=12, raw=False, kernel=61, threads=1)))
    cases.append(("events", dict(scan_shape=(256, 256), kernel=21, threads=1)))
    cases.append(("largescan", dict(source="memory")))
    cases += bench_dectris.plan(quick)
    cases += bench_timepix.plan(quick) + bench_phase.plan(quick)
    dask = dict(scan_shape=(128, 128), detector_shape=det, depth=12, kernel=61)  # a 2.2 GB file
    cases += [("dask", {**dask, "workers": w}) for w in (0, 1, 2)] + [("dask", {**dask, "workers": 2, "kill": True})]
    return cases


RUNNERS = {"memory": bench_in_memory, "mib": bench_mib, "npy": bench_npy, "h5": bench_h5, "fresh": bench_fresh,
           "live": bench_live,
           "live+record": bench_live_record,
           "events": bench_events, "largescan": bench_large_scan, "dask": bench_dask,
           **bench_dectris.RUNNERS, **bench_timepix.RUNNERS, **bench_phase.RUNNERS}
NEEDS_FOLDER = {"mib", "npy", "h5", "fresh", "live", "live+record", "events", "dask", *bench_dectris.RUNNERS,
                *bench_timepix.RUNNERS}
ONLY_WHEN_ASKED = {"dask"}
"""Kinds that run only when named with ``--only`` (they start clusters of worker processes)."""
plan = bench_ssb.joined(plan, RUNNERS, NEEDS_FOLDER)  # the SSB cases: ricom.tools.bench_ssb


def selected_plan(quick: bool = False, kinds: set[str] | None = None) -> list[tuple[str, dict]]:
    """The cases `run_bench` runs: the plan, without the kinds not asked for (``dask`` only when asked)."""
    return [(kind, args) for kind, args in plan(quick)
            if not ((kinds and kind not in kinds) or (kind in ONLY_WHEN_ASKED and not (kinds and kind in kinds)))]


def run_bench(quick: bool = False, folder: str | None = None, report: Callable | None = None,
              kinds: set[str] | None = None, starting: Callable[[str], None] | None = None) -> list[BenchRecord]:
    """Run the benchmark plan; files are made in ``folder`` (a temporary one by default).

    ``report(record)`` is called after each case, ``starting(kind)`` before it (progress)."""
    records = []
    with tempfile.TemporaryDirectory(prefix="ricom-bench-", dir=folder) as tmp:
        for kind, args in selected_plan(quick, kinds):
            if starting:
                starting(kind)
            fn = RUNNERS[kind]
            try:
                rec = fn(tmp, **args) if kind in NEEDS_FOLDER else fn(**args)
            except ImportError as exc:
                rec = BenchRecord(kind, args.get("threads", 1), args.get("kernel", 0),
                                  list(args.get("detector_shape", ())), None, 0.0, 0.0, 0.0, 0,
                                  note=f"skipped: {exc}")
            records.append(rec)
            if report:
                report(rec)
    return records
