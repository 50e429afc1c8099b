"""The GUI runs a Timepix3 live session: raw packets (listening or connecting) and ASI's stream.

Offscreen with pytest-qt.  The camera server is ricom's own raw simulator
(`ricom.simulators.timepix.raw.RawSimulator`, serving a `demo_tpx3` file) or ASI
simulator (`ricom.simulators.timepix.asi.AsiServer`) over loopback; each image is compared
with the reconstruction of the same events read from the file (or dense array) with the
settings the GUI used.  Every wait is bounded and every server closed in ``finally``.
"""
from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import re

import numpy as np
import pytest

pytest.importorskip("PySide6")
pytest.importorskip("pyqtgraph")
pytest.importorskip("pytestqt")

import ricom
from ricom.api import open_input
from ricom.gui.source_panel import KINDS
from ricom.gui.timepix_page import ASI_PORT, RAW_PORT
from ricom.simulators.timepix.asi import AsiServer
from ricom.simulators.timepix.raw import RawSimulator, demo_tpx3

WAIT_MS = 15_000
SCAN = (16, 16)
SCREENSHOT = os.environ.get("RICOM_GUI_SCREENSHOT")  # a PNG path: save the window of the first test


@pytest.fixture(scope="module")
def tpx3(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("tpx3") / "scan.tpx3")
    demo_tpx3(path, SCAN, (32, 32), dose=50, sync="line")
    return path


def _choose_timepix(w, *, protocol="raw", listen=True, port=0, host="127.0.0.1", scans=1, sync="line"):
    sp = w.source_panel
    sp.kind.setCurrentIndex(KINDS.index("timepix3"))
    page = sp.timepix
    page.protocol.setCurrentIndex(page.protocol.findData(protocol))
    page.listen.setChecked(listen)
    page.host.setText(host)
    page.port.setValue(port)
    page.acquisitions.setValue(scans)
    page.sync.setCurrentIndex(page.sync.findData(sync))
    w.column.kernel_size.setValue(7)
    w.column.set_scan_shape(SCAN)
    return page


def _listening_port(qtbot, w) -> int:
    """The port the GUI listens on (asked for port 0: any free one)."""
    qtbot.waitUntil(lambda: w.worker.stream is not None and w.worker.stream.connection is not None, timeout=WAIT_MS)
    return w.worker.stream.connection.port


def _same(snap, ref):
    assert np.corrcoef(ref.ricom.ravel(), snap.ricom.ravel())[0, 1] >= 0.9999
    np.testing.assert_array_equal(ref.counts, snap.counts)


def _file(path, settings, **options):
    return ricom.reconstruct(open_input(path, **options), settings=settings)


def test_raw_stream_to_the_listening_gui_equals_the_file_and_shows_events_per_s(qtbot, window, tpx3):
    w = window
    _choose_timepix(w)
    w.start()
    assert w.sessions.dock.isVisible() and w.worker.request.live_session
    port = _listening_port(qtbot, w)
    sim = RawSimulator(tpx3, host="127.0.0.1", port=port, connect=True, scans=1, rate=4e4).start()
    rates = []
    try:
        def seen_rate():
            m = re.match(r"([\d,]+) events/s", w.rate_label.text())
            if m and int(m.group(1).replace(",", "")) > 0:
                rates.append(w.rate_label.text())
            return bool(rates)

        qtbot.waitUntil(seen_rate, timeout=WAIT_MS)  # while receiving
        qtbot.waitUntil(lambda: w.sessions.list.count() == 1, timeout=WAIT_MS)
        qtbot.waitUntil(lambda: w.worker.finished.is_set(), timeout=WAIT_MS)
    finally:
        sim.close()
    assert w.worker.error is None, w.worker.error
    assert w.sessions.list.item(0).text().startswith(f"#1  finished, {SCAN[0] * SCAN[1]}")
    _same(w.rec.snapshot(), _file(tpx3, w.rec.settings))
    snap = w.rec.snapshot()
    expected = snap.counts.sum() / (snap.hits > 0).sum()

    def final_dose_shown():  # the label follows the window's refresh: wait for the finished scan's value
        text = w.dose_label.text()
        return "events/position" in text and float(text.split()[1].replace(",", "")) == pytest.approx(expected,
                                                                                                      rel=1e-2)

    qtbot.waitUntil(final_dose_shown, timeout=WAIT_MS)
    qtbot.waitUntil(lambda: w.state_label.text() == "finished", timeout=WAIT_MS)
    if SCREENSHOT:
        w.grab().save(SCREENSHOT)


def test_the_gui_connects_to_the_server_with_pixel_sync(qtbot, window, tmp_path):
    path = str(tmp_path / "pixel.tpx3")
    demo_tpx3(path, SCAN, (32, 32), dose=50, sync="pixel")
    sim = RawSimulator(path, scans=0)
    try:
        w = window
        _choose_timepix(w, listen=False, port=sim.port, sync="pixel")
        sim.start()
        w.start()
        qtbot.waitUntil(lambda: w.worker.finished.is_set(), timeout=WAIT_MS)
    finally:
        sim.close()
    assert w.worker.error is None, w.worker.error
    assert w.worker.tap.describe()["sync"] == "pixel"
    _same(w.rec.snapshot(), _file(path, w.rec.settings))


@pytest.mark.filterwarnings("ignore:.*acceptance 300 ns of a 1000 ns dwell kept:UserWarning")
def test_acceptance_time_rebuilds_the_scan_being_received(qtbot, window, tpx3):
    """Moving the acceptance time while a scan arrives rebuilds it from the kept events: the
    scan ends as the file read with that acceptance time; the next scan starts with it."""
    w = window
    page = _choose_timepix(w, scans=2)
    w.start()
    port = _listening_port(qtbot, w)
    first = RawSimulator(tpx3, host="127.0.0.1", port=port, connect=True, scans=1, rate=2e4).start()
    try:
        qtbot.waitUntil(lambda: w.worker.rec is not None and w.worker.rec.n_events > 0, timeout=WAIT_MS)
        page.acceptance.setValue(300)  # while the scan is being received
        assert page.acceptance_slider.value() == 300
        qtbot.waitUntil(lambda: w.sessions.list.count() == 1, timeout=WAIT_MS)
    finally:
        first.close()
    w.worker.acceptance.wait()
    qtbot.waitUntil(lambda: any("the latest scan was rebuilt" in m for m in w.messages), timeout=WAIT_MS)
    one = w.sessions.acquisitions[0]
    full = _file(tpx3, one.reconstruction.settings)
    lowered = _file(tpx3, one.reconstruction.settings, acceptance_ns=300)
    assert 0 < lowered.counts.sum() < 0.5 * full.counts.sum()
    _same(one.reconstruction.snapshot(), lowered)
    second = RawSimulator(tpx3, host="127.0.0.1", port=port, connect=True, scans=1).start()
    try:
        qtbot.waitUntil(lambda: w.worker.finished.is_set(), timeout=WAIT_MS)
    finally:
        second.close()
    assert w.worker.error is None, w.worker.error
    qtbot.waitUntil(lambda: w.sessions.list.count() == 2, timeout=WAIT_MS)
    two = w.sessions.acquisitions[1]
    assert two.reconstruction.acceptance_ns == 300 and one.reconstruction.event_store is None
    _same(two.result.snapshot, lowered)


@pytest.fixture(scope="module")
def counts():
    rng = np.random.default_rng(5)
    yy, xx = np.indices((16, 16))
    iy, ix = np.indices((6, 7))
    cy = 7.5 + 1.5 * np.sin(ix / 2.0)[..., None, None]
    cx = 7.5 + 1.5 * np.cos(iy / 3.0)[..., None, None]
    return rng.poisson(3.0 * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 12.0) + 0.05).astype(np.uint16)


def test_asi_stream_two_scans(qtbot, window, counts):
    w = window
    with AsiServer(counts, scans=2, frames_per_chunk=5, rate_hz=2000) as server:
        page = _choose_timepix(w, protocol="asi", port=server.port, scans=2)
        assert not page.raw_box.isEnabled() and not page.listen.isEnabled() and page.host.isEnabled()
        w.start()
        qtbot.waitUntil(lambda: w.worker.finished.is_set(), timeout=WAIT_MS)
    assert w.worker.error is None, w.worker.error
    qtbot.waitUntil(lambda: w.sessions.list.count() == 2, timeout=WAIT_MS)
    for acq in w.sessions.acquisitions:
        assert acq.complete, acq.reason
        ref = ricom.reconstruct(counts, settings=acq.reconstruction.settings)
        np.testing.assert_allclose(acq.result.snapshot.ricom, ref.ricom, rtol=1e-5,
                                   atol=1e-6 * np.abs(ref.ricom).max())


def test_bad_hosts_are_messages_not_tracebacks(qtbot, window):
    w = window
    for protocol, text in (("raw", "cannot connect to the Timepix3 raw stream no-such-host.invalid"),
                           ("asi", "cannot connect to the ASI sparse stream")):
        _choose_timepix(w, protocol=protocol, listen=False, host="no-such-host.invalid", port=1)
        w.start()
        qtbot.waitUntil(lambda: w.worker.finished.is_set(), timeout=WAIT_MS)
        qtbot.waitUntil(lambda: w.state_label.text() == "failed", timeout=WAIT_MS)
        assert text in w.worker.error, w.worker.error
        assert w.message_bar.text() == f"⚠ {w.worker.error}" and "Traceback" not in w.message_bar.text()
        assert not w.source_panel.stop_button.isEnabled() and w.source_panel.kind.isEnabled()
    _choose_timepix(w, listen=False, host="")
    w.start()
    qtbot.waitUntil(lambda: w.worker.finished.is_set(), timeout=WAIT_MS)
    assert "host" in w.worker.error


def test_the_page_round_trips_and_ports_follow_the_protocol(window):
    sp = window.source_panel
    sp.kind.setCurrentIndex(KINDS.index("timepix3"))
    page = sp.timepix
    assert page.port.value() == RAW_PORT and not page.host.isEnabled()  # listening: no host
    page.protocol.setCurrentIndex(page.protocol.findData("asi"))
    assert page.port.value() == ASI_PORT and page.host.isEnabled()
    page.protocol.setCurrentIndex(page.protocol.findData("raw"))
    assert page.port.value() == RAW_PORT
    page.listen.setChecked(False)
    page.sync.setCurrentIndex(page.sync.findData("pixel"))
    page.dwell.setValue(500)
    page.acceptance_slider.setValue(250)
    assert page.acceptance.value() == 250
    req = sp.request()
    t = req.timepix
    assert req.kind == "timepix3" and req.live_session and (t.listen, t.sync, t.dwell_ns) == (False, "pixel", 500)
    assert t.source_options() == {"sync": "pixel", "dwell_ns": 500.0, "acceptance_ns": 250.0}
    sp.set_request(req)
    assert sp.request() == req


def test_command_line_timepix3_request():
    import argparse

    from ricom.cli import gui as cli_gui

    p = argparse.ArgumentParser()
    cli_gui.add_arguments(p)
    raw = cli_gui._request(p.parse_args(["--timepix3", "raw:8451"]))
    assert (raw.kind, raw.timepix.protocol, raw.timepix.listen, raw.timepix.port) == ("timepix3", "raw", True, 8451)
    conn = cli_gui._request(p.parse_args(["--timepix3", "raw:serval-pc:8452"]))
    assert (conn.host, conn.timepix.listen, conn.timepix.port) == ("serval-pc", False, 8452)
    asi = cli_gui._request(p.parse_args(["--timepix3", "asi:cam"]))
    assert (asi.host, asi.timepix.protocol, asi.timepix.port) == ("cam", "asi", 8283)
