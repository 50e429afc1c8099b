"""The diffraction-pattern panel: the latest pattern with the centre and detectors on it.

Owns `DiffractionPanel`: the last pattern the source delivered (kept by
`ricom.gui.worker.PatternTap`; for event data, a histogram of the last event chunk)
on a log scale, with the centre in use (cyan, draggable: dropping it sets a manual
centre), the mean uncentred COM of the scan so far (red) and the virtual-detector radii
(the annulus edges r_in and r_out are draggable circles; dropping one sets manual radii,
which the engine applies from the next chunk).  The markers' labels are light text on a
dark box, placed on the side of their marker that keeps them inside the view
(`DiffractionPanel.place_labels`, again after every zoom or pan).  Overlay positions are detector pixels
(row, column) of the pixel centres, as everywhere in ricom.  A source with a pixel mask
(DECTRIS) has its masked pixels drawn over the pattern (`ricom.gui.mask_overlay`).
"""
from __future__ import annotations

import math

import numpy as np
import pyqtgraph as pg
from PySide6 import QtCore

from ricom.engine.detector import event_histogram
from ricom.gui.imageview import ImageView
from ricom.gui.mask_overlay import MaskOverlay
from ricom.gui.panels import Panel, single_view_layout

LABEL_FILL = (0, 0, 0, 220)
"""Background of the marker labels: readable on the bright disc and on the dark background."""
LABEL_GAP_PX = 9
"""Screen pixels between a marker and its label."""


class DiffractionPanel(Panel):
    """Latest pattern (log scale) with draggable centre and detector radii.

    Signals
    -------
    centre_moved(float, float)
        The user dropped the centre marker at (row, column).
    radii_moved(float, float)
        The user dropped an annulus edge: (r_in, r_out) in detector pixels (r_out may be inf).
    """

    key, title = "diffraction", "Diffraction pattern"
    centre_moved = QtCore.Signal(float, float)
    radii_moved = QtCore.Signal(float, float)

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.view = ImageView("inferno", formats=("tif", "png", "npy"))
        self.view.low.setValue(1.0)
        self.view.high.setValue(99.9)
        self.mask_overlay = MaskOverlay(self.view)
        single_view_layout(self, self.view, top=self.mask_overlay.bar)
        self.pattern: np.ndarray | None = None
        self.centre_yx: tuple[float, float] | None = None
        self.mean_com_yx: tuple[float, float] | None = None
        self.radii: tuple[float, float] = (0.0, math.inf)
        self._programmatic = False
        self._dragging = False
        self._overlay_state = None
        self.centre_item = pg.TargetItem(size=14, pen=pg.mkPen("c", width=2), movable=True,
                                         label="centre", labelOpts=_label_options("#40ffff"))
        self.com_item = pg.TargetItem(size=10, symbol="x", pen=pg.mkPen("r", width=2), movable=False,
                                      label="mean COM", labelOpts=_label_options("#ff7070"))
        self.centre_item.setZValue(30)  # markers and their labels above the rings and guides
        self.com_item.setZValue(29)
        self.guides: list[pg.QtWidgets.QGraphicsEllipseItem] = []
        self.inner_roi = _ring_roi("#4fd04f")
        self.outer_roi = _ring_roi("#f0c020")
        for item in (self.inner_roi, self.outer_roi, self.com_item, self.centre_item):
            self.view.view.addItem(item)
            item.hide()
        self.centre_item.sigPositionChanged.connect(self._drag_started)
        self.centre_item.sigPositionChangeFinished.connect(self._centre_dropped)
        for roi in (self.inner_roi, self.outer_roi):
            roi.sigRegionChangeStarted.connect(self._drag_started)
            roi.sigRegionChangeFinished.connect(self._radius_dropped)
        self.view.view.sigRangeChanged.connect(lambda *_: self.place_labels())

    # ------------------------------------------------------------------ drawing
    def state_key(self, live):
        tap_id = live.tap.latest_id if live.tap is not None else -1
        return live.key, tap_id

    def refresh(self, live) -> None:
        tap, rec = live.tap, live.rec
        if tap is not None:
            if tap.latest is not None:
                self.pattern = np.asarray(tap.latest, np.float64)
            elif tap.latest_events is not None and rec is not None:
                self.pattern = event_histogram(*tap.latest_events, rec.detector_shape)
        if self.pattern is None:
            return
        if tap is not None:
            self.mask_overlay.follow(tap, self.pattern.shape)
        shown = np.log10(1.0 + np.clip(self.pattern, 0, None))
        self.view.set_image(shown, "log10(1 + counts)")
        self.view.readout.setToolTip("the read-out shows log10(1 + counts)")
        snap = live.snapshot
        if snap is None or self._dragging:
            return
        if rec is not None:
            self.mean_com_yx = rec.running_centre_yx() or self.mean_com_yx
        self.centre_yx = snap.center_yx
        radii = snap.virtual_radii_px
        if "vadf" in radii:
            self.radii = tuple(float(v) for v in radii["vadf"])
        self._place_overlays(radii)

    def _place_overlays(self, radii: dict) -> None:
        state = (self.centre_yx, self.mean_com_yx, self.radii, tuple(sorted(radii.items())), self.pattern.shape)
        if state == self._overlay_state:  # nothing moved: leave the items alone
            return
        self._overlay_state = state
        self._programmatic = True
        try:
            if self.centre_yx is not None:
                cy, cx = self.centre_yx
                self.centre_item.setPos(cx + 0.5, cy + 0.5)
                self.centre_item.show()
            if self.mean_com_yx is not None:
                self.com_item.setPos(self.mean_com_yx[1] + 0.5, self.mean_com_yx[0] + 0.5)
                self.com_item.show()
            if self.centre_yx is None:
                return
            edge = self._edge_radius()
            r_in, r_out = self.radii
            for roi, r in ((self.inner_roi, r_in), (self.outer_roi, r_out if math.isfinite(r_out) else edge)):
                if r > 0:
                    self._set_ring(roi, r)
                    roi.show()
                else:
                    roi.hide()
            self._draw_guides(radii, edge)
        finally:
            self._programmatic = False
            self.place_labels()

    def place_labels(self) -> None:
        """Put each marker's label beside it on a side where it fits inside the view.

        The centre's label prefers above-right and the mean COM's below-right; a label
        takes the first quadrant around its marker (right before left, its preferred
        side before the other) where it fits and the other label is not.  When only one
        quadrant fits (both markers in a corner), the mean COM's label stacks past the other.
        """
        vb = self.view.view
        (x0, x1), (y0, y1) = vb.viewRange()
        sx, sy = vb.viewPixelSize()
        if not (sx > 0 and sy > 0):
            return
        taken: tuple[bool, bool, float] | None = None
        for item, prefer_up in ((self.centre_item, True), (self.com_item, False)):
            label = item.label()
            if label is None or not item.isVisible():
                continue
            size = label.textItem.boundingRect()
            w, h = size.width() + LABEL_GAP_PX, size.height() + LABEL_GAP_PX
            px, py = item.pos().x(), item.pos().y()
            room = {"left": (px - x0) / sx, "right": (x1 - px) / sx, "up": (py - y0) / sy, "down": (y1 - py) / sy}
            order = [(up, right) for up in (prefer_up, not prefer_up) for right in (True, False)]
            fits = [q for q in order if room["up" if q[0] else "down"] >= h and room["right" if q[1] else "left"] >= w]
            free = [q for q in fits if taken is None or q != taken[:2]]
            up, right = (free or fits or order)[0]
            extra = taken[2] if taken is not None and (up, right) == taken[:2] else 0.0  # stack past the other
            taken = (up, right, h + extra)
            dy = LABEL_GAP_PX + extra
            label.offset = pg.Point(LABEL_GAP_PX if right else -LABEL_GAP_PX, -dy if up else dy)
            label.setAnchor((0.0 if right else 1.0, 1.0 if up else 0.0))
            label.viewTransformChanged()

    def _edge_radius(self) -> float:
        dy, dx = self.pattern.shape
        cy, cx = self.centre_yx
        return float(max(math.hypot(max(cy, dy - 1 - cy), max(cx, dx - 1 - cx)), 1.0))

    def _set_ring(self, roi: pg.ROI, r: float) -> None:
        cy, cx = self.centre_yx
        roi.setPos((cx + 0.5 - r, cy + 0.5 - r), update=False, finish=False)
        roi.setSize((2 * r, 2 * r), update=True, finish=False)

    def _draw_guides(self, radii: dict, edge: float) -> None:
        """Thin circles at every other detector edge (vBF, vABF radii)."""
        wanted = sorted({r for pair in radii.values() for r in pair
                         if math.isfinite(r) and r > 0 and not any(abs(r - e) < 1e-6 for e in self.radii)})
        while len(self.guides) < len(wanted):
            g = pg.QtWidgets.QGraphicsEllipseItem()
            g.setPen(pg.mkPen((255, 255, 255, 140), width=1, style=QtCore.Qt.DashLine, cosmetic=True))
            self.view.view.addItem(g)
            self.guides.append(g)
        cy, cx = self.centre_yx
        for g, r in zip(self.guides, wanted + [None] * len(self.guides), strict=False):
            if r is None:
                g.hide()
            else:
                g.setRect(cx + 0.5 - r, cy + 0.5 - r, 2 * r, 2 * r)
                g.show()

    # ------------------------------------------------------------------ dragging
    def _drag_started(self, *_) -> None:
        if not self._programmatic:
            self._dragging = True

    def _centre_dropped(self, *_) -> None:
        if self._programmatic:
            return
        self._dragging = False
        self._overlay_state = None
        p = self.centre_item.pos()
        self.centre_yx = (float(p.y() - 0.5), float(p.x() - 0.5))
        self.centre_moved.emit(*self.centre_yx)

    def _radius_dropped(self, roi) -> None:
        if self._programmatic:
            return
        self._dragging = False
        self._overlay_state = None
        r = float(roi.size().x()) / 2
        r_in, r_out = self.radii
        if roi is self.inner_roi:
            r_in = r
        else:
            r_out = r
        r_in, r_out = min(r_in, r_out), max(r_in, r_out)
        if r_out - r_in < 0.5:
            r_out = r_in + 0.5
        self.radii = (r_in, r_out)
        self.radii_moved.emit(r_in, r_out)

    def export(self):
        if self.pattern is None:
            return None
        return "pattern", np.asarray(self.pattern, np.float64), "counts"


def _label_options(colour: str) -> dict:
    """Text options of a marker label: ``colour`` on a dark box with a thin border of the same colour."""
    return {"color": colour, "fill": pg.mkBrush(*LABEL_FILL), "border": pg.mkPen(colour, width=1),
            "offset": (LABEL_GAP_PX, -LABEL_GAP_PX), "anchor": (0.0, 1.0)}


def _ring_roi(colour: str) -> pg.CircleROI:
    roi = pg.CircleROI((0, 0), radius=1.0, movable=False, rotatable=False, pen=pg.mkPen(colour, width=2))
    roi.setZValue(10)
    return roi
