"""What a Dask worker runs for `ricom.dask.client`: read one range of a shared file, reduce it.

A task (`range_moments`) opens the input by name, reads units ``start … stop-1`` with
`ricom.sources.base.Source.read_range` and feeds them to an ordinary
`ricom.engine.reconstruction.Reconstruction` — the engine's own compiled kernels — whose detector
look-ups are fixed by the client (`RangeJob.settings`: the centre and the virtual-detector
radii in pixels, a 3×3 kernel so that the scatter costs nothing).  It returns the summed
moments of the positions it touched and the engine's counters (`RangeMoments`): a few
dozen bytes per pattern instead of the pattern.  Nothing here imports Dask.
"""
from __future__ import annotations

import contextlib
import time
import warnings
from dataclasses import dataclass, field

import numpy as np

from ricom.core.errors import InputError, RicomError
from ricom.core.params import Settings
from ricom.engine.reconstruction import Reconstruction
from ricom.sources import open_source
from ricom.sources.base import EventChunk

COUNTERS = ("n_patterns", "n_empty", "n_invalid", "n_outside", "n_events", "n_invalid_events")
"""Counters of `Reconstruction` that workers report and the client adds up."""


@dataclass(frozen=True)
class RangeJob:
    """What every task needs besides its range: where the data is and how to reduce it."""

    spec: str
    options: dict
    scan_shape: tuple[int, int]
    detector_shape: tuple[int, int]
    n_units: int
    settings: Settings
    chunk_size: int
    threads: int = 1


@dataclass
class RangeMoments:
    """A task's answer: summed moments of every position it touched, and its counters.

    ``moments[:, i]`` (rows TOTAL, SUM_X, SUM_Y, rings as in `ricom.engine.compiled`) is the sum
    over the ``hits[i]`` patterns of this range at flat position ``positions[i]``.
    ``error`` is the message of an input that broke off inside the range (the moments
    hold what came before it).
    """

    start: int
    stop: int
    positions: np.ndarray
    moments: np.ndarray
    hits: np.ndarray
    counts: dict = field(default_factory=dict)
    error: str | None = None
    warnings: list = field(default_factory=list)
    seconds: float = 0.0


def feed(rec: Reconstruction, chunk) -> int:
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
        rec = Reconstruction(job.scan_shape, job.detector_shape, job.settings,
                             **({"threads": job.threads} if job.threads != 1 else {}))
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
    state, hits = rec.moment_maps()
    touched = np.flatnonzero((hits > 0) | np.any(state != 0, axis=0))
    return RangeMoments(start, stop, touched, state[:, touched].copy(), hits[touched].copy(),
                        {name: int(getattr(rec, name)) for name in COUNTERS}, error,
                        list(dict.fromkeys(str(w.message) for w in caught)), time.perf_counter() - t0)


def _synchronous_dask(needed: bool):
    """Dask arrays inside a task (RosettaSciIO's lazy data) are computed in the task itself."""
    if not needed:
        return contextlib.nullcontext()
    import dask
    return dask.config.set(scheduler="synchronous")
