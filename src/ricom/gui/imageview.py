"""One image on screen: colour map, percentile contrast, gamma, zoom/pan, value under the cursor.

Owns `ImageView`, the widget every image panel of the GUI is built on: a pyqtgraph
view (row 0 at the top, square pixels, mouse wheel zoom, drag to pan) with a small
tool row (colour map, contrast percentiles, symmetric contrast, gamma, save menu) and a
read-out of the value under the cursor.  It shows an array as it is given; it never
derives anything from it.
"""
from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6 import QtCore, QtGui, QtWidgets

from ricom.io.contrast import percentile_levels

COLORMAPS = ("gray", "viridis", "magma", "inferno", "cividis", "diverging", "cyclic")
"""Colour maps offered in every panel (``diverging`` blue–white–red, ``cyclic`` for angles)."""
_PYQTGRAPH_NAMES = {"diverging": "CET-D1A", "cyclic": "CET-C6"}

LEVEL_OPTIONS = {"max_samples": 65_536, "flat_relative": 1e-6}
"""How the panels compute percentile contrast (`ricom.io.contrast.percentile_levels`): from
at most about 65 000 values, so a redraw stays cheap, and a constant image keeps its scale."""
_LUTS: dict[str, np.ndarray] = {}


def lookup_table(name: str, gamma: float = 1.0, n: int = 256) -> np.ndarray:
    """RGBA look-up table (n × 4 uint8) of a colour map with ``gamma`` applied to its input."""
    if name not in _LUTS:
        if name == "gray":
            cmap = pg.ColorMap([0.0, 1.0], [(0, 0, 0), (255, 255, 255)])
        else:
            cmap = pg.colormap.get(_PYQTGRAPH_NAMES.get(name, name))
        _LUTS[name] = cmap.getLookupTable(0.0, 1.0, n, alpha=True)
    lut = _LUTS[name]
    if gamma != 1.0:
        idx = np.rint(np.linspace(0.0, 1.0, n) ** gamma * (len(lut) - 1)).astype(int)
        lut = lut[idx]
    return lut


class ImageView(QtWidgets.QWidget):
    """An image with display controls.

    Parameters
    ----------
    colormap : str
        Initial colour map (one of `COLORMAPS`).
    symmetric : bool
        Initial state of "±": limits symmetric about zero (for signed signals).
    controls : bool
        Show the tool row.
    formats : sequence of str
        Entries of the save menu (``"tif"``, ``"png"``, ``"npy"``); empty = no menu.

    Signals
    -------
    save_requested(str)
        The user picked a format from the save menu.
    display_changed()
        Colour map, contrast or gamma changed.
    """

    save_requested = QtCore.Signal(str)
    display_changed = QtCore.Signal()

    def __init__(self, colormap: str = "gray", symmetric: bool = False, controls: bool = True,
                 formats=("tif", "png", "npy"), parent=None) -> None:
        super().__init__(parent)
        self.data: np.ndarray | None = None
        self.rgb: np.ndarray | None = None
        self.unit = ""
        self.levels = (0.0, 1.0)
        self._fixed_levels: tuple[float, float] | None = None
        lay = QtWidgets.QVBoxLayout(self)
        lay.setContentsMargins(2, 2, 2, 2)
        lay.setSpacing(2)
        self.tools = QtWidgets.QHBoxLayout()
        self.tools.setSpacing(3)
        self.colormap = QtWidgets.QComboBox(toolTip="colour map")
        self.colormap.addItems(COLORMAPS)
        self.colormap.setCurrentText(colormap)
        self.low = _spin(0.0, 50.0, 0.5, 1, "lower contrast limit: percentile of the values")
        self.high = _spin(50.0, 100.0, 99.5, 1, "upper contrast limit: percentile of the values")
        self.symmetric = QtWidgets.QCheckBox("±", toolTip="contrast symmetric about zero", checked=symmetric)
        self.gamma = _spin(0.1, 5.0, 1.0, 2, "gamma of the colour scale")
        self.gamma.setSingleStep(0.1)
        for w in (self.colormap, self.low, self.high, self.symmetric, self.gamma):
            self.tools.addWidget(w)
        self.tools.addStretch(1)
        if formats:
            self.save_button = QtWidgets.QToolButton(text="Save", toolTip="save this panel",
                                                     popupMode=QtWidgets.QToolButton.InstantPopup)
            menu = QtWidgets.QMenu(self.save_button)
            labels = {"tif": "TIFF (float32, calibrated)…", "png": "PNG (as shown)…", "npy": "NumPy .npy…"}
            for fmt in formats:
                menu.addAction(labels[fmt], lambda f=fmt: self.save_requested.emit(f))
            self.save_button.setMenu(menu)
            self.tools.addWidget(self.save_button)
        if controls:
            lay.addLayout(self.tools)
        else:
            for w in (self.colormap, self.low, self.high, self.symmetric, self.gamma):
                w.hide()
        self.graphics = pg.GraphicsLayoutWidget()
        self.graphics.setMinimumSize(120, 100)
        self.view = self.graphics.addViewBox(lockAspect=True, invertY=True, enableMenu=False)
        self.item = pg.ImageItem(axisOrder="row-major")  # arrays as given: (row, col), row 0 at the top
        self.view.addItem(self.item)
        lay.addWidget(self.graphics, 1)
        self.readout = QtWidgets.QLabel(" ", styleSheet="color: #555; font-size: 9pt")
        lay.addWidget(self.readout)
        self.graphics.scene().sigMouseMoved.connect(self._mouse_moved)
        for w in (self.low, self.high, self.gamma):
            w.valueChanged.connect(self._controls_changed)
        self.colormap.currentTextChanged.connect(self._controls_changed)
        self.symmetric.toggled.connect(self._controls_changed)
        self._shape = None

    # ------------------------------------------------------------------ data
    def set_image(self, data: np.ndarray, unit: str = "", rgb: np.ndarray | None = None) -> None:
        """Show ``data`` (2D, any real dtype); ``rgb`` (h, w, 3 uint8), if given, is shown instead
        while ``data`` still feeds the read-out and the saved files."""
        self.data = np.asarray(data)
        self.rgb = rgb
        self.unit = unit
        self._render()

    def set_fixed_levels(self, levels: tuple[float, float] | None) -> None:
        """Use these display limits instead of percentiles (None: back to percentiles)."""
        self._fixed_levels = levels
        self._render()

    def _controls_changed(self, *_) -> None:
        self._render()
        self.display_changed.emit()

    def _render(self) -> None:
        if self.data is None:
            return
        if self.rgb is not None:
            self.item.setImage(self.rgb, autoLevels=False, levels=(0, 255), lut=None)
        else:
            img = np.asarray(self.data, np.float32)
            if self._fixed_levels is not None:
                self.levels = self._fixed_levels
            else:
                self.levels = percentile_levels(img, self.low.value(), self.high.value(), self.symmetric.isChecked(),
                                                **LEVEL_OPTIONS)
            lut = lookup_table(self.colormap.currentText(), self.gamma.value())
            self.item.setImage(img, autoLevels=False, levels=self.levels, lut=lut)
        shape = self.data.shape
        if shape != self._shape:
            self._shape = shape
            self.view.autoRange(padding=0.01)

    def rendered_qimage(self) -> QtGui.QImage | None:
        """The image as displayed (colour map, contrast, gamma) at its native resolution."""
        if self.data is None:
            return None
        self.item.render()
        return self.item.qimage

    # ------------------------------------------------------------------ cursor
    def _mouse_moved(self, pos) -> None:
        if self.data is None or not self.view.sceneBoundingRect().contains(pos):
            return
        p = self.view.mapSceneToView(pos)
        col, row = int(np.floor(p.x())), int(np.floor(p.y()))
        h, w = self.data.shape[:2]
        if 0 <= row < h and 0 <= col < w:
            self.readout.setText(self.value_text(row, col))
        else:
            self.readout.setText(" ")

    def value_text(self, row: int, col: int) -> str:
        """What the read-out shows for pixel (row, col)."""
        return f"x {col}, y {row}: {self.data[row, col]:.5g} {self.unit}"

    def display_state(self) -> dict:
        return {"colormap": self.colormap.currentText(), "low": self.low.value(), "high": self.high.value(),
                "symmetric": self.symmetric.isChecked(), "gamma": self.gamma.value()}

    def set_display_state(self, state: dict) -> None:
        """Restore `display_state` (unknown keys ignored)."""
        if state.get("colormap") in COLORMAPS:
            self.colormap.setCurrentText(state["colormap"])
        for key in ("low", "high", "gamma"):
            if isinstance(state.get(key), (int, float)):
                getattr(self, key).setValue(float(state[key]))
        if isinstance(state.get("symmetric"), bool):
            self.symmetric.setChecked(state["symmetric"])


def _spin(lo: float, hi: float, value: float, decimals: int, tip: str) -> QtWidgets.QDoubleSpinBox:
    s = QtWidgets.QDoubleSpinBox(minimum=lo, maximum=hi, value=value, decimals=decimals, toolTip=tip)
    s.setKeyboardTracking(False)
    s.setMaximumWidth(64)
    return s
