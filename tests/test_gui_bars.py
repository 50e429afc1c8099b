"""The image panels' scale bar and colour bar, and the cursor read-out that clears when the
cursor leaves (pytest-qt, offscreen)."""
from __future__ import annotations

import types

import numpy as np
import pytest

pytest.importorskip("PySide6")
pytest.importorskip("pyqtgraph")
pytest.importorskip("pytestqt")

from PySide6 import QtCore, QtWidgets

from ricom.gui.imageview import ImageView


@pytest.fixture
def view(qtbot):
    v = ImageView("gray")
    v.resize(420, 360)
    qtbot.addWidget(v)
    v.show()
    qtbot.waitExposed(v)
    return v


def _white_pixels(view, region) -> int:
    """White pixels of the view's rendering inside ``region`` (a QRectF in image coordinates)."""
    QtWidgets.QApplication.processEvents()
    img = view.graphics.grab().toImage()
    scene = view.view.mapViewToScene(region).boundingRect()
    top_left = view.graphics.mapFromScene(scene.topLeft())
    bottom_right = view.graphics.mapFromScene(scene.bottomRight())
    count = 0
    for y in range(max(top_left.y(), 0), min(bottom_right.y(), img.height())):
        for x in range(max(top_left.x(), 0), min(bottom_right.x(), img.width())):
            c = img.pixelColor(x, y)
            count += c.red() > 240 and c.green() > 240 and c.blue() > 240
    return count


def test_scale_bar_has_the_round_length_and_is_drawn(view):
    h, w, step = 40, 50, 0.2
    view.set_image(np.zeros((h, w)), "V·Å", step_A=step)
    assert view.bar is None and not view.scale_rect.isVisible()  # off until asked for
    lower_left = QtCore.QRectF(0, h * 0.85, w * 0.5, h * 0.15)
    before = _white_pixels(view, lower_left)
    view.show_scale.setChecked(True)
    # longest of 1, 2, 5 × 10ⁿ Å within a quarter of the 10 Å wide image: 2 Å = 10 px
    assert view.bar.length_A == 2.0 and view.bar.label == "2 Å"
    assert view.scale_rect.isVisible() and view.scale_rect.rect().width() == pytest.approx(10.0)
    assert view.scale_text.toPlainText() == "2 Å"
    assert _white_pixels(view, lower_left) > before + 20
    view.set_image(np.zeros((h, w)), "V·Å", step_A=None)  # uncalibrated: no bar
    assert view.bar is None and not view.scale_rect.isVisible()
    view.set_image(np.zeros((h, w)), "V·Å", step_A=1.0)
    assert view.bar.length_A == 10.0 and view.bar.label == "1 nm"
    view.show_scale.setChecked(False)
    assert not view.scale_rect.isVisible()


def test_colour_bar_follows_the_contrast_and_names_the_unit(view):
    data = np.linspace(-3.0, 5.0, 30 * 20).reshape(30, 20)
    view.set_image(data, "mrad")
    assert view.colorbar.scene() is None  # not shown
    view.show_colours.setChecked(True)
    assert view.colorbar.scene() is view.graphics.scene()
    assert view.colorbar.levels() == pytest.approx(view.levels)
    assert view.colorbar.getAxis("left").labelText == "mrad"
    view.high.setValue(90.0)
    assert view.colorbar.levels() == pytest.approx(view.levels)
    assert view.levels[1] == pytest.approx(np.percentile(data.astype(np.float32), 90.0), rel=1e-4)
    view.set_image(data, "mrad", rgb=np.zeros((30, 20, 3), np.uint8))  # a colour-wheel image has no colour bar
    assert view.colorbar.scene() is None
    view.set_image(data, "V·Å")
    assert view.colorbar.scene() is not None and view.colorbar.getAxis("left").labelText == "V·Å"
    view.show_colours.setChecked(False)
    assert view.colorbar.scene() is None


def test_bars_are_part_of_the_display_state(qtbot, view):
    view.show_scale.setChecked(True)
    view.show_colours.setChecked(True)
    state = view.display_state()
    assert state["scale_bar"] and state["colour_bar"]
    other = ImageView("gray")
    qtbot.addWidget(other)
    other.set_display_state(state)
    assert other.show_scale.isChecked() and other.show_colours.isChecked()


def test_cursor_readout_clears_when_the_cursor_leaves(view):
    data = np.arange(12.0 * 16).reshape(12, 16)
    view.set_image(data, "counts")
    QtWidgets.QApplication.processEvents()
    inside = view.view.mapViewToScene(QtCore.QPointF(5.5, 3.5))
    view.graphics.scene().sigMouseMoved.emit(inside)
    assert view.readout.text() == f"x 5, y 3: {data[3, 5]:.5g} counts"
    QtWidgets.QApplication.sendEvent(view.graphics.viewport(), QtCore.QEvent(QtCore.QEvent.Type.Leave))
    assert view.readout.text().strip() == ""
    view.graphics.scene().sigMouseMoved.emit(inside)
    assert view.readout.text().startswith("x 5, y 3")
    outside = view.view.mapViewToScene(QtCore.QPointF(40.0, 3.5))  # right of the image
    view.graphics.scene().sigMouseMoved.emit(outside)
    assert view.readout.text().strip() == ""
    view.graphics.scene().sigMouseMoved.emit(inside)
    QtWidgets.QApplication.sendEvent(view.graphics, QtCore.QEvent(QtCore.QEvent.Type.Leave))
    assert view.readout.text().strip() == ""


def test_scan_panels_give_the_scan_step_to_the_scale_bar(qtbot, poisson_data):
    import ricom
    from ricom.gui.panels import EFieldPanel, FFTPanel, SignalPanel, VirtualPanel

    snap = ricom.reconstruct(poisson_data, kernel_size=3, center_yx=(7.5, 7.5), step_A=0.5)
    live = types.SimpleNamespace(snapshot=snap)
    for panel in (SignalPanel("ricom", "riCOM", "ricom"), VirtualPanel(), EFieldPanel()):
        qtbot.addWidget(panel)
        panel.view.show_scale.setChecked(True)
        panel.refresh(live)
        assert panel.view.step_A == 0.5 and panel.view.bar.length_px == pytest.approx(panel.view.bar.length_A / 0.5)
    fft = FFTPanel()
    qtbot.addWidget(fft)
    fft.view.show_scale.setChecked(True)
    fft.refresh(live)
    assert fft.view.bar is None  # frequency space: no scan-space scale bar


def test_panel_tiffs_are_calibrated_for_scan_images_only(tmp_path, poisson_data):
    import tifffile

    import ricom
    from ricom.gui.files import save_panel

    snap = ricom.reconstruct(poisson_data, kernel_size=3, center_yx=(7.5, 7.5), step_A=0.25)
    save_panel(str(tmp_path / "ricom.tif"), "tif", ("ricom", snap.ricom, snap.unit("ricom")), snap=snap)
    save_panel(str(tmp_path / "fft.tif"), "tif", ("fft_ricom", np.ones((8, 9)), "log10 |F|"), snap=snap)
    efield = np.stack([snap.signal("efield_magnitude"), snap.signal("efield_direction")])
    save_panel(str(tmp_path / "efield.tif"), "tif", ("efield", efield, "magnitude, direction (rad)"), snap=snap)
    with tifffile.TiffFile(tmp_path / "ricom.tif") as tif:
        assert tif.pages[0].tags["XResolution"].value == (4, 1) and tif.imagej_metadata["unit"] == "\\u00c5"
    with tifffile.TiffFile(tmp_path / "fft.tif") as tif:  # frequency space: no length unit
        assert "unit" not in tif.imagej_metadata and tif.pages[0].tags["XResolution"].value == (1, 1)
    with tifffile.TiffFile(tmp_path / "efield.tif") as tif:
        assert tif.asarray().shape == (2, 8, 9) and tif.imagej_metadata["Labels"] == ["efield 0", "efield 1"]
        assert tif.pages[0].tags["XResolution"].value == (4, 1)
