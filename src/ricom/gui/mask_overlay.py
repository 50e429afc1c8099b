"""Where the detector's masked pixels are, drawn over the diffraction pattern.

Owns `MaskOverlay`: for a source with a pixel mask (a DECTRIS detector's,
`ricom.sources.dectris.mask.PixelMask`: ``bad`` a bool (rows, cols) array and
``summary()``), a semi-transparent colour over each masked pixel of the diffraction view,
a *show masked pixels* toggle and the mask's summary beside it.  It follows the source:
each new acquisition brings its own mask (the ROI may have changed).  The source has
already zeroed those pixels in the data; the overlay only shows where they are.  Sources
without a mask, or whose mask has no pixel set, hide the bar and the overlay.
"""
from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6 import QtWidgets

COLOUR = (0, 200, 255, 170)
"""RGBA of a masked pixel (cyan, clearly apart from the inferno colour map)."""


class MaskOverlay:
    """The masked pixels of the current source on an `ImageView` (see the module docstring).

    Parameters
    ----------
    view : ricom.gui.imageview.ImageView
        The diffraction view; the overlay is added to its view box above the pattern.

    Attributes
    ----------
    bar : QWidget
        The toggle and the summary (shown only while a mask with masked pixels is known).
    toggle : QCheckBox
        Draw the overlay.
    label : QLabel
        The mask's ``summary()``.
    item : pyqtgraph.ImageItem
        The RGBA overlay (row-major, pixel (r, c) on the pattern's pixel (r, c)).
    bad : bool ndarray or None
        The masked pixels shown (the source mask's ``bad``), None without a mask.
    """

    def __init__(self, view) -> None:
        self.bar = QtWidgets.QWidget()
        row = QtWidgets.QHBoxLayout(self.bar)
        row.setContentsMargins(4, 0, 4, 0)
        self.toggle = QtWidgets.QCheckBox("show masked pixels", checked=True,
                                        toolTip="the detector's pixel mask (those pixels read 0 in the data)")
        self.label = QtWidgets.QLabel("")
        self.label.setStyleSheet("color: #00c8ff")
        row.addWidget(self.toggle)
        row.addWidget(self.label, 1)
        self.bar.hide()
        self.item = pg.ImageItem(axisOrder="row-major")
        self.item.setZValue(5)  # above the pattern, below the centre and the rings
        self.item.hide()
        view.view.addItem(self.item)
        self.bad: np.ndarray | None = None
        self._mask = None
        self.toggle.toggled.connect(self._visibility)

    def follow(self, source, shape) -> None:
        """Show the mask of ``source`` (any object; no ``mask``: none) over a pattern of ``shape``."""
        mask = getattr(source, "mask", None) if source is not None else None
        if mask is self._mask:
            return
        self._mask = mask
        bad = getattr(mask, "bad", None)
        if bad is None or not np.any(bad) or (shape is not None and tuple(np.shape(bad)) != tuple(shape)):
            self.bad = None
            self.bar.hide()
            self.item.hide()
            return
        self.bad = np.array(bad, dtype=bool)
        rgba = np.zeros((*self.bad.shape, 4), np.uint8)
        rgba[self.bad] = COLOUR
        self.item.setImage(rgba, autoLevels=False, levels=(0, 255))
        self.label.setText(mask.summary() if hasattr(mask, "summary") else f"{int(self.bad.sum())} masked pixels")
        self.bar.show()
        self._visibility(self.toggle.isChecked())

    def _visibility(self, on: bool) -> None:
        self.item.setVisible(bool(on) and self.bad is not None)
