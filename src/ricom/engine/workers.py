"""The worker threads of a run: one pool, created by its owner and shut down by it.

The compiled per-pattern reductions release the GIL, so several chunks (or parts of one
chunk) are reduced at once on these threads while the owner adds finished chunks in
order.  The pipeline (`ricom.engine.pipeline`) owns one `Workers` per run;
`ricom.engine.Reconstruction.process_frames` makes a short-lived one for a single call
when its ``threads`` asks for more than one.  No other engine module starts threads
(besides the pipeline's reader thread).
"""
from __future__ import annotations

import itertools
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np

from ricom.engine.detector import frame_moments, take_frames


class Workers:
    """``n`` worker threads (none for ``n = 1``: work runs in the calling thread).

    Use as a context manager, or call `close`; closing waits for running work.
    """

    def __init__(self, n: int) -> None:
        self.n = max(1, int(n))
        self._pool = ThreadPoolExecutor(self.n, thread_name_prefix="ricom-worker") if self.n > 1 else None

    def submit(self, fn, /, *args, **kwargs) -> Future:
        """Run ``fn(*args, **kwargs)`` on a worker (at once in this thread without workers)."""
        if self._pool is not None:
            return self._pool.submit(fn, *args, **kwargs)
        done: Future = Future()
        try:
            done.set_result(fn(*args, **kwargs))
        except Exception as exc:  # handed to the caller through the future, as a pool does
            done.set_exception(exc)
        return done

    def reduce_split(self, frames, lookups, moments: np.ndarray) -> None:
        """Per-pattern moments of one chunk (`frame_moments`), its patterns shared over the workers."""
        k = frames.shape[0]
        if self._pool is None or k < 2 * self.n:
            frame_moments(frames, lookups, moments)
            return
        cuts = np.linspace(0, k, self.n + 1).astype(int)
        jobs = [self._pool.submit(frame_moments, take_frames(frames, a, b), lookups, moments[:, a:b])
                for a, b in itertools.pairwise(cuts)]
        for job in jobs:
            job.result()

    def close(self, cancel: bool = False) -> None:
        """Shut the threads down (after the running work; queued work dropped with ``cancel``)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=cancel)

    def __enter__(self) -> Workers:
        return self

    def __exit__(self, *exc) -> None:
        self.close(cancel=exc[0] is not None)
