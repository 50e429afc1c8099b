"""The GUI's coverage note: the share of scan positions that received a pattern (sparse scans)."""
from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import numpy as np
import pytest

pytest.importorskip("PySide6")
pytest.importorskip("pyqtgraph")
pytest.importorskip("pytestqt")

from ricom.sources import open_input


def test_status_shows_the_coverage_of_a_sparse_scan(qtbot, window):
    scan = (7, 9)
    rng = np.random.default_rng(3)
    order = rng.permutation(63)[:42]  # two thirds of the positions, in a random order
    frames = rng.poisson(5.0, (42, 16, 16)).astype(np.uint16)
    window.start_source(open_input(frames, scan_shape=scan, scan_positions=order))
    qtbot.waitUntil(lambda: window.worker is not None and window.worker.finished.is_set(), timeout=20_000)
    qtbot.waitUntil(lambda: "coverage 67 %" in window.dose_label.text(), timeout=20_000)
    assert int((window.rec.snapshot().hits > 0).sum()) == 42
