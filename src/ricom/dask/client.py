"""Scale-out with Dask: reconstruct one shared file on many worker processes or machines.

riCOM is linear in the COM field, so the heavy part — reading patterns and reducing each
to its moments (total counts, Σ I·x, Σ I·y, virtual-detector ring sums) — splits over
workers, and the kernel step is cheap on the assembled moment maps.

How a run goes (`reconstruct_run_distributed`):

1. The client opens the input (headers only) and processes its **first chunk** itself,
   exactly as the single-process path does, which fixes the pattern centre and the
   bright-field radius behind the virtual detectors (event lists: the first
   `ricom.engine.event_input.MIN_EVENTS_FOR_LUT` events).
2. The rest is cut into unit ranges (frames in acquisition order; positions or rows of
   an event list, see `ricom.sources.base.Source.read_range`).  Each Dask task gets the
   file name, the source options, the resolved detector look-up parameters and its range,
   reads the range **itself** from the shared file and returns only per-position moments,
   hit counts and counters (`RangeMoments`) — no pattern passes through the scheduler.
   Workers reduce patterns with the engine's own `ricom.engine.reduction.ChunkReduction`
   and the client's detector look-ups (`ricom.dask.tasks`).
3. The client merges the partial moments (`ricom.engine.moments.Moments.merge`) into one
   and adds them to its `Reconstruction` in one step (`merge_moments`: one scatter,
   by FFT for whole rows), settles the centre and gives the image; other kernels only
   rebuild it from the merged moments (`update_settings`, `snapshot`).

A killed worker's ranges are run again by Dask (``retries``); results equal the
single-process reconstruction to float rounding (exactly, for integer patterns, in the
moments).  Needs ``dask[distributed]`` (``pip install 'ricom[distributed]'``).
"""
from __future__ import annotations

import contextlib
import math
import os
import re
import time
import warnings

import numpy as np

from ricom.api import PartialResult, open_with_settings, reference_center
from ricom.calibration.calibrate import apply_descan
from ricom.core.errors import InputError, Param, RicomError, SettingsError
from ricom.core.params import KernelSettings, Settings
from ricom.dask.tasks import RangeJob, RangeMoments, feed, range_moments
from ricom.engine.moments import Moments
from ricom.engine.pipeline import RunResult, scan_shortfall, visited_positions
from ricom.engine.reconstruction import Reconstruction
from ricom.engine.snapshot import Snapshot
from ricom.sources import Source

RANGES_PER_WORKER = 4
"""Default: this many ranges per worker (load balance, and little lost when a worker dies)."""
MAX_CHUNKS_PER_RANGE = 64
"""Default upper bound of a range, in chunks."""


def parse_cluster(spec: str) -> int:
    """Worker processes of ``"local:N"`` (N ≥ 1), or a one-line `SettingsError`."""
    m = re.fullmatch(r"local:(\d+)", str(spec).strip())
    if not m or int(m.group(1)) < 1:
        raise SettingsError(f"a local cluster is 'local:N' with N ≥ 1 worker processes, got {spec!r}")
    return int(m.group(1))


@contextlib.contextmanager
def connect(client):
    """A `dask.distributed.Client` for ``client``, closed afterwards if opened here.

    Parameters
    ----------
    client : Client or str
        An existing client (left open), ``"local:N"`` (a `LocalCluster` of N single-threaded
        worker processes on loopback, shut down afterwards) or a scheduler address
        ``"tcp://HOST:PORT"`` (connected, and disconnected afterwards).
    """
    try:
        from distributed import Client, LocalCluster
    except ImportError:
        raise SettingsError("running on a Dask cluster (", Param("client"),
                            ") needs Dask: pip install 'ricom[distributed]'") from None
    if isinstance(client, Client):
        yield client
        return
    spec = str(client)
    if spec.startswith("local:"):
        n = parse_cluster(spec)
        try:
            cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True, host="127.0.0.1",
                                   dashboard_address=None, silence_logs=50)
        except RuntimeError as exc:  # typically a script without `if __name__ == "__main__":`
            raise SettingsError(f"could not start {n} local Dask workers ({exc}); in a Python script, start the "
                                f"cluster under `if __name__ == '__main__':`") from None
        with cluster, Client(cluster) as c:
            yield c
        return
    if "://" not in spec:
        raise SettingsError(f"a Dask client is a Client, 'local:N' or a scheduler address tcp://HOST:PORT, "
                            f"got {spec!r}")
    try:
        c = Client(spec, timeout="20s")
    except OSError as exc:
        raise InputError(f"cannot reach the Dask scheduler at {spec} ({exc}); start it with `dask scheduler`") from None
    with c:
        yield c


def plan_ranges(start: int, stop: int, chunk_size: int, n_workers: int, range_size: int | None = None
                ) -> list[tuple[int, int]]:
    """Cut units ``start … stop-1`` into ranges for the workers.

    By default about `RANGES_PER_WORKER` ranges per worker, a whole number of chunks each,
    at most `MAX_CHUNKS_PER_RANGE` chunks.

    Examples
    --------
    >>> plan_ranges(0, 4096, 512, 1)
    [(0, 1024), (1024, 2048), (2048, 3072), (3072, 4096)]
    """
    n = stop - start
    if n <= 0:
        return []
    if range_size is None:
        per = math.ceil(n / (RANGES_PER_WORKER * max(1, n_workers)))
        range_size = min(math.ceil(per / chunk_size), MAX_CHUNKS_PER_RANGE) * chunk_size
    size = max(1, int(range_size))
    return [(a, min(stop, a + size)) for a in range(start, stop, size)]


def _shared_spec(data) -> str:
    """The input as a name every worker can open (absolute path, ``:dataset`` kept)."""
    if isinstance(data, (np.ndarray, Source)):
        raise SettingsError("a distributed reconstruction reads the input on every worker: give a file name "
                            "(.mib, .npy, file.h5:/dataset, …), not an array or an opened source")
    spec = os.fspath(data)
    if os.path.exists(spec):
        return os.path.abspath(spec)
    for m in re.finditer(":", spec):
        if m.start() > 1 and os.path.exists(spec[:m.start()]):
            return os.path.abspath(spec[:m.start()]) + spec[m.start():]
    return spec


def merged(rec: Reconstruction, results: list[RangeMoments]) -> Moments:
    """The partial moments of ``results`` merged into one moments reducer of ``rec``'s scan."""
    total = Moments(rec.moments.n_positions, rec.lookups.n_rings)
    for r in results:
        total.merge(r.part)
    return total


def _gather(client, job: RangeJob, ranges, retries: int, progress, unit: str, first: int):
    """Run the ranges on the cluster; returns (results in range order, interrupted, first error)."""
    from distributed import as_completed

    futures = [client.submit(range_moments, job, a, b, retries=retries, pure=False) for a, b in ranges]
    index = {f.key: i for i, f in enumerate(futures)}
    done: dict[int, RangeMoments] = {}
    cutoff, interrupted = len(ranges), False
    bar = None
    if progress is True:
        from tqdm import tqdm
        n_workers = len(client.scheduler_info().get("workers", {}))
        bar = tqdm(total=job.n_units, initial=first, unit=unit[:3], unit_scale=True, disable=None, leave=False,
                   desc=f"reconstructing on {n_workers} workers", smoothing=0.1)
    try:
        for fut in as_completed(futures):
            i = index[fut.key]
            if i > cutoff:
                continue
            try:
                res = fut.result()
            except RicomError as exc:
                raise InputError(f"on a Dask worker: {exc}") from None
            except Exception as exc:  # e.g. KilledWorker: its workers died again and again
                a, b = ranges[i]
                line = (str(exc).splitlines() or [""])[0]
                raise InputError(f"{unit} {a}…{b - 1} failed on the Dask cluster, also when run again "
                                 f"({type(exc).__name__}: {line}); see the workers' logs") from None
            done[i] = res
            if res.error is not None and i < cutoff:  # later ranges are not used, as in a single run
                cutoff = i
                client.cancel([f for j, f in enumerate(futures) if j > i and not f.done()])
            if bar is not None:
                bar.update(res.stop - res.start)
            elif callable(progress):
                progress(res.stop - res.start)
    except KeyboardInterrupt:
        interrupted = True
    finally:
        client.cancel([f for f in futures if not f.done()])
        if bar is not None:
            bar.close()
    results = [done[i] for i in sorted(done) if i <= cutoff]
    error = next((r.error for r in results if r.error is not None), None)
    return results, interrupted, error


def _first_chunks(source: Source, rec: Reconstruction, chunk_size: int) -> tuple[int, str | None]:
    """Feed the first chunk(s) to the client's reconstruction until its detector look-ups
    (centre, BF radius) are built, as in a single-process run; returns the units read and
    the message of an input that broke off meanwhile."""
    s, n_units = rec.settings, source.n_units
    if not (s.virtual_detectors or s.com_mask_px is not None):
        return 0, None
    first = 0
    try:
        for chunk in source.read_range(0, n_units, chunk_size):
            first += feed(rec, chunk)
            if rec.lookup_centre_yx is not None:
                break
    except RicomError as exc:
        if rec.n_patterns == 0:
            raise
        return n_units, str(exc)
    return first, None


def _on_cluster(client, job: RangeJob, first: int, range_size, retries: int, progress, unit: str):
    """Units ``first …`` of the job on the cluster: (results, interrupted, error, start-up seconds)."""
    t_connect = time.perf_counter()
    with connect(client) as c:
        startup = time.perf_counter() - t_connect  # a local cluster's start does not count as processing
        if not c.scheduler_info().get("workers"):
            c.wait_for_workers(1, timeout=60)
        ranges = plan_ranges(first, job.n_units, job.chunk_size, len(c.scheduler_info()["workers"]), range_size)
        return (*_gather(c, job, ranges, retries, progress, unit, first), startup)


def reconstruct_run_distributed(data, *, client, settings: Settings | None = None, reference=None,
                                descan: str | None = None, descan_reference=None, progress=False,
                                chunk_size: int = 512, range_size: int | None = None, retries: int = 3,
                                source_options: dict | None = None, threads: int = 1,
                                **setting_args) -> tuple[RunResult, Reconstruction, Source]:
    """Like `ricom.api.reconstruct_run`, with the patterns read and reduced on a Dask cluster.

    Parameters
    ----------
    data : str or path
        A splittable input file (see `ricom.sources.base.Source.read_range`) that the
        client and every worker can open under this name.
    client : dask.distributed.Client or str
        See `connect`: a client, ``"local:N"`` or ``"tcp://HOST:PORT"``.
    range_size : int, optional
        Units (frames, or event-list positions) per task; default: see `plan_ranges`.
    retries : int
        How often Dask runs a range again after its worker died or it failed.
    progress : bool or callable
        True: a terminal bar over all workers; a callable receives the units of each range done.
    threads : int
        Threads of each worker's per-pattern sums (for workers started with several threads).
    settings, reference, descan, descan_reference, chunk_size, source_options, **setting_args
        As `ricom.api.reconstruct_run` (``repeats`` is always ``"sum"``).
    """
    t0 = time.perf_counter()
    spec = _shared_spec(data)
    options = dict(source_options or {})
    source, settings = open_with_settings(spec, settings, options, **setting_args)
    try:
        if not source.splittable:
            source.read_range(0, 0, chunk_size)  # raises: says why and what to do
        ref_c = reference_center(reference) if reference is not None else None
        rec = Reconstruction(source.scan_shape, source.detector_shape, settings, reference_center_yx=ref_c)
        n_units = source.n_units
        first, error = _first_chunks(source, rec, chunk_size)
        if first >= n_units:
            rec.finalize()
        job = RangeJob(spec, options, tuple(source.scan_shape), tuple(source.detector_shape), n_units,
                       settings, rec.lookups, int(chunk_size), int(threads))
    finally:
        source.close()
    interrupted, results, startup = False, [], 0.0
    if first < n_units:
        unit = "frames" if source.kind == "frames" else "positions"
        results, interrupted, error, startup = _on_cluster(client, job, first, range_size, retries, progress, unit)
    for msg in dict.fromkeys(m for r in results for m in r.warnings):
        warnings.warn(msg, stacklevel=2)
    rec.merge_moments(merged(rec, results))
    rec.finalize()
    if descan in ("plane", "quadratic", "reference"):
        apply_descan(rec, descan, descan_reference, **(options if descan == "reference" else {}))
    seconds = time.perf_counter() - t0 - startup
    result = RunResult(rec.snapshot(), seconds, interrupted, error)
    if not options.get("pad", False) and not interrupted and error is None:
        # a file that falls short of its scan, as in a single run
        result.shortfall = scan_shortfall(rec, visited_positions(source))
    result.stamp(result.snapshot)
    return result, rec, source


def reconstruct_distributed(data, *, client, kernels=None, settings: Settings | None = None,
                            scan_shape=None, strict: bool = True, **options) -> list[Snapshot]:
    """Reconstruct a shared file on a Dask cluster, for one or several kernels at once.

    The patterns are read and reduced once; each kernel only rebuilds the image from the
    assembled moments.

    Parameters
    ----------
    data : str or path
        A splittable input file every worker can open under this name.
    client : dask.distributed.Client or str
        A client, ``"local:N"`` or ``"tcp://HOST:PORT"`` (see `connect`).
    kernels : sequence of KernelSettings or int, optional
        Kernels (or odd kernel sizes) to return images for; default: the settings' kernel.
    settings : Settings, optional
        Full settings; otherwise keyword arguments of `ricom.api.make_settings`.
    scan_shape : (int, int), optional
        Where the input does not carry it.
    strict : bool
        As in `ricom.api.reconstruct`: a run that ends early raises
        `ricom.api.PartialResult` (its ``.snapshot`` is the first kernel's, its
        ``.snapshots`` all of them); False returns them with ``complete`` False.
    **options
        `reconstruct_run_distributed` options (``progress``, ``range_size``, ``retries``,
        ``chunk_size``, ``reference``, ``descan``, ``source_options``) and setting keywords.

    Returns
    -------
    list of Snapshot
        One per kernel, in the order given.

    Examples
    --------
    >>> snaps = reconstruct_distributed("scan.mib", client="local:2",
    ...                                 kernels=[11, KernelSettings(21, (0.0, 0.3))])  # doctest: +SKIP
    >>> [s.ricom.shape for s in snaps]  # doctest: +SKIP
    [(256, 256), (256, 256)]
    """
    wanted = None if kernels is None else [k if isinstance(k, KernelSettings) else KernelSettings(int(k))
                                           for k in kernels]  # bad sizes fail before any work
    if scan_shape is not None:
        options["source_options"] = {**(options.get("source_options") or {}), "scan_shape": tuple(scan_shape)}
    result, rec, _ = reconstruct_run_distributed(data, client=client, settings=settings, **options)
    snaps = [result.snapshot]
    if wanted is not None:
        base, snaps = rec.settings, []
        for k in wanted:
            rec.update_settings(base.with_(kernel=k))
            snaps.append(result.stamp(rec.snapshot()))
        rec.update_settings(base)
    if strict and not result.complete:
        exc = PartialResult(snaps[0], result.reason)
        exc.snapshots = snaps
        raise exc
    return snaps
