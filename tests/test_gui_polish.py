"""GUI details a new user meets in the first hour (issue 20, part 6), driven offscreen with pytest-qt:
the radii and scan shape shown are the ones used, readable overlay labels inside the view, the
Hann-windowed FFT, the "calibration missing" hint with its Enter/Load buttons, and Help › About."""
from __future__ import annotations

import json
import math
import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import numpy as np
import pytest

pytest.importorskip("PySide6")
pytest.importorskip("pyqtgraph")
pytest.importorskip("pytestqt")

from ricom.core.errors import SettingsError
from ricom.simulators.specimen import SimulationParams, simulate
from ricom.sources.arrays import ArraySource

WAIT_MS = 20_000


@pytest.fixture(scope="module")
def wide_scan():
    """A 24 × 64 scan: not square, not the column's default 64 × 64."""
    return simulate(SimulationParams(scan_shape=(24, 64), detector_shape=(32, 32))).data


def _run_to_end(qtbot, w, data):
    w.start_source(ArraySource(data))
    qtbot.waitUntil(lambda: w.worker is not None and w.worker.finished.is_set() and w.rec is not None,
                    timeout=WAIT_MS)
    w.refresh(force=True)
    w._t_status = 0.0
    w.refresh(force=True)  # the status update (which shows what the engine uses) runs too


def test_radii_and_scan_shape_shown_are_those_the_engine_uses(qtbot, window, wide_scan):
    w = window
    assert w.column.scan_shape() == (64, 64) and w.column.r_in.value() == 8.0  # the defaults before a run
    _run_to_end(qtbot, w, wide_scan)
    assert w.rec.scan_shape == (24, 64)
    assert w.column.scan_shape() == (24, 64)  # the input's, not the column's default
    used = w.rec.ring_boundaries_px()["vadf"]
    assert used == w.rec.snapshot().virtual_radii_px["vadf"]
    assert used[0] != pytest.approx(8.0, abs=0.05)  # the BF disc of this data, not the default field value
    assert w.column.r_in.value() == pytest.approx(used[0], abs=0.005)
    assert w.column.r_out.value() == (0.0 if math.isinf(used[1]) else pytest.approx(used[1], abs=0.005))
    assert "∞" in w.column.r_out.text() if math.isinf(used[1]) else True
    assert not w.column.r_in.isEnabled()  # greyed: auto
    diff = w.panels["diffraction"]
    assert diff.inner_roi.size().x() / 2 == pytest.approx(used[0], abs=1e-6)  # the drawn ring is the same
    w.column.vd_mode.setCurrentIndex(1)  # manual starts from the radii in use
    radii = {vd.name: (vd.inner, vd.outer) for vd in w.column.settings().virtual_detectors}
    assert radii["vadf"][0] == pytest.approx(used[0], abs=0.005)


def test_the_scan_shape_override_keeps_the_column_value(qtbot, window, wide_scan):
    w = window
    w.column.set_scan_shape((12, 128))
    w.column.scan_override.setChecked(True)
    w.column.show_scan_shape_in_use((24, 64))
    assert w.column.scan_shape() == (12, 128)
    w.column.scan_override.setChecked(False)
    w.column.show_scan_shape_in_use((24, 64))
    assert w.column.scan_shape() == (24, 64)


def _hann_2d(ny, nx):
    """Independent Hann window: 0.5 − 0.5 cos(2πn/(N−1))."""
    wy = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(ny) / (ny - 1))
    wx = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(nx) / (nx - 1))
    return wy[:, None] * wx[None, :]


def test_fft_is_a_hann_windowed_log_spectrum_without_axis_streaks():
    from ricom.gui.panels import windowed_log_spectrum

    yy, xx = np.mgrid[:48, :40].astype(float)
    image = 3.0 * xx + 2.0 * yy + np.cos(2 * np.pi * (0.17 * xx + 0.23 * yy))  # a ramp: opposite edges differ
    image[5, 7] = np.nan
    centred = np.where(np.isfinite(image), image - np.nanmean(image), 0.0)
    expected_abs = np.abs(np.fft.fftshift(np.fft.fft2(centred * _hann_2d(48, 40))))
    got = windowed_log_spectrum(image)
    assert got.shape == (48, 40) and np.isfinite(got).all()
    assert np.allclose(10.0 ** got, expected_abs + expected_abs.max() * 1e-9, rtol=1e-9)

    def streak_ratio(spec):  # the ky = 0 and kx = 0 axes (away from the centre) against everything else
        cy, cx = 24, 20
        axes = np.zeros(spec.shape, bool)
        axes[cy, :] = axes[:, cx] = True
        axes[cy - 3:cy + 4, cx - 3:cx + 4] = False
        off = np.ones(spec.shape, bool)
        off[cy - 3:cy + 4, :] = off[:, cx - 3:cx + 4] = False
        return np.median(spec[axes]) / np.median(spec[off])

    plain = np.abs(np.fft.fftshift(np.fft.fft2(centred)))
    assert streak_ratio(plain) > 20  # the streaks the issue saw
    assert streak_ratio(10.0 ** got) < 0.2 * streak_ratio(plain)
    assert np.isfinite(windowed_log_spectrum(np.zeros((2, 5)))).all()  # short and empty images


def test_fft_panel_shows_the_windowed_spectrum_of_its_signal(qtbot, window, wide_scan):
    from ricom.gui.panels import windowed_log_spectrum

    w = window
    _run_to_end(qtbot, w, wide_scan)
    w.panels["fft"].choice.setCurrentText("icom")
    w.refresh(force=True)
    shown = w.panels["fft"].view.data
    assert np.allclose(shown, windowed_log_spectrum(w.rec.snapshot().signal("icom")))
    assert "Hann" in w.panels["fft"].view.unit


def _luminance(colour) -> float:
    return (0.2126 * colour.redF() + 0.7152 * colour.greenF() + 0.0722 * colour.blueF())


def _labels_fit(diff):
    view = diff.view.view.sceneBoundingRect()
    rects = [item.label().sceneBoundingRect() for item in (diff.centre_item, diff.com_item)]
    return all(view.contains(r) for r in rects) and not rects[0].intersects(rects[1]), rects


def test_overlay_labels_are_light_on_dark_and_stay_inside_the_view(qtbot, window, wide_scan):
    w = window
    _run_to_end(qtbot, w, wide_scan)
    diff = w.panels["diffraction"]
    qtbot.waitUntil(lambda: diff.centre_item.isVisible() and diff.com_item.isVisible(), timeout=WAIT_MS)
    for item in (diff.centre_item, diff.com_item):
        label = item.label()
        assert label.fill.color().alpha() >= 200 and _luminance(label.fill.color()) < 0.1
        assert _luminance(label.textItem.defaultTextColor()) > 0.4
        assert label.zValue() + item.zValue() > diff.inner_roi.zValue()  # drawn above the rings
    ok, rects = _labels_fit(diff)
    assert ok, rects
    (x0, x1), (y0, y1) = diff.view.view.viewRange()
    corners = [(x1 - 0.5, y0 + 0.5), (x0 + 0.5, y1 - 0.5), (x1 - 0.5, y1 - 0.5), (x0 + 0.5, y0 + 0.5)]
    for x, y in corners:  # markers at every corner of the view: the labels turn inwards
        diff._programmatic = True
        diff.centre_item.setPos(x, y)
        diff.com_item.setPos(x, y)
        diff._programmatic = False
        diff.place_labels()
        ok, rects = _labels_fit(diff)
        assert ok, ((x, y), rects)


def _calibration_shown(w):
    return not w.column.calibration_box.hint_row.isHidden(), not w.calibration_button.isHidden()


def test_calibration_missing_hint_enter_and_load(qtbot, window, tmp_path, monkeypatch):
    from PySide6 import QtWidgets

    w = window
    box = w.column.calibration_box
    sim = simulate(SimulationParams(scan_shape=(16, 16), detector_shape=(16, 16)))
    _run_to_end(qtbot, w, sim.data)  # an array carries no calibration
    assert w.rec.settings.calibration.step_A is None
    assert _calibration_shown(w) == (True, True)
    assert "calibration missing" in box.hint.text() and "V·Å" in box.hint.text()
    assert w.rec.snapshot().unit("ricom") != "V·Å"

    w.calibration_button.click()  # the status bar leads to the first empty field
    assert w.focusWidget() in (box.step, box.step.lineEdit())
    box.step.setValue(0.2)
    assert _calibration_shown(w) == (True, True) and "incomplete" in w.calibration_button.text()
    assert "pixel size or energy" in box.hint.text()
    box.enter_button.click()
    assert w.focusWidget() in (box.pixel_size, box.pixel_size.lineEdit())

    data = tmp_path / "scan.npy"  # Load… with a data file: its sidecar is read
    np.save(data, sim.data)
    (tmp_path / "scan.npy.ricom.json").write_text(json.dumps(
        {"calibration": {"step_A": 0.25, "pixel_size_mrad": sim.pixel_size_mrad, "energy_keV": 300.0}}))
    monkeypatch.setattr(QtWidgets.QFileDialog, "getOpenFileName", lambda *a, **k: (str(data), ""))
    box.load_button.click()
    cal = w.rec.settings.calibration
    assert (cal.step_A, cal.energy_keV) == (0.25, 300.0)
    assert cal.pixel_size_mrad == pytest.approx(sim.pixel_size_mrad, abs=1e-4)  # the field shows 4 decimals
    assert _calibration_shown(w) == (False, False)
    assert w.rec.snapshot().unit("ricom") == "V·Å"
    assert w.messages[-1] == f"calibration from {data}"

    (tmp_path / "nothing.json").write_text(json.dumps({"kernel": {"size": 5}}))
    monkeypatch.setattr(QtWidgets.QFileDialog, "getOpenFileName",
                        lambda *a, **k: (str(tmp_path / "nothing.json"), ""))
    box.load_button.click()
    assert "gives no calibration" in w.message_bar.text()
    assert w.rec.settings.calibration.step_A == 0.25  # unchanged


def test_load_calibration_reads_settings_files_sidecars_and_plain_keys(tmp_path):
    from ricom.core.params import Settings
    from ricom.gui import files

    files.save_settings(str(tmp_path / "s.json"), Settings().with_(
        calibration=Settings().calibration.filled_from({"step_A": 0.5, "energy_keV": 200.0})))
    assert files.load_calibration(str(tmp_path / "s.json")) == {"step_A": 0.5, "energy_keV": 200.0}
    (tmp_path / "flat.json").write_text(json.dumps({"pixel_size_mrad": 1.5}))
    assert files.load_calibration(str(tmp_path / "flat.json")) == {"pixel_size_mrad": 1.5}
    (tmp_path / "d.h5").write_bytes(b"")
    (tmp_path / "d.ricom.json").write_text(json.dumps({"calibration": {"step_A": 0.1}}))
    assert files.load_calibration(str(tmp_path / "d.h5")) == {"step_A": 0.1}  # <stem>.ricom.json
    (tmp_path / "d.h5.ricom.json").write_text(json.dumps({"calibration": {"step_A": 0.3}}))
    assert files.load_calibration(str(tmp_path / "d.h5")) == {"step_A": 0.3}  # <name>.ricom.json first
    (tmp_path / "neg.json").write_text(json.dumps({"calibration": {"step_A": -1}}))
    with pytest.raises(SettingsError, match="step_A"):
        files.load_calibration(str(tmp_path / "neg.json"))
    with pytest.raises(SettingsError, match="no calibration sidecar"):
        files.load_calibration(str(tmp_path / "other.mib"))


def test_help_about_lists_the_versions(qtbot, window):
    import platform

    import numba
    import pyqtgraph as pg
    import PySide6
    from PySide6 import QtCore

    import ricom

    w = window
    help_menu = next(a.menu() for a in w.menuBar().actions() if a.text() == "&Help")
    next(a for a in help_menu.actions() if a.text().startswith("About")).trigger()
    box = w.about_box
    qtbot.waitUntil(box.isVisible, timeout=5000)
    expected = {"ricom": ricom.__version__, "Python": platform.python_version(), "numba": numba.__version__,
                "Qt": QtCore.qVersion(), "PySide6": PySide6.__version__, "pyqtgraph": pg.__version__}
    for name, version in expected.items():
        assert box.versions[name].startswith(version), name
        assert f"{name}: {box.versions[name]}" in box.detailedText()
        assert version in box.text()
    box.close()
