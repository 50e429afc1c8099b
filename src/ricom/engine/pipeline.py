"""Drive a source into a reconstruction: chunks, progress, interruption, timing.

Every frontend (CLI, GUI, notebooks, live clients) uses `run` so that Ctrl-C, a dropped
connection or a truncated file all end the same way: the reconstruction keeps what it
has, and the caller gets a `RunResult` saying why it stopped.  Reading and decoding the
next chunks happens in a background thread (`prefetch`), overlapped with the engine's
work on the current one.
"""
from __future__ import annotations

import collections
import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from ricom.core.errors import RicomError
from ricom.engine import compiled
from ricom.engine.reconstruction import Reconstruction
from ricom.engine.snapshot import Snapshot
from ricom.sources.base import EventChunk, Source


@dataclass
class RunResult:
    """How a run ended.

    ``interrupted`` is True after Ctrl-C or a stop request; ``error`` holds the message
    of a source failure after which the partial result was kept.  ``latency_s`` lists,
    for each chunk of a live source, the seconds from the arrival of its first pattern
    until the image included it (a snapshot from then on shows it).
    """

    snapshot: Snapshot
    seconds_processing: float
    interrupted: bool = False
    error: str | None = None
    latency_s: list[float] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return not self.interrupted and self.error is None


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


class _Pipeline:
    """Adds chunks to a reconstruction in order; with ``threads > 1`` the per-pattern sums
    of the next chunks run on worker threads (one chunk each) while this thread adds the
    finished ones and updates the image."""

    def __init__(self, reconstruction: Reconstruction) -> None:
        self.rec = reconstruction
        self.pending: collections.deque = collections.deque()
        self.latency_s: list[float] = []
        self.pool = None
        if reconstruction.threads > 1:
            from concurrent.futures import ThreadPoolExecutor
            self.pool = ThreadPoolExecutor(reconstruction.threads, thread_name_prefix="ricom-chunk")

    def add(self, chunk) -> None:
        received = getattr(chunk, "received_s", None)
        if isinstance(chunk, EventChunk):
            self.drain()
            self.rec.process_events(chunk)
        elif self.pool is None:
            self.rec.process_frames(chunk.data, chunk.positions, scan_pass=chunk.scan_pass)
        else:
            self.pending.append((received, self.pool.submit(self.rec.prepare_frames, chunk.data, chunk.positions,
                                                            scan_pass=chunk.scan_pass, split=False)))
            while len(self.pending) > self.rec.threads:
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
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)


def run(source: Source, reconstruction: Reconstruction, chunk_size: int = 512,
        progress: bool | Callable[[int], None] = False, stop: threading.Event | None = None,
        description: str = "reconstructing", prefetch: int = 2) -> RunResult:
    """Feed every chunk of ``source`` into ``reconstruction``.

    Parameters
    ----------
    source : Source
        Frames or events.
    reconstruction : Reconstruction
        The engine that receives them.
    chunk_size : int
        Frames per chunk.
    progress : bool or callable
        True shows a terminal bar (when stderr is a terminal); a callable receives the
        number of frames (or events) of each chunk.
    stop : threading.Event, optional
        Set it from another thread to end the run after the current chunk.
    prefetch : int
        Chunks read ahead in a background thread; 0 reads in the calling thread.
    """
    compiled.load()  # numba's start-up is not processing time
    sample = getattr(source, "sample_frames", None)  # live sources: load the kernels before data flows
    if sample is not None:
        reconstruction.warm_up(sample())
    bar = None
    if progress is True:
        from tqdm import tqdm
        bar = tqdm(total=source.n_frames, unit="pat", unit_scale=True, desc=description,
                   disable=None, leave=False, smoothing=0.1)
    interrupted, error = False, None
    t0 = time.perf_counter()
    t_last = None
    reader_stop = threading.Event()
    chunks = source.chunks(chunk_size)
    if prefetch > 0:
        chunks = prefetched(chunks, prefetch, reader_stop)
    feed = _Pipeline(reconstruction)
    try:
        for chunk in chunks:
            feed.add(chunk)
            n = len(chunk.positions)
            t_last = time.perf_counter()
            if bar is not None:
                bar.update(n)
            elif callable(progress):
                progress(n)
            if stop is not None and stop.is_set():
                interrupted = True
                break
        feed.drain()
        if t_last is not None:
            t_last = time.perf_counter()
    except KeyboardInterrupt:
        interrupted = True
    except (RicomError, OSError, ConnectionError) as exc:
        feed.close()  # chunks reduced before the failure count too
        if reconstruction.n_patterns == 0:
            raise
        error = str(exc)
    finally:
        feed.close()
        reader_stop.set()
        close = getattr(chunks, "close", None)
        if close is not None:
            close()
        if bar is not None:
            bar.close()
        source.close()
    reconstruction.finalize()
    seconds = (t_last - t0) if t_last is not None else 0.0
    snap = reconstruction.snapshot()
    snap.seconds_processing = seconds
    return RunResult(snap, seconds, interrupted, error, feed.latency_s)
