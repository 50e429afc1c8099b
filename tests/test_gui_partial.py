"""The GUI's banner for a partial result: a scan that falls short, and a stopped run."""
from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import numpy as np
import pytest

pytest.importorskip("PySide6")
pytest.importorskip("pyqtgraph")
pytest.importorskip("pytestqt")

from ricom.sources.arrays import ArraySource
from ricom.sources.base import Source

WAIT_MS = 20_000


class ShortSource(Source):
    """The first ``n`` patterns of a 16×16 scan, then the end of the input (a truncated file)."""

    def __init__(self, n: int) -> None:
        data = np.random.default_rng(3).poisson(3.0, (16, 16, 16, 16)).astype(np.uint16)
        self.inner = ArraySource(data)
        self.scan_shape, self.detector_shape, self.n_frames = (16, 16), (16, 16), n

    def chunks(self, chunk_size: int = 256):
        done = 0
        for chunk in self.inner.chunks(64):
            if done >= self.n_frames:
                return
            done += len(chunk.positions)
            yield chunk


def test_a_scan_that_falls_short_shows_a_partial_banner(qtbot, window):
    w = window
    w.start_source(ShortSource(128))
    qtbot.waitUntil(lambda: w.worker is not None and w.worker.finished.is_set(), timeout=WAIT_MS)
    qtbot.waitUntil(lambda: w.message_bar.isVisible(), timeout=WAIT_MS)
    text = w.message_bar.text()
    assert text.startswith("⚠ partial result (128 patterns)") and "128 of 256 scan positions" in text
    assert w.state_label.text() == "incomplete" and not w.worker.result.complete


def test_a_whole_scan_shows_no_banner(qtbot, window):
    w = window
    w.start_source(ShortSource(256))
    qtbot.waitUntil(lambda: w.worker is not None and w.worker.finished.is_set(), timeout=WAIT_MS)
    qtbot.waitUntil(lambda: w.state_label.text() == "finished", timeout=WAIT_MS)
    assert not w.message_bar.isVisible() and w.worker.result.complete
