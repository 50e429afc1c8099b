"""Drive a source into a reconstruction: chunks, progress, interruption, timing.

Every frontend (CLI, GUI, notebooks, live clients) uses `run` so that Ctrl-C, a dropped
connection or a truncated file all end the same way: the reconstruction keeps what it
has, and the caller gets a `RunResult` saying why it stopped.
"""
from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from .engine import Reconstruction
from .errors import RicomError
from .snapshot import Snapshot
from .sources.base import EventChunk, Source


@dataclass
class RunResult:
    """How a run ended.

    ``interrupted`` is True after Ctrl-C or a stop request; ``error`` holds the message
    of a source failure after which the partial result was kept.
    """

    snapshot: Snapshot
    seconds_processing: float
    interrupted: bool = False
    error: str | None = None

    @property
    def complete(self) -> bool:
        return not self.interrupted and self.error is None


def run(source: Source, reconstruction: Reconstruction, chunk_size: int = 512,
        progress: bool | Callable[[int], None] = False, stop: threading.Event | None = None,
        description: str = "reconstructing") -> RunResult:
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
    """
    bar = None
    if progress is True:
        from tqdm import tqdm
        bar = tqdm(total=source.n_frames, unit="pat", unit_scale=True, desc=description,
                   disable=None, leave=False, smoothing=0.1)
    interrupted, error = False, None
    t0 = time.perf_counter()
    t_last = None
    try:
        for chunk in source.chunks(chunk_size):
            if isinstance(chunk, EventChunk):
                reconstruction.process_events(chunk)
                n = len(chunk.positions)
            else:
                reconstruction.process_frames(chunk.frames, chunk.positions, scan_pass=chunk.scan_pass)
                n = len(chunk.positions)
            t_last = time.perf_counter()
            if bar is not None:
                bar.update(n)
            elif callable(progress):
                progress(n)
            if stop is not None and stop.is_set():
                interrupted = True
                break
    except KeyboardInterrupt:
        interrupted = True
    except (RicomError, OSError, ConnectionError) as exc:
        if reconstruction.n_patterns == 0:
            raise
        error = str(exc)
    finally:
        if bar is not None:
            bar.close()
        source.close()
    reconstruction.finalize()
    seconds = (t_last - t0) if t_last is not None else 0.0
    snap = reconstruction.snapshot()
    snap.seconds_processing = seconds
    return RunResult(snap, seconds, interrupted, error)
