"""One image on screen: colour map, percentile contrast, gamma, zoom/pan, value under the cursor.

Owns `ImageView`, the widget every image panel of the GUI is built on: a pyqtgraph
view (row 0 at the top, square pixels, mouse wheel zoom, drag to pan) with a narrow
tool row (colour map; a "display" pop-up with the contrast percentiles, symmetric
contrast, gamma, scale bar and colour bar; the save menu) and a read-out of the value
under the cursor, cleared when the cursor leaves the image.  The scale bar's length comes
from `ricom.io.scalebar.scale_bar`, as in the PNG previews.  It shows an array as it is
given; it never derives anything from it.
"""
from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6 import QtCore, QtGui, QtWidgets

from ricom.io.contrast import percentile_levels
from ricom.io.scalebar import ScaleBar, scale_bar

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
    scale_bar, colour_bar : bool
        Initial state of the "scale bar" and "colour bar" switches.  The scale bar shows
        only where `set_image` was given the scan step; the colour bar only for
        colour-mapped (not RGB) images.

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
                 formats=("tif", "png", "npy"), scale_bar: bool = False, colour_bar: bool = False,
                 parent=None) -> None:
        super().__init__(parent)
        self.data: np.ndarray | None = None
        self.rgb: np.ndarray | None = None
        self.unit = ""
        self.step_A: float | None = None
        self.bar: ScaleBar | None = None
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
        self.low = _spin(0.0, 50.0, 0.5, 1, "lower contrast limit: percentile of the values", "low ")
        self.high = _spin(50.0, 100.0, 99.5, 1, "upper contrast limit: percentile of the values", "high ")
        self.symmetric = QtWidgets.QCheckBox("± symmetric about zero", toolTip="contrast symmetric about zero",
                                             checked=symmetric)
        self.gamma = _spin(0.1, 5.0, 1.0, 2, "gamma of the colour scale")
        self.gamma.setSingleStep(0.1)
        self.show_scale = QtWidgets.QCheckBox("scale bar", checked=scale_bar,
                                              toolTip="scale bar (needs the scan step, Calibration › step)")
        self.show_colours = QtWidgets.QCheckBox("colour bar", checked=colour_bar,
                                                toolTip="colour bar with the values' unit")
        self.display_button = self._display_popup()
        switches = (self.colormap, self.display_button)
        for w in switches:
            self.tools.addWidget(w)
        self.tools.addStretch(1)
        if formats:
            self.save_button = self._save_menu(formats)
            self.tools.addWidget(self.save_button)
        if controls:
            lay.addLayout(self.tools)
        else:
            for w in switches:
                w.hide()
        self.graphics = pg.GraphicsLayoutWidget()
        self.graphics.setMinimumSize(120, 100)
        self.view = self.graphics.addViewBox(row=0, col=0, lockAspect=True, invertY=True, enableMenu=False)
        self.item = pg.ImageItem(axisOrder="row-major")  # arrays as given: (row, col), row 0 at the top
        self.view.addItem(self.item)
        self._make_bars()
        lay.addWidget(self.graphics, 1)
        self.readout = QtWidgets.QLabel(" ", styleSheet="color: #555; font-size: 9pt")
        self.readout.setSizePolicy(QtWidgets.QSizePolicy.Ignored, QtWidgets.QSizePolicy.Preferred)  # never widens
        lay.addWidget(self.readout)
        self.graphics.scene().sigMouseMoved.connect(self._mouse_moved)
        for w in (self.graphics, self.graphics.viewport()):  # the cursor left the image: clear the read-out
            w.installEventFilter(self)
        for w in (self.low, self.high, self.gamma):
            w.valueChanged.connect(self._controls_changed)
        self.colormap.currentTextChanged.connect(self._controls_changed)
        for w in (self.symmetric, self.show_scale, self.show_colours):
            w.toggled.connect(self._controls_changed)
        self._shape = None
        self._describe_display()

    def _display_popup(self) -> QtWidgets.QToolButton:
        """The "display" button: a pop-up with the contrast percentiles, ±, gamma and the two bars.

        The controls stay attributes of the view (``low``, ``high``, ``symmetric``, ``gamma``,
        ``show_scale``, ``show_colours``); the pop-up only holds them, so the tool row stays
        narrow (colour map, this button, Save) and a dock fits a 1920 px screen with its neighbours."""
        self.display_panel = QtWidgets.QWidget()
        grid = QtWidgets.QGridLayout(self.display_panel)
        grid.setContentsMargins(8, 6, 8, 6)
        rows = (("contrast", (self.low, self.high)), ("", (self.symmetric,)), ("gamma", (self.gamma,)),
                ("show", (self.show_scale, self.show_colours)))
        for r, (label, widgets) in enumerate(rows):
            grid.addWidget(QtWidgets.QLabel(label), r, 0)
            for c, w in enumerate(widgets, start=1):
                grid.addWidget(w, r, c, 1, 3 - len(widgets))
        button = QtWidgets.QToolButton(text="display", popupMode=QtWidgets.QToolButton.InstantPopup)
        menu = QtWidgets.QMenu(button)
        holder = QtWidgets.QWidgetAction(menu)
        holder.setDefaultWidget(self.display_panel)
        menu.addAction(holder)
        button.setMenu(menu)
        return button

    def _save_menu(self, formats) -> QtWidgets.QToolButton:
        """The Save button: one click opens the formats (`save_requested` with the one picked)."""
        button = QtWidgets.QToolButton(text="Save", toolTip="save this panel",
                                       popupMode=QtWidgets.QToolButton.InstantPopup)
        menu = QtWidgets.QMenu(button)
        labels = {"tif": "TIFF (float32, calibrated)…", "png": "PNG (as shown)…", "npy": "NumPy .npy…"}
        for fmt in formats:
            menu.addAction(labels[fmt], lambda f=fmt: self.save_requested.emit(f))
        button.setMenu(menu)
        return button

    def hide_controls(self, *widgets: QtWidgets.QWidget) -> None:
        """Hide display controls a panel does not use (the E-field's colour map, low limit, ±)."""
        for w in widgets:
            w.hide()
        self._describe_display()

    def _describe_display(self) -> None:
        """The display button's tooltip: what the pop-up is set to, readable without opening it."""
        parts = []
        shown = self.display_panel
        low = f"{self.low.value():g}–" if self.low.isVisibleTo(shown) else "up to "
        sym = ", symmetric" if self.symmetric.isChecked() and self.symmetric.isVisibleTo(shown) else ""
        parts.append(f"contrast {low}{self.high.value():g} %{sym}")
        parts.append(f"gamma {self.gamma.value():.2f}")
        parts += [name for name, box in (("scale bar", self.show_scale), ("colour bar", self.show_colours))
                  if box.isChecked()]
        self.display_button.setToolTip("display: " + "; ".join(parts) + " (click to change)")

    def _make_bars(self) -> None:
        """The scale bar (a white rectangle with a black edge and its label, in image
        coordinates, lower left) and the colour bar (right of the image, not interactive)."""
        self.scale_rect = QtWidgets.QGraphicsRectItem()
        self.scale_rect.setBrush(pg.mkBrush("w"))
        self.scale_rect.setPen(pg.mkPen("k", width=1, cosmetic=True))
        self.scale_text = pg.TextItem(color="w", anchor=(0.5, 1.0), fill=pg.mkBrush(0, 0, 0, 120))
        for item in (self.scale_rect, self.scale_text):
            item.setZValue(10)
            item.hide()
            self.view.addItem(item, ignoreBounds=True)
        self.colorbar = pg.ColorBarItem(values=(0.0, 1.0), width=14, interactive=False, colorMapMenu=False,
                                        label="")
        self._colorbar_shown = False

    # ------------------------------------------------------------------ data
    def set_image(self, data: np.ndarray, unit: str = "", rgb: np.ndarray | None = None,
                  step_A: float | None = None) -> None:
        """Show ``data`` (2D, any real dtype); ``rgb`` (h, w, 3 uint8), if given, is shown instead
        while ``data`` still feeds the read-out and the saved files.  ``step_A``: the scan step
        in Å (pixels are scan positions), for the scale bar; None: no scale bar."""
        self.data = np.asarray(data)
        self.rgb = rgb
        self.unit = unit
        self.step_A = step_A
        self._render()

    def set_fixed_levels(self, levels: tuple[float, float] | None) -> None:
        """Use these display limits instead of percentiles (None: back to percentiles)."""
        self._fixed_levels = levels
        self._render()

    def _controls_changed(self, *_) -> None:
        self._describe_display()
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
        self._update_scale_bar()
        self._update_colour_bar()
        shape = self.data.shape
        if shape != self._shape:
            self._shape = shape
            self.view.autoRange(padding=0.01)

    def _update_scale_bar(self) -> None:
        h, w = self.data.shape[:2]
        self.bar = scale_bar(self.step_A, w) if self.show_scale.isChecked() else None
        for item in (self.scale_rect, self.scale_text):
            item.setVisible(self.bar is not None)
        if self.bar is None:
            return
        thick = max(h * 0.025, 0.5)
        x0, y1 = w * 0.05, h * 0.95
        self.scale_rect.setRect(QtCore.QRectF(x0, y1 - thick, self.bar.length_px, thick))
        self.scale_text.setText(self.bar.label)
        self.scale_text.setPos(x0 + self.bar.length_px / 2, y1 - thick)

    def _update_colour_bar(self) -> None:
        show = self.show_colours.isChecked() and self.rgb is None
        if show != self._colorbar_shown:
            if show:
                self.graphics.addItem(self.colorbar, row=0, col=1)
            else:
                self.graphics.ci.removeItem(self.colorbar)
            self._colorbar_shown = show
        if show:
            lut = lookup_table(self.colormap.currentText(), self.gamma.value())
            self.colorbar.setColorMap(pg.ColorMap(np.linspace(0.0, 1.0, len(lut)), lut))
            self.colorbar.setLevels(self.levels)
            self.colorbar.getAxis("left").setLabel(self.unit)

    def rendered_qimage(self) -> QtGui.QImage | None:
        """The image as displayed (colour map, contrast, gamma) at its native resolution."""
        if self.data is None:
            return None
        self.item.render()
        return self.item.qimage

    # ------------------------------------------------------------------ cursor
    def eventFilter(self, obj, event) -> bool:
        if event.type() == QtCore.QEvent.Type.Leave:
            self.readout.setText(" ")
        return super().eventFilter(obj, event)

    def _mouse_moved(self, pos) -> None:
        if self.data is None or not self.view.sceneBoundingRect().contains(pos):
            self.readout.setText(" ")
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
                "symmetric": self.symmetric.isChecked(), "gamma": self.gamma.value(),
                "scale_bar": self.show_scale.isChecked(), "colour_bar": self.show_colours.isChecked()}

    def set_display_state(self, state: dict) -> None:
        """Restore `display_state` (unknown keys ignored)."""
        if state.get("colormap") in COLORMAPS:
            self.colormap.setCurrentText(state["colormap"])
        for key in ("low", "high", "gamma"):
            if isinstance(state.get(key), (int, float)):
                getattr(self, key).setValue(float(state[key]))
        for key, box in (("symmetric", self.symmetric), ("scale_bar", self.show_scale),
                         ("colour_bar", self.show_colours)):
            if isinstance(state.get(key), bool):
                box.setChecked(state[key])


def _spin(lo: float, hi: float, value: float, decimals: int, tip: str, prefix: str = "") -> QtWidgets.QDoubleSpinBox:
    """A display spin box; a percentile's says which limit it is (``prefix``) and ends in %."""
    s = QtWidgets.QDoubleSpinBox(minimum=lo, maximum=hi, value=value, decimals=decimals, toolTip=tip,
                                 prefix=prefix, suffix=" %" if prefix else "")
    s.setKeyboardTracking(False)
    return s
