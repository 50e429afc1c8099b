"""The GUI runs a Merlin live session: acquisitions listed as they finish, one selected shown.

Offscreen with pytest-qt, against the project's Merlin simulator over loopback (port 0:
a free port); every wait is bounded and the server is stopped in ``finally``.
"""
from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import numpy as np
import pytest

pytest.importorskip("PySide6")
pytest.importorskip("pyqtgraph")
pytest.importorskip("pytestqt")

from ricom.simulators.merlin.server import MerlinServer
from test_merlin_live import SCAN, frames_for

WAIT_MS = 20_000



def test_a_passive_session_lists_two_acquisitions_and_shows_the_one_selected(qtbot, window):
    server = MerlinServer(frames_for(12), scan_shape=SCAN, data_port=0, control_port=None, start_on="connect",
                          acquisitions=2, between_s=0.1).start()
    try:
        w = window
        sp = w.source_panel
        sp.kind.setCurrentIndex(2)  # Merlin live stream
        sp.data_port.setValue(server.data_port)
        sp.acquisitions.setValue(2)
        w.column.kernel_size.setValue(5)
        w.start()
        assert w.sessions.dock.isVisible() and not sp.pause_button.isEnabled()
        qtbot.waitUntil(lambda: w.sessions.list.count() == 2, timeout=WAIT_MS)
        qtbot.waitUntil(lambda: w.worker.finished.is_set(), timeout=WAIT_MS)
        assert w.worker.error is None
        texts = [w.sessions.list.item(i).text() for i in range(2)]
        assert texts[0].startswith("#1  finished, 72") and texts[1].startswith("#2  finished, 72")
        assert w.rec is w.sessions.acquisitions[1].reconstruction  # following: the newest
        qtbot.waitUntil(lambda: w.state_label.text() == "finished", timeout=WAIT_MS)

        w.sessions.list.setCurrentRow(0)  # a frozen view of the first
        first = w.sessions.acquisitions[0]
        assert not w.sessions.follow.isChecked() and w.rec is first.reconstruction
        snap = w.rec.snapshot()
        assert snap.n_patterns == 72 and first.result.snapshot.n_patterns == 72
        qtbot.waitUntil(lambda: w.panels["ricom"].view.data is not None
                        and np.array_equal(w.panels["ricom"].view.data, snap.ricom), timeout=WAIT_MS)
        w.sessions.follow.setChecked(True)  # back to the newest
        assert w.rec is w.sessions.acquisitions[1].reconstruction
    finally:
        server.stop()


def test_stop_ends_a_session_that_waits_for_acquisitions(qtbot, window):
    server = MerlinServer(frames_for(12), scan_shape=SCAN, data_port=0, control_port=None, start_on="connect",
                          acquisitions=1, between_s=0.1).start()
    try:
        w = window
        w.source_panel.kind.setCurrentIndex(2)
        w.source_panel.data_port.setValue(server.data_port)  # acquisitions: until stopped
        w.start()
        qtbot.waitUntil(lambda: w.sessions.list.count() == 1, timeout=WAIT_MS)
        qtbot.waitUntil(lambda: "waiting" in w.state_label.text(), timeout=WAIT_MS)
        w.stop_run(wait=5.0)
        qtbot.waitUntil(lambda: w.worker.finished.is_set(), timeout=WAIT_MS)
        qtbot.waitUntil(lambda: w.state_label.text() == "stopped", timeout=WAIT_MS)
        assert w.sessions.list.count() == 1 and w.worker.error is None
    finally:
        server.stop()
