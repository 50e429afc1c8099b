"""The GUI's tcBF and SSB panels, offscreen: hidden until switched on, then computed on the
run's chunk stream, with the fitted defocus in the tcBF dock's title."""
from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import numpy as np
import pytest

pytest.importorskip("PySide6")
pytest.importorskip("pyqtgraph")
pytest.importorskip("pytestqt")

from ricom.simulators.specimen import SimulationParams, simulate
from ricom.sources.arrays import ArraySource

WAIT_MS = 30_000


def test_phase_panels_show_tcbf_ssb_and_the_fitted_defocus(qtbot, window):
    w = window
    assert w.docks["tcbf"].isHidden() and w.docks["ssb"].isHidden()  # off until switched on
    sim = simulate(SimulationParams(scan_shape=(24, 24), detector_shape=(32, 32), defocus_A=100.0))
    source = ArraySource(sim.data)
    source._hints = {"step_A": 0.2, "pixel_size_mrad": sim.pixel_size_mrad, "energy_keV": 300.0,
                     "center_yx": sim.center_yx}
    w.docks["tcbf"].show()
    w.docks["ssb"].show()
    w.panels["ssb"].convergence.setValue(20.0)
    w.start_source(source)
    qtbot.waitUntil(lambda: w.state_label.text() == "finished", timeout=WAIT_MS)
    snap = w.rec.snapshot(fresh=False)
    assert {"tcbf", "ssb"} <= set(snap.extra)
    w.refresh(force=True)
    for key in ("tcbf", "ssb"):
        np.testing.assert_array_equal(w.panels[key].view.data, snap.extra[key])
    defocus = snap.metadata["tcbf_defocus_A"]
    assert abs(defocus - 100.0) < 5.0
    assert w.docks["tcbf"].windowTitle() == f"tcBF — defocus {defocus:.1f} Å"
    assert w.panels["tcbf"].status.text().startswith("tcBF defocus")
    assert "α 20.0 mrad" in w.panels["ssb"].status.text()
