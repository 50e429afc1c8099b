"""The live GUI, driven offscreen with pytest-qt: settings mid-scan, saving, broken inputs, screenshots."""
from __future__ import annotations

import json
import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import socket
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("PySide6")
pytest.importorskip("pyqtgraph")
pytest.importorskip("pytestqt")

from ricom.core.errors import InputError, SettingsError
from ricom.gui.simulator import LiveSimulatorSource
from ricom.simulators.specimen import SimulationParams, simulate
from ricom.sources.arrays import ArraySource
from ricom.sources.base import Source

SMALL = SimulationParams(scan_shape=(32, 32), detector_shape=(32, 32), dose_e_per_probe=None)
WAIT_MS = 20_000



def _pause_mid_scan(qtbot, w):
    """Pause at once: the engine stops after the first chunk (a quarter of a 32×32 scan)."""
    w.source_panel.pause_button.setChecked(True)
    qtbot.waitUntil(lambda: w.worker.paused and w.rec is not None, timeout=WAIT_MS)
    assert w.rec.n_patterns > 0


def _panel_shows_engine(w, key="ricom"):
    data = w.panels[key].view.data
    return data is not None and np.array_equal(data, w.rec.snapshot().ricom)


def test_kernel_size_and_rotation_change_the_ricom_panel_mid_scan(qtbot, window):
    w = window
    w.start_source(LiveSimulatorSource(SMALL, rate=1500))
    _pause_mid_scan(qtbot, w)
    assert 0 < w.rec.snapshot().progress < 1  # really mid-scan
    qtbot.waitUntil(lambda: _panel_shows_engine(w), timeout=WAIT_MS)
    before = w.panels["ricom"].view.data.copy()

    w.column.kernel_size.setValue(11)
    assert w.rec.settings.kernel.size == 11
    qtbot.waitUntil(lambda: _panel_shows_engine(w), timeout=2000)
    after_kernel = w.panels["ricom"].view.data.copy()
    assert not np.allclose(after_kernel, before)

    w.column.rotation.setValue(90.0)
    assert w.rec.settings.geometry.rotation_deg == 90.0
    qtbot.waitUntil(lambda: _panel_shows_engine(w), timeout=2000)
    assert not np.allclose(w.panels["ricom"].view.data, after_kernel)

    n = w.rec.n_patterns
    w.source_panel.pause_button.setChecked(False)
    qtbot.waitUntil(lambda: w.rec.n_patterns > n, timeout=WAIT_MS)
    assert w.rec.settings.kernel.size == 11 and w.rec.settings.geometry.rotation_deg == 90.0
    w.stop_run(wait=5.0)
    qtbot.waitUntil(lambda: w.state_label.text() == "stopped", timeout=WAIT_MS)


def test_simulator_controls_and_diffraction_drag_reach_the_source_and_engine(qtbot, window):
    w = window
    src = LiveSimulatorSource(SMALL, rate=2000)
    w.start_source(src)
    _pause_mid_scan(qtbot, w)
    w.source_panel.defocus.setValue(80.0)
    w.source_panel.rate.setValue(500.0)
    assert src.params.defocus_A == 80.0 and src.rate == 500.0
    diff = w.panels["diffraction"]
    qtbot.waitUntil(lambda: diff.pattern is not None and diff.centre_yx is not None, timeout=WAIT_MS)
    diff.centre_item.setPos(15.0 + 0.5, 14.0 + 0.5)
    diff.centre_item.sigPositionChangeFinished.emit(diff.centre_item)
    assert w.rec.settings.geometry.center_yx == pytest.approx((14.0, 15.0))
    assert w.column.centre_mode.currentIndex() == 1
    diff.radii_moved.emit(6.0, 14.0)
    radii = {vd.name: (vd.inner, vd.outer) for vd in w.rec.settings.virtual_detectors}
    assert radii["vadf"] == (6.0, 14.0) and radii["vbf"] == (0.0, 6.0)
    n = w.rec.n_patterns
    w.source_panel.pause_button.setChecked(False)  # new detectors apply from the next chunk
    qtbot.waitUntil(lambda: w.rec.n_patterns > n, timeout=WAIT_MS)
    assert w.rec.snapshot().virtual_radii_px["vadf"] == (6.0, 14.0)


def test_save_every_format_and_settings_round_trip(qtbot, window, tmp_path, monkeypatch):
    import h5py
    import pyqtgraph as pg
    import tifffile
    from PySide6 import QtGui

    w = window
    sim = simulate(SimulationParams(scan_shape=(16, 16), detector_shape=(16, 16)))
    w.column.kernel_size.setValue(15)
    w.column.step.setValue(0.2)
    w.column.pixel_size.setValue(sim.pixel_size_mrad)
    w.column.energy.setValue(300.0)
    w.start_source(ArraySource(sim.data))
    qtbot.waitUntil(lambda: w.worker is not None and w.worker.finished.is_set(), timeout=WAIT_MS)
    qtbot.waitUntil(lambda: _panel_shows_engine(w), timeout=WAIT_MS)

    w.save_panel("ricom", str(tmp_path / "ricom.tif"))
    with tifffile.TiffFile(tmp_path / "ricom.tif") as tif:
        img = tif.asarray()
        meta = json.loads(tif.imagej_metadata["Info"])  # ImageJ TIFF: the parameters in its Info
        assert tif.pages[0].tags["XResolution"].value == (5, 1)  # pixels per Å at a 0.2 Å step
    assert img.dtype == np.float32 and np.allclose(img, w.rec.snapshot().ricom, rtol=1e-6, atol=1e-6)
    assert meta["signal"] == "ricom" and meta["kernel_size"] == 15 and meta["step_A"] == pytest.approx(0.2)
    assert meta["unit"] == "V·Å"
    w.save_panel("ricom", str(tmp_path / "ricom.npy"))
    assert np.array_equal(np.load(tmp_path / "ricom.npy"), w.rec.snapshot().ricom)
    w.save_panel("ricom", str(tmp_path / "ricom.png"))
    png = QtGui.QImage(str(tmp_path / "ricom.png"))
    assert not png.isNull() and (png.height(), png.width()) == (16, 16)
    for key in ("efield", "diffraction", "virtual", "fft", "kernel"):
        w.save_panel(key, str(tmp_path / f"{key}.npy"))
    assert np.load(tmp_path / "efield.npy").shape == (2, 16, 16)
    assert np.load(tmp_path / "diffraction.npy").shape == (16, 16)

    from PySide6 import QtWidgets  # the same through the panel's Save menu and its file dialog

    monkeypatch.setattr(QtWidgets.QFileDialog, "getSaveFileName", lambda *a, **k: (str(tmp_path / "icom"), ""))
    next(a for a in w.panels["icom"].view.save_button.menu().actions() if a.text().startswith("TIFF")).trigger()
    assert (tmp_path / "icom.tif").exists() and w.messages[-1] == f"saved {tmp_path / 'icom.tif'}"

    names = w.save_all(str(tmp_path / "all.h5"))
    with h5py.File(tmp_path / "all.h5") as f:
        assert {"ricom", "icom", "com_x", "com_y", "divergence", "vadf", "vbf"} <= set(f)
        assert np.allclose(f["ricom"][()], w.rec.snapshot().ricom)
    assert "efield_direction" in names

    w.column.band_pass.setChecked(True)
    w.column.k_max.setValue(0.3)
    w.save_settings(str(tmp_path / "settings.json"))
    w.column.kernel_size.setValue(9)
    w.column.band_pass.setChecked(False)
    assert w.rec.settings.kernel.size == 9
    w.load_settings(str(tmp_path / "settings.json"))
    assert w.rec.settings.kernel.size == 15 and w.rec.settings.kernel.band_pass == (0.0, 0.3)
    assert w.column.kernel_size.value() == 15 and w.column.band_pass.isChecked()

    view = w.panels["ricom"].view  # the value under the cursor
    view._mouse_moved(view.view.mapViewToScene(pg.QtCore.QPointF(5.5, 3.5)))
    assert view.readout.text().startswith("x 5, y 3: ") and view.readout.text().endswith("V·Å")

    np.save(tmp_path / "reference.npy", sim.data)  # centre measured on a reference scan
    w.measure_reference(str(tmp_path / "reference.npy"))
    qtbot.waitUntil(lambda: w.column.centre_mode.currentIndex() == 2, timeout=WAIT_MS)
    assert w.rec.settings.geometry.center_yx == pytest.approx(w.column._reference_centre)

    (tmp_path / "bad.json").write_text("{not json")
    assert not w._guard(w.load_settings, str(tmp_path / "bad.json"))
    assert "not a JSON settings file" in w.message_bar.text()
    w.save_screenshot(str(tmp_path / "window.png"))
    assert QtGui.QImage(str(tmp_path / "window.png")).width() > 800


class BrokenSource(Source):
    """Delivers the first ``good`` chunks of an array, then fails like a dropped stream."""

    def __init__(self, data: np.ndarray, good: int) -> None:
        self.inner = ArraySource(data)
        self.scan_shape, self.detector_shape = self.inner.scan_shape, self.inner.detector_shape
        self.n_frames, self.good = self.inner.n_frames, good

    def chunks(self, chunk_size: int = 256):
        for i, chunk in enumerate(self.inner.chunks(64)):
            if i == self.good:
                raise InputError("the stream broke off mid-scan (test)")
            yield chunk


def test_a_broken_stream_shows_a_message_and_keeps_the_partial_image(qtbot, window):
    w = window
    data = simulate(SimulationParams(scan_shape=(16, 16), detector_shape=(16, 16))).data
    w.start_source(BrokenSource(data, good=2))
    qtbot.waitUntil(lambda: w.worker is not None and w.worker.finished.is_set(), timeout=WAIT_MS)
    qtbot.waitUntil(lambda: w.message_bar.isVisible(), timeout=WAIT_MS)
    assert "broke off mid-scan" in w.message_bar.text() and "partial images" in w.message_bar.text()
    assert w.rec.n_patterns == 128
    qtbot.waitUntil(lambda: _panel_shows_engine(w), timeout=WAIT_MS)
    assert np.abs(w.panels["ricom"].view.data).max() > 0
    assert w.state_label.text() == "broken off"
    w.column.kernel_size.setValue(7)  # the window still works on the partial result
    qtbot.waitUntil(lambda: _panel_shows_engine(w), timeout=2000)


def test_a_merlin_stream_that_drops_mid_scan_keeps_the_partial_image(qtbot, window):
    server_mod = pytest.importorskip("ricom.simulators.merlin.server")
    params = SimulationParams(scan_shape=(16, 16), detector_shape=(32, 32), dose_e_per_probe=1000)
    server = server_mod.MerlinServer(params, data_port=0, control_port=0, start_on="command",
                                     disconnect_after=100).start()
    try:
        w = window
        sp = w.source_panel
        sp.kind.setCurrentIndex(2)
        sp.data_port.setValue(server.data_port)
        sp.use_control.setChecked(True)  # the GUI starts the acquisition
        sp.control_port.setValue(server.control_port)
        w.start()
        qtbot.waitUntil(lambda: w.worker.finished.is_set() and w.message_bar.isVisible(), timeout=WAIT_MS)
        assert "closed after 100" in w.message_bar.text() and w.rec.n_patterns == 100
        qtbot.waitUntil(lambda: _panel_shows_engine(w), timeout=WAIT_MS)
    finally:
        server.stop()


def test_unreadable_file_and_refused_connection_give_messages(qtbot, window, tmp_path):
    w = window
    bad = tmp_path / "garbage.npy"
    bad.write_bytes(b"this is not a numpy file")
    w.source_panel.kind.setCurrentIndex(1)
    w.source_panel.path.setText(str(bad))
    start = next(a for a in w.menuBar().actions()[0].menu().actions() if a.text().startswith("Start"))
    start.trigger()  # File → Start
    qtbot.waitUntil(lambda: w.message_bar.isVisible(), timeout=WAIT_MS)
    assert w.state_label.text() == "failed"
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    w.clear_message()
    w.source_panel.kind.setCurrentIndex(2)
    w.source_panel.data_port.setValue(port)
    w.start()
    qtbot.waitUntil(lambda: w.message_bar.isVisible(), timeout=WAIT_MS)
    assert "connect" in w.message_bar.text().lower()
    w.column.kernel_size.setValue(4)  # even: snapped to 5, no error
    assert w.column.kernel_size.value() == 5


def test_layout_and_display_settings_are_remembered(qtbot, tmp_path, monkeypatch):
    from PySide6 import QtCore

    from ricom.gui import layout
    from ricom.gui.window import MainWindow

    for fmt in (QtCore.QSettings.NativeFormat, QtCore.QSettings.IniFormat):  # not the user's settings
        QtCore.QSettings.setPath(fmt, QtCore.QSettings.UserScope, str(tmp_path))
    monkeypatch.setattr(layout, "SETTINGS_APP", "gui-test")
    first = MainWindow(remember_layout=True)
    qtbot.addWidget(first)
    first.show()
    first.docks["fft"].hide()
    first.panels["ricom"].view.colormap.setCurrentText("magma")
    first.close()
    second = MainWindow(remember_layout=True)
    qtbot.addWidget(second)
    second.show()
    assert not second.docks["fft"].isVisible() and second.docks["ricom"].isVisible()
    assert second.panels["ricom"].view.colormap.currentText() == "magma"
    second.reset_layout()
    assert second.docks["fft"].isVisible()
    second.remember_layout = False
    second.close()


def test_live_simulator_loops_passes_and_applies_new_parameters():
    src = LiveSimulatorSource(SimulationParams(scan_shape=(4, 6), detector_shape=(16, 16)), rate=None, passes=3)
    seen = []
    for chunk in src.chunks(12):
        seen.append((chunk.positions.copy(), chunk.scan_pass.copy(), chunk.frames.copy()))
        if len(seen) == 1:
            src.set_params(defocus_A=200.0)
    passes = np.concatenate([s[1] for s in seen])
    assert set(passes.tolist()) == {0, 1, 2} and src.params.defocus_A == 200.0
    last = np.concatenate([s[0] for s in seen if s[1][0] == 2])
    assert sorted(last.tolist()) == list(range(24))
    with pytest.raises(SettingsError):
        src.set_params(scan_shape=(8, 8))


def test_screenshot_command_writes_a_png_of_the_window(tmp_path):
    from PySide6 import QtGui

    out = tmp_path / "shot.png"
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
    proc = subprocess.run([sys.executable, "-m", "ricom", "gui", "--source", "demo", "--screenshot", str(out),
                           "--exit-after", "4"], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    raw = out.read_bytes()
    assert raw[:8] == b"\x89PNG\r\n\x1a\n" and len(raw) > 50_000
    img = QtGui.QImage(str(out))
    assert img.width() >= 1200 and img.height() >= 700
    arr = np.frombuffer(img.convertToFormat(QtGui.QImage.Format_Grayscale8).constBits(), np.uint8)
    assert arr.std() > 20  # not a blank window


def test_guess_button_finds_the_rotation_of_rotated_patterns(qtbot, window):
    w = window
    rotated = simulate(SimulationParams(scan_shape=(24, 24), detector_shape=(32, 32), rotation_deg=35.0, flip=True))
    w.start_source(ArraySource(rotated.data))
    qtbot.waitUntil(lambda: w.worker is not None and not w.worker.running and w.rec is not None, timeout=WAIT_MS)
    w.column.guess_button.click()
    g = w.rec.settings.geometry
    assert abs((g.rotation_deg - 35.0 + 180) % 360 - 180) < 1.0 and g.flip
    assert w.column.rotation.value() == pytest.approx(g.rotation_deg, abs=0.01) and w.column.flip.isChecked()
    qtbot.waitUntil(lambda: _panel_shows_engine(w), timeout=WAIT_MS)


def test_guess_button_refuses_noise(qtbot, window):
    w = window
    noise = np.random.default_rng(0).poisson(5.0, (16, 16, 32, 32)).astype(np.uint16)
    w.start_source(ArraySource(noise))
    qtbot.waitUntil(lambda: w.worker is not None and not w.worker.running and w.rec is not None, timeout=WAIT_MS)
    before = w.rec.settings.geometry
    w.column.guess_button.click()
    assert w.rec.settings.geometry == before
    assert "cannot determine" in w.messages[-1]
