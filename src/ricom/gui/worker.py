"""The reconstruction thread of the GUI, and small background jobs.

Owns `RunWorker` (opens a source, builds the `Reconstruction` and runs `ricom.engine.pipeline.run`
in a `threading.Thread`, with stop, and pause between chunks via run's progress
callback), `PatternTap` (wraps the source to keep the latest diffraction pattern as the
source delivers it) and `BackgroundJob` (one function call off the GUI thread, e.g. a
reference centre).

Nothing here touches Qt: the window polls these objects from its refresh timer, so no
signal crosses threads and the reconstruction never waits for the display.
"""
from __future__ import annotations

import threading
import time
from collections.abc import Callable

import numpy as np

from ricom.core.chunks import EventChunk
from ricom.core.errors import RicomError, render
from ricom.engine.pipeline import RunResult, run
from ricom.gui.wording import GUI
from ricom.sources.base import Source

MAX_TAP_EVENTS = 200_000
"""Events of the latest event chunk kept for the diffraction view."""


def describe_error(exc: BaseException) -> str:
    """One line for the user: the message of a ricom error (parameters named as the
    settings fields, `ricom.gui.wording.FIELDS`), else the type and message."""
    if isinstance(exc, RicomError):
        return render(exc, GUI)
    if isinstance(exc, OSError) and exc.strerror:
        return f"{exc.strerror}: {exc.filename}" if exc.filename else exc.strerror
    return f"{type(exc).__name__}: {exc}"


class PatternTap:
    """A source wrapper that remembers the latest pattern it delivered.

    Parameters
    ----------
    source : Source
        The wrapped input; every other attribute is read from it.

    Attributes
    ----------
    latest : ndarray or None
        Copy of the last pattern at a scan position (frame sources).
    latest_events : (ndarray, ndarray) or None
        ``(y, x)`` of (up to `MAX_TAP_EVENTS`) events of the last event chunk.
    latest_id : int
        Increases whenever ``latest`` or ``latest_events`` changes.
    frames : int
        Frames (or events) delivered so far (`ricom.engine.pipeline.run` may read a few chunks
        ahead of the engine).
    last_position, last_pass : int
        Flat scan position and pass of the last frame delivered.
    source_seconds, wait_seconds : float
        Time spent producing chunks, and waiting for the engine to take them.
    """

    def __init__(self, source: Source) -> None:
        self.source = source
        self.latest: np.ndarray | None = None
        self.latest_events: tuple[np.ndarray, np.ndarray] | None = None
        self.latest_id = 0
        self.frames = 0
        self.last_position = -1
        self.last_pass = 0
        self.source_seconds = 0.0
        self.wait_seconds = 0.0

    def __getattr__(self, name):
        return getattr(self.source, name)

    def chunks(self, chunk_size: int = 256):
        t = time.perf_counter()
        for chunk in self.source.chunks(chunk_size):
            t_ready = time.perf_counter()
            self.source_seconds += t_ready - t
            self._remember(chunk)
            yield chunk
            t = time.perf_counter()
            self.wait_seconds += t - t_ready

    @property
    def engine_bound(self) -> float:
        """Fraction of the time the source waited for the engine (≈1: the engine sets the pace)."""
        total = self.wait_seconds + self.source_seconds
        return self.wait_seconds / total if total > 0 else 0.0

    def _remember(self, chunk) -> None:
        pos = np.asarray(chunk.positions).ravel()
        if isinstance(chunk, EventChunk):
            keep = slice(max(0, len(pos) - MAX_TAP_EVENTS), None)
            self.latest_events = (np.array(chunk.y[keep], np.float64), np.array(chunk.x[keep], np.float64))
            self.latest_id += 1
        else:
            inside = np.flatnonzero(pos >= 0)
            if inside.size:
                self.latest = _one_pattern(chunk, int(inside[-1]))
                self.latest_id += 1
                self.last_position = int(pos[inside[-1]])
                if chunk.scan_pass is not None:
                    self.last_pass = int(np.asarray(chunk.scan_pass).ravel()[inside[-1]])
        self.frames += len(pos)

    def close(self) -> None:
        self.source.close()


def _one_pattern(chunk, k: int) -> np.ndarray:
    """A copy of pattern ``k`` of a frame chunk.  Packed or still compressed chunks
    (`ricom.core.chunks.PackedFrames`, `EncodedFrames`) give only that pattern: the
    engine's workers read or decode the rest in parallel, not this thread."""
    data = getattr(chunk, "data", None)
    if data is not None and not isinstance(data, np.ndarray) and hasattr(data, "unpack"):
        return np.array(data.unpack(slice(k, k + 1))[0])
    frames = np.asarray(chunk.frames)
    return np.array(frames.reshape(-1, *frames.shape[-2:])[k])


class RunWorker:
    """Open a source and reconstruct it in a background thread.

    Parameters
    ----------
    open_source : callable
        ``open_source(stop_event) -> Source``; runs in the worker thread (a live stream
        may block until the acquisition starts).
    make_reconstruction : callable
        ``make_reconstruction(source) -> Reconstruction``; runs in the worker thread.
    chunk_size : int
        Frames per chunk handed to the engine.

    Attributes
    ----------
    source, tap, rec : Source, PatternTap, Reconstruction or None
        Set once opened (``rec`` last: when it is not None the run has begun).
    result : RunResult or None
        How `ricom.engine.pipeline.run` ended.
    error : str or None
        Why the run failed or broke off (the partial images stay in ``rec``).
    """

    def __init__(self, open_source: Callable, make_reconstruction: Callable, chunk_size: int = 256) -> None:
        self._open, self._make = open_source, make_reconstruction
        self.chunk_size = int(chunk_size)
        self.stop_event = threading.Event()
        self._resume = threading.Event()
        self._resume.set()
        self.finished = threading.Event()
        self.source: Source | None = None
        self.tap: PatternTap | None = None
        self.rec = None
        self.result: RunResult | None = None
        self.error: str | None = None
        self.t_start: float | None = None
        self.processed = 0
        self._waiting = False
        self.thread = threading.Thread(target=self._main, name="ricom-gui-run", daemon=True)

    def start(self) -> RunWorker:
        self.thread.start()
        return self

    def _main(self) -> None:
        try:
            self.source = self._open(self.stop_event)
            if self.stop_event.is_set():
                self.source.close()
                return
            rec = self._make(self.source)
            self.tap = PatternTap(self.source)
            self.t_start = time.perf_counter()
            self.rec = rec
            self.result = run(self.tap, rec, chunk_size=self.chunk_size, progress=self._progress,
                              stop=self.stop_event, full_scan=True)
            self.error = render(self.result.error, GUI) if self.result.error else None
        except Exception as exc:  # never let a bad input take the window down
            self.error = describe_error(exc)
            if self.source is not None:
                try:
                    self.source.close()
                except Exception:  # already failing: keep the first message
                    pass
        finally:
            self.finished.set()

    def _progress(self, n: int) -> None:
        """Called by `ricom.engine.pipeline.run` after each chunk: count it, and wait here while paused."""
        self.processed += n
        if not self._resume.is_set():
            self._waiting = True
            while not self._resume.wait(0.05) and not self.stop_event.is_set():
                pass
            self._waiting = False

    # ------------------------------------------------------------------ control
    @property
    def running(self) -> bool:
        return self.thread.is_alive()

    @property
    def paused(self) -> bool:
        """True once paused *and* the engine is idle (waiting between chunks)."""
        return not self._resume.is_set() and self._waiting

    def pause(self) -> None:
        self._resume.clear()

    def resume(self) -> None:
        self._resume.set()

    def stop(self, wait: float | None = None) -> None:
        """Ask the run to end after the current chunk; optionally wait up to ``wait`` s."""
        self.stop_event.set()
        self._resume.set()
        interrupt = getattr(self.source, "interrupt", None)
        if callable(interrupt):
            interrupt()
        if wait is not None and self.thread.is_alive():
            self.thread.join(wait)


class BackgroundJob:
    """Run ``fn(*args)`` in a thread; `poll` (from the GUI thread) calls back once done.

    ``on_done(result)`` or ``on_error(message)`` is called by the first `poll` after
    the call returned; `poll` returns True from then on.
    """

    def __init__(self, fn: Callable, *args, on_done: Callable, on_error: Callable) -> None:
        self._fn, self._args = fn, args
        self._on_done, self._on_error = on_done, on_error
        self._result = self._error = None
        self._reported = False
        self._thread = threading.Thread(target=self._main, name="ricom-gui-job", daemon=True)
        self._thread.start()

    def _main(self) -> None:
        try:
            self._result = self._fn(*self._args)
        except Exception as exc:  # reported in the window
            self._error = describe_error(exc)

    def poll(self) -> bool:
        if self._reported:
            return True
        if self._thread.is_alive():
            return False
        self._reported = True
        if self._error is not None:
            self._on_error(self._error)
        else:
            self._on_done(self._result)
        return True
