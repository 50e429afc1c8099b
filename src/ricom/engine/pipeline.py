"""The pipeline: drive a source into a reconstruction, owning every thread of the run.

Data flow one way: **source → chunks → per-pattern reduction → reducers → snapshot**.
`Pipeline` arranges it: a reader thread reads (and for live streams, decodes) the next
chunks (`prefetched`); `Workers` (its one pool, shut down at the end of the run) reduce
the next chunks to per-pattern moments while the calling thread adds the finished ones
in order to the reducers and the image.  A Dask cluster is the other backend
(`ricom.dask.client`): its workers run the same `ChunkReduction` on their own ranges and
the client merges their moments.

Every frontend (CLI, GUI, notebooks, live clients) uses `run` so that Ctrl-C, a dropped
connection or a truncated file all end the same way: the reconstruction keeps what it
has, and the caller gets a `RunResult` saying why it stopped.
"""
from __future__ import annotations

import collections
import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np

from ricom.core.chunks import EventChunk
from ricom.core.errors import RicomError
from ricom.engine import compiled
from ricom.engine.reduction import ChunkReduction
from ricom.engine.snapshot import Snapshot
from ricom.engine.workers import Workers
from ricom.sources.base import Source


@dataclass
class RunResult:
    """How a run ended.

    ``interrupted`` is True after Ctrl-C or a stop request; ``error`` holds the message
    of a source failure after which the partial result was kept; ``shortfall`` says how
    the input fell short of its scan when it ended without an error (a truncated file, a
    stream that stopped early; checked only when the run was asked to, see `run`).
    ``latency_s`` lists, for each chunk of a live source, the seconds from the arrival of
    its first pattern until the image included it: a snapshot from then on shows it (image
    rows that wait for more rows, see `ricom.engine.ricom_update.RicomImage.update`, are
    brought in by the snapshot itself).
    ``snapshot`` is None for a reduction without an image (`ChunkReduction`); otherwise
    it carries ``complete`` and ``reason`` too.
    """

    snapshot: Snapshot | None
    seconds_processing: float
    interrupted: bool = False
    error: str | None = None
    latency_s: list[float] = field(default_factory=list)
    shortfall: str | None = None

    @property
    def complete(self) -> bool:
        """True if the run read its whole input (nothing stopped it, nothing was missing)."""
        return not self.interrupted and self.error is None and self.shortfall is None

    @property
    def reason(self) -> str | None:
        """Why the result is partial, in one line (None when `complete`)."""
        if self.error is not None:
            return self.error
        if self.interrupted:
            return "interrupted before the end of the input"
        return self.shortfall

    def stamp(self, snapshot: Snapshot) -> Snapshot:
        """Mark ``snapshot`` (e.g. one taken after a rebuild) with this run's processing
        time, ``complete`` and ``reason``; returns it."""
        snapshot.seconds_processing = self.seconds_processing
        snapshot.complete, snapshot.reason = self.complete, self.reason
        return snapshot


def scan_shortfall(reduction: ChunkReduction, visited: np.ndarray | None = None) -> str | None:
    """How the patterns fall short of the scan, in one line, or None if they cover it.

    A scan position that received no pattern, or (repeated passes) fewer patterns than
    the most visited ones, means the input ended early.  Patterns skipped as invalid
    (NaN, ±inf) leave their position empty too, so up to ``n_invalid`` such positions
    are not counted as missing.  ``visited`` (boolean per flat position; a scan in a
    listed order) limits the check to the positions the scan visits; where a list visits
    positions unequally often, only empty ones count.
    """
    hits = reduction.moments.hits
    if visited is not None:
        hits = hits[visited]
        if int(np.count_nonzero(hits == 0)) > reduction.n_invalid:
            n = hits.size
            return (f"the input ended before the scan was complete: {int(np.count_nonzero(hits == 0))} of {n} "
                    f"listed scan positions received no pattern")
        return None
    n, spared = hits.size, reduction.n_invalid
    empty = int(np.count_nonzero(hits == 0))
    if empty > spared:
        return f"the input ended before the scan was complete: {empty} of {n} scan positions received no pattern"
    most = int(hits.max()) if n else 0
    fewer = int(np.count_nonzero(hits < most))
    if fewer > spared:
        return (f"the input ended during a repeated scan: {fewer} of {n} scan positions received fewer "
                f"patterns than the {most} of the others")
    return None


def visited_positions(source: Source) -> np.ndarray | None:
    """The positions a source's scan order visits (None: a raster, all of them)."""
    order = getattr(source, "scan_positions", None)
    return order.visited(source.scan_shape) if order is not None else None


_DONE = object()


def prefetched(chunks: Iterator, depth: int, stop: threading.Event) -> Iterator:
    """Iterate ``chunks`` in a background thread, keeping up to ``depth`` chunks ready.

    Exceptions of the producer are re-raised in the consumer, in order.  Setting
    ``stop`` (or closing the returned generator) ends the producer at the next chunk.
    """
    q: queue.Queue = queue.Queue(maxsize=max(1, depth))

    def put(item) -> bool:
        """Hand ``item`` to the consumer unless the run is stopping; False if it is."""
        while not stop.is_set():
            try:
                q.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in chunks:
                if not put(item):
                    break
            item = _DONE
        except BaseException as exc:  # handed to the consumer
            item = exc
        finally:
            close = getattr(chunks, "close", None)
            if close is not None:
                close()
        put(item)

    worker = threading.Thread(target=produce, name="ricom-reader", daemon=True)
    worker.start()
    try:
        while True:
            item = q.get()
            if item is _DONE:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        worker.join(timeout=5)


def chunk_frames(source: Source, chunk_size: int) -> int:
    """Frames per chunk for ``source``: ``chunk_size``, or more where the source suggests it
    (``suggested_chunk_size(chunk_size)``: patterns that cost little each, such as raw 1-bit
    frames read in place, pay less per-chunk overhead in bigger chunks)."""
    suggest = getattr(source, "suggested_chunk_size", None)
    return max(int(chunk_size), int(suggest(chunk_size))) if callable(suggest) else int(chunk_size)


class _Feed:
    """Adds chunks to a reconstruction in order; with ``workers`` the per-pattern reduction
    of the next chunks runs on their threads (one chunk each) while this thread adds the
    finished ones and updates the image."""

    def __init__(self, reconstruction: ChunkReduction, workers: Workers) -> None:
        self.rec = reconstruction
        self.workers = workers
        self.pending: collections.deque = collections.deque()
        self.latency_s: list[float] = []
        self.t_last: float | None = None
        """When the last chunk was handed in (or, at the end, added)."""

    def add(self, chunk) -> None:
        received = getattr(chunk, "received_s", None)
        if isinstance(chunk, EventChunk):
            self.drain()
            self.rec.process_events(chunk)
        elif self.workers.n == 1:
            self.rec.add_prepared(self.rec.prepare_frames(chunk.data, chunk.positions, scan_pass=chunk.scan_pass))
        else:
            self.pending.append((received, self.workers.submit(self.rec.prepare_frames, chunk.data, chunk.positions,
                                                               scan_pass=chunk.scan_pass)))
            # in order: the oldest when too many wait, and any already reduced (low latency at low rates)
            while self.pending and (len(self.pending) > self.workers.n or self.pending[0][1].done()):
                self._add_oldest()
            return
        self._seen(received)

    def _add_oldest(self) -> None:
        received, job = self.pending.popleft()
        self.rec.add_prepared(job.result())
        self._seen(received)

    def _seen(self, received: float | None) -> None:
        if received is not None:
            self.latency_s.append(time.perf_counter() - received)

    def drain(self) -> None:
        """Add every chunk handed in so far."""
        while self.pending:
            self._add_oldest()

    def close(self) -> None:
        """After Ctrl-C or an error: still add the (at most ``threads``) chunks already
        read, except any whose reduction failed."""
        while self.pending:
            if self.pending[0][1].exception() is None:
                self._add_oldest()
            else:
                self.pending.popleft()


class Pipeline:
    """One run of a source into a reduction (a `Reconstruction`, or a `ChunkReduction` alone).

    Parameters
    ----------
    reduction : ChunkReduction
        What receives the chunks; its ``threads`` sets the worker threads.
    chunk_size : int
        Frames per chunk (at least: a source may suggest more, see `chunk_frames`).
    prefetch : int
        Chunks read ahead in the reader thread; 0 reads in the calling thread.
    """

    def __init__(self, reduction: ChunkReduction, chunk_size: int = 512, prefetch: int = 2) -> None:
        self.reduction = reduction
        self.chunk_size = chunk_size
        self.prefetch = prefetch

    def run(self, source: Source, progress: bool | Callable[[int], None] = False,
            stop: threading.Event | None = None, description: str = "reconstructing",
            full_scan: bool = False) -> RunResult:
        """Feed every chunk of ``source`` in; see `run`."""
        compiled.load()  # numba's start-up is not processing time
        sample = getattr(source, "sample_frames", None)  # live sources: load the kernels before data flows
        if sample is not None:
            self.reduction.warm_up(sample())
        tick = _Ticker(progress, source, description)
        reader_stop = threading.Event()
        chunks = source.chunks(chunk_frames(source, self.chunk_size))
        if self.prefetch > 0:
            chunks = prefetched(chunks, self.prefetch, reader_stop)
        workers = Workers(self.reduction.threads)
        feed = _Feed(self.reduction, workers)
        t0 = time.perf_counter()
        interrupted, error = False, None
        try:
            interrupted = self._consume(chunks, feed, tick, stop)
        except KeyboardInterrupt:
            interrupted = True
        except (RicomError, OSError, ConnectionError) as exc:
            feed.close()  # chunks reduced before the failure count too
            self.reduction.finalize()  # and events held back for the detector look-ups
            if self.reduction.n_patterns == 0:
                raise
            error = str(exc)
        finally:
            feed.close()
            workers.close(cancel=True)
            reader_stop.set()
            for closing in (chunks, tick, source):
                close = getattr(closing, "close", None)
                if close is not None:
                    close()
        result = self._result(t0, feed.t_last, interrupted, error, feed.latency_s)
        if full_scan and not interrupted and error is None:
            result.shortfall = scan_shortfall(self.reduction, visited_positions(source))
            if result.snapshot is not None:
                result.stamp(result.snapshot)
        return result

    @staticmethod
    def _consume(chunks, feed: _Feed, tick, stop) -> bool:
        """Add every chunk; True if a stop request ended it early."""
        for chunk in chunks:
            feed.add(chunk)
            feed.t_last = time.perf_counter()
            tick(len(chunk.positions))
            if stop is not None and stop.is_set():
                return True
        feed.drain()
        flush = getattr(feed.rec, "flush", None)  # deferred image updates are processing time too
        if flush is not None:
            flush()
        if feed.t_last is not None:
            feed.t_last = time.perf_counter()
        return False

    def _result(self, t0, t_last, interrupted, error, latency_s) -> RunResult:
        self.reduction.finalize()
        seconds = (t_last - t0) if t_last is not None else 0.0
        snap = self.reduction.snapshot() if hasattr(self.reduction, "snapshot") else None
        result = RunResult(snap, seconds, interrupted, error, latency_s)
        if snap is not None:
            result.stamp(snap)
        return result


class _Ticker:
    """Progress: `ricom.core.progress.Progress` (a bar on a terminal, lines when piped), a
    callable receiving each chunk's size, or nothing."""

    def __init__(self, progress, source: Source, description: str) -> None:
        self.bar = None
        self.call = progress if callable(progress) else None
        if progress is True:
            from ricom.core.progress import Progress
            unit = "events" if getattr(source, "kind", "frames") == "events" else "patterns"
            self.bar = Progress(description, source.n_frames, unit)

    def __call__(self, n: int) -> None:
        if self.bar is not None:
            self.bar.update(n)
        elif self.call is not None:
            self.call(n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()



def run(source: Source, reconstruction: ChunkReduction, chunk_size: int = 512,
        progress: bool | Callable[[int], None] = False, stop: threading.Event | None = None,
        description: str = "reconstructing", prefetch: int = 2, full_scan: bool = False) -> RunResult:
    """Feed every chunk of ``source`` into ``reconstruction``.

    Parameters
    ----------
    source : Source
        Frames or events.
    reconstruction : Reconstruction or ChunkReduction
        What receives them (a `ChunkReduction` collects moments without an image).
    chunk_size : int
        Frames per chunk (at least: a source whose patterns are cheap may suggest more,
        see `chunk_frames`).
    progress : bool or callable
        True shows a terminal bar (when stderr is a terminal); a callable receives the
        number of frames (or events) of each chunk.
    stop : threading.Event, optional
        Set it from another thread to end the run after the current chunk.
    description : str
        Label of the terminal bar.
    prefetch : int
        Chunks read ahead in a background thread; 0 reads in the calling thread.
    full_scan : bool
        The input should fill its scan: if it ends without an error but leaves scan
        positions without patterns (a truncated file), the result is partial
        (`RunResult.shortfall`).  False for inputs whose bookkeeping is done elsewhere
        (live sessions) or whose gaps are intended (``pad``).

    Returns
    -------
    RunResult
        How the run ended; ``complete`` is False (and ``reason`` says why) after Ctrl-C,
        a stop request, a broken input or (with ``full_scan``) a shortfall.
    """
    return Pipeline(reconstruction, chunk_size, prefetch).run(source, progress, stop, description, full_scan)
