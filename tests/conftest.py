"""Shared test fixtures: the quick SrTiO3 dataset and small synthetic data."""
from __future__ import annotations

import json
import os
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(__file__))
# The GUI tests draw off screen and figures go to files, whether or not a display is attached.
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("MPLBACKEND", "Agg")

SHARED = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "shared"))
QUICK = os.path.join(SHARED, "data", "quick_srtio3")


@pytest.fixture(scope="session")
def quick_params():
    path = os.path.join(QUICK, "params.json")
    if not os.path.exists(path):
        pytest.skip("../shared/data/quick_srtio3 is not present")
    with open(path) as fh:
        return json.load(fh)


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


@pytest.fixture
def poisson_data(rng):
    """A small random 4D dataset (8×9 scan, 16×16 uint16 patterns) with structure."""
    base = rng.random((16, 16)) + 1
    return rng.poisson(base * rng.uniform(5, 20, (8, 9, 1, 1))).astype(np.uint16)


@pytest.fixture
def window(qtbot):
    """The GUI's main window, shown offscreen (needs the gui extra and pytest-qt)."""
    from ricom.gui.window import MainWindow

    w = MainWindow(remember_layout=False)
    qtbot.addWidget(w)
    w.show()
    qtbot.waitExposed(w)
    yield w
    w.close()
