"""The GUI fits a 1920×1080 screen: narrow image docks (display controls in a pop-up), the
phase docks tabbed under riCOM rather than beside it, and long texts that do not widen a
dock (pytest-qt, offscreen)."""
from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import pytest

pytest.importorskip("PySide6")
pytest.importorskip("pyqtgraph")
pytest.importorskip("pytestqt")

from PySide6 import QtCore, QtWidgets

SCREEN = (1920, 1080)
MAX_WINDOW = (1900, 1000)
"""The window's minimum size on a 1920×1080 monitor, with room for the desktop's title bar and panel."""
MAX_DOCK_WIDTH = 300


def _min_size(window) -> tuple[int, int]:
    QtWidgets.QApplication.processEvents()
    hint = window.minimumSizeHint()
    return hint.width(), hint.height()


def _switch_on(window, key: str) -> None:
    window.docks[key].toggleViewAction().trigger()  # as the View menu does
    QtWidgets.QApplication.processEvents()


def test_window_minimum_size_fits_a_full_hd_screen(window):
    width, height = _min_size(window)
    assert width <= MAX_WINDOW[0] and height <= MAX_WINDOW[1], (width, height)
    for key in ("tcbf", "ssb"):
        _switch_on(window, key)
    width, height = _min_size(window)
    assert width <= MAX_WINDOW[0] and height <= MAX_WINDOW[1], (width, height)
    window.docks["tcbf"].show()  # shown by a script, not the menu: the same bound
    assert _min_size(window)[0] <= MAX_WINDOW[0]
    window.resize(*MAX_WINDOW)
    QtWidgets.QApplication.processEvents()
    assert window.width() <= SCREEN[0] and window.height() <= SCREEN[1]


def test_every_image_dock_is_narrow(window):
    for key in ("tcbf", "ssb"):
        window.docks[key].show()
    QtWidgets.QApplication.processEvents()
    for key, dock in window.docks.items():
        assert dock.minimumSizeHint().width() <= MAX_DOCK_WIDTH, (key, dock.minimumSizeHint().width())


def test_phase_docks_come_as_tabs_under_ricom_without_widening(window):
    ricom, fft = window.docks["ricom"], window.docks["fft"]
    ricom_width = ricom.width()
    _switch_on(window, "tcbf")
    tcbf = window.docks["tcbf"]
    assert fft in window.tabifiedDockWidgets(tcbf)
    assert window.rect().contains(tcbf.geometry())  # in front of its tab group, inside the window
    assert not window.rect().contains(fft.geometry())  # FFT behind it, one click away
    assert tcbf.geometry().top() >= ricom.geometry().bottom()  # under riCOM, not beside it
    assert ricom.width() == ricom_width and ricom.isVisible()
    assert tcbf.height() >= 0.8 * ricom.height()  # the slot got about half of the column
    _switch_on(window, "ssb")
    ssb = window.docks["ssb"]
    assert window.rect().contains(ssb.geometry()) and not window.rect().contains(tcbf.geometry())
    assert ricom.width() == ricom_width
    assert not tcbf.isHidden() and not ssb.isHidden()  # both computed by the next run (methods_from)


def test_display_popup_holds_every_display_control(window):
    view = window.panels["com_x"].view
    for w in (view.low, view.high, view.symmetric, view.gamma, view.show_scale, view.show_colours):
        assert view.display_panel.isAncestorOf(w)
        assert not w.isHidden()
    assert view.tools.indexOf(view.colormap) >= 0 and view.tools.indexOf(view.save_button) >= 0  # one click away
    assert "0.5–99.5 %, symmetric" in view.display_button.toolTip()
    view.high.setValue(90.0)
    view.gamma.setValue(0.5)
    view.show_colours.setChecked(True)
    tip = view.display_button.toolTip()
    assert "0.5–90 %" in tip and "gamma 0.50" in tip and "colour bar" in tip and "scale bar" not in tip
    efield = window.panels["efield"].view  # no lower limit, no ±, no colour map: the tooltip says so
    assert efield.low.isHidden() and efield.symmetric.isHidden() and efield.colormap.isHidden()
    assert "contrast up to 99.5 %" in efield.display_button.toolTip()


def test_long_texts_do_not_widen_the_docks(window):
    tcbf, ssb = window.panels["tcbf"], window.panels["ssb"]
    for key in ("tcbf", "ssb"):
        window.docks[key].show()
    long = "tcBF defocus 97.3 ± 0.086 Å, astigmatism 0.0 ± 0.086 Å at 142°, rotation -0.0 ± 0.051° (3 fits)"
    tcbf.status.setText(long)
    tcbf.describe({"tcbf_summary": long, "tcbf_defocus_A": -12345.6})
    window.panels["ricom"].view.readout.setText("x 1234, y 5678: -1.2345e-05 V·Å " * 3)
    QtWidgets.QApplication.processEvents()
    assert tcbf.status.text() == long and tcbf.status.toolTip() == long  # whole text kept, elided on screen
    assert window.docks["tcbf"].windowTitle() == "tcBF — defocus -12345.6 Å"
    for key in ("tcbf", "ricom"):
        assert window.docks[key].minimumSizeHint().width() <= MAX_DOCK_WIDTH
    assert ssb.status.minimumSizeHint().width() == 0


def test_phase_settings_enable_only_what_applies(window):
    tcbf, ssb = window.panels["tcbf"], window.panels["ssb"]
    assert not tcbf.defocus.isEnabled() and tcbf.keywords() == {"tcbf_fit": "auto"}
    tcbf.fit.setCurrentText("given")
    tcbf.defocus.setValue(50.0)
    assert tcbf.defocus.isEnabled() and tcbf.keywords() == {"tcbf_fit": "given", "defocus_A": 50.0}
    ssb.defocus.setValue(30.0)
    assert ssb.defocus.isEnabled() and ssb.keywords()["defocus_A"] == 30.0
    ssb.use_fit.setChecked(True)
    assert not ssb.defocus.isEnabled() and "defocus_A" not in ssb.keywords()
    rows = {tcbf.grid.getItemPosition(tcbf.grid.indexOf(w))[0] for w in (tcbf.fit, tcbf.defocus)}
    assert rows == {0}  # tcBF's two settings on one row, SSB's on two
    assert ssb.grid.getItemPosition(ssb.grid.indexOf(ssb.defocus))[0] == 1


def test_settings_column_needs_no_horizontal_scrolling(window):
    scroll = window.settings_scroll
    QtWidgets.QApplication.processEvents()
    assert scroll.widget().width() >= scroll.widget().minimumSizeHint().width()
    assert scroll.horizontalScrollBar().maximum() == 0
    assert scroll.horizontalScrollBarPolicy() == QtCore.Qt.ScrollBarAsNeeded
