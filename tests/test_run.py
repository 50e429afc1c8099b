"""The driver: prefetching, interruption and partial results."""
from __future__ import annotations

import threading

import numpy as np
import pytest

from ricom import InputError, KernelSettings, Reconstruction, Settings
from ricom.core.chunks import FrameChunk
from ricom.engine.pipeline import run
from ricom.sources.arrays import ArraySource
from ricom.sources.base import Source


class Breaking(Source):
    """Yields `good` chunks of 4 frames, then raises (or interrupts)."""

    def __init__(self, data, good, exc):
        self.data, self.good, self.exc = data, good, exc
        self.scan_shape = data.shape[:2]
        self.detector_shape = data.shape[2:]
        self.n_frames = data.shape[0] * data.shape[1]
        self.closed = False

    def chunks(self, chunk_size=4):
        frames = self.data.reshape(-1, *self.detector_shape)
        for i in range(self.good):
            yield FrameChunk(frames[4 * i:4 * i + 4], np.arange(4 * i, 4 * i + 4))
        raise self.exc

    def close(self):
        self.closed = True


def engine(data, threads=1):
    return Reconstruction(data.shape[:2], data.shape[2:], Settings(kernel=KernelSettings(3)), threads=threads)


@pytest.mark.parametrize("prefetch, threads", [(0, 1), (2, 1), (2, 2), (0, 3)])
def test_same_result_with_and_without_prefetch(poisson_data, prefetch, threads):
    """Reading ahead and reducing chunks on worker threads (the pipeline) change nothing."""
    a = engine(poisson_data, threads)
    res = run(ArraySource(poisson_data), a, chunk_size=7, prefetch=prefetch)
    b = engine(poisson_data)
    b.process_frames(poisson_data.reshape(-1, 16, 16), start=0)
    b.finalize()
    np.testing.assert_allclose(res.snapshot.ricom, b.snapshot().ricom, atol=1e-12)
    assert res.complete and res.snapshot.n_patterns == 72


@pytest.mark.parametrize("prefetch, threads", [(0, 1), (2, 1), (2, 2)])
def test_source_error_keeps_partial_result(poisson_data, prefetch, threads):
    src = Breaking(poisson_data, 3, InputError("connection dropped"))
    res = run(src, engine(poisson_data, threads), prefetch=prefetch)
    assert res.error == "connection dropped" and res.snapshot.n_patterns == 12 and src.closed


@pytest.mark.parametrize("prefetch, threads", [(0, 1), (2, 1), (0, 2)])
def test_interrupt_keeps_partial_result(poisson_data, prefetch, threads):
    res = run(Breaking(poisson_data, 2, KeyboardInterrupt()), engine(poisson_data, threads), prefetch=prefetch)
    assert res.interrupted and res.snapshot.n_patterns == 8


def test_error_before_any_data_is_raised(poisson_data):
    with pytest.raises(InputError):
        run(Breaking(poisson_data, 0, InputError("bad header")), engine(poisson_data))


def test_stop_event_ends_the_run(poisson_data):
    stop = threading.Event()
    seen = []

    def progress(n):
        seen.append(n)
        stop.set()

    res = run(ArraySource(poisson_data), engine(poisson_data), chunk_size=8, progress=progress, stop=stop)
    assert res.interrupted and res.snapshot.n_patterns == 8
