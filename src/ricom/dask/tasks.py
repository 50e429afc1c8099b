"""What a Dask worker runs for `ricom.dask.client`: read one range of a shared file, reduce it.

A task (`range_moments`) opens the input by name, reads units ``start … stop-1`` with
`ricom.sources.base.Source.read_range` and feeds them to a
`ricom.engine.reduction.ChunkReduction` — the engine's own per-pattern reduction and
moments reducer, no image — with the detector look-ups the client built
(`RangeJob.lookups`), so every worker reduces patterns exactly as the client would.  It
returns the moments reducer's partial result (`ricom.engine.moments.MomentsPart`: summed
moments, hits and counters of the positions it touched), which the client merges: a few
dozen bytes per position instead of the patterns.  Nothing here imports Dask.
"""
from __future__ import annotations

import contextlib
import time
import warnings
from dataclasses import dataclass, field

from ricom.core.chunks import EventChunk
from ricom.core.errors import InputError, RicomError
from ricom.core.params import Settings
from ricom.engine.lookups import DetectorLookups
from ricom.engine.moments import MomentsPart
from ricom.engine.reduction import ChunkReduction
from ricom.sources import open_source


@dataclass(frozen=True)
class RangeJob:
    """What every task needs besides its range: where the data is and how to reduce it."""

    spec: str
    options: dict
    scan_shape: tuple[int, int]
    detector_shape: tuple[int, int]
    n_units: int
    settings: Settings
    lookups: DetectorLookups
    chunk_size: int
    threads: int = 1


@dataclass
class RangeMoments:
    """A task's answer: the moments reducer's partial result for units ``start … stop-1``.

    ``error`` is the message of an input that broke off inside the range (the moments
    hold what came before it).
    """

    start: int
    stop: int
    part: MomentsPart
    error: str | None = None
    warnings: list = field(default_factory=list)
    seconds: float = 0.0


def feed(rec: ChunkReduction, chunk) -> int:
    """Add one chunk to ``rec``; returns the units it covers (frames, or event-list units)."""
    if isinstance(chunk, EventChunk):
        rec.process_events(chunk)
        return len(chunk.positions_done) if chunk.positions_done is not None else 0
    rec.process_frames(chunk.data, chunk.positions, scan_pass=chunk.scan_pass)
    return len(chunk.positions)


def range_moments(job: RangeJob, start: int, stop: int) -> RangeMoments:
    """Read units ``start … stop-1`` of ``job.spec`` here and reduce them to moments (a Dask task)."""
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the client has shown what opening the input says
        source = open_source(job.spec, **job.options)
    try:
        if (source.scan_shape, tuple(source.detector_shape), source.n_units) != \
                (job.scan_shape, job.detector_shape, job.n_units):
            raise InputError(f"{job.spec} looks different on this worker ({source.n_units} units, scan "
                             f"{source.scan_shape}, detector {source.detector_shape}) than on the client "
                             f"({job.n_units}, {job.scan_shape}, {job.detector_shape}); every worker must read "
                             f"the same file")
        rec = ChunkReduction(job.scan_shape, job.detector_shape, job.settings, threads=job.threads,
                             lookups=job.lookups)
        error = None
        lazy_dask = hasattr(getattr(source, "data", None), "dask")
        with warnings.catch_warnings(record=True) as caught, _synchronous_dask(lazy_dask):
            warnings.simplefilter("always")
            try:
                for chunk in source.read_range(start, stop, job.chunk_size):
                    feed(rec, chunk)
            except RicomError as exc:  # the input broke off: keep what came before, as `run` does
                error = str(exc)
            rec.finalize()
    finally:
        source.close()
    return RangeMoments(start, stop, rec.moments.part(), error, list(dict.fromkeys(str(w.message) for w in caught)),
                        time.perf_counter() - t0)


def _synchronous_dask(needed: bool):
    """Dask arrays inside a task (RosettaSciIO's lazy data) are computed in the task itself."""
    if not needed:
        return contextlib.nullcontext()
    import dask
    return dask.config.set(scheduler="synchronous")
