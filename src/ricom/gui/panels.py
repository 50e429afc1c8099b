"""The image panels of the GUI: what each dock shows and how it reads a snapshot.

Owns the `Panel` protocol (``refresh(live)`` draws from the engine's latest
`ricom.engine.snapshot.Snapshot`; ``export()`` gives the array a panel saves) and the panels
built on `ricom.gui.imageview.ImageView`: a named signal (riCOM, iCOM, COM x/y,
divergence), the virtual detectors, the E-field as a colour wheel (hue = direction,
value = magnitude), the FFT of any signal (display only: `windowed_log_spectrum`, a Hann
window so the image edges make no axis streaks), and the kernel with its
frequency response.  Scan images pass the scan step on for the scale bar.  Every image
comes from `Snapshot.signal` or `ricom.engine.kernels`; no panel computes physics.  The
diffraction view is in `ricom.gui.diffraction`.
"""
from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6 import QtWidgets

from ricom.engine.kernels import filtered_kernel, frequency_response
from ricom.gui.imageview import LEVEL_OPTIONS, ImageView
from ricom.io.contrast import percentile_levels

FFT_SOURCES = ("ricom", "icom", "com_x", "com_y", "divergence", "efield_magnitude", "counts")


class Panel(QtWidgets.QWidget):
    """Base of a dock's content.

    Attributes
    ----------
    key : str
        Stable name (dock object name, file names, tests).
    title : str
        Dock title.
    shown_key : object
        State key of what is drawn; the window redraws a visible panel when it differs.
    drawn_at : float
        `time.monotonic` of the last redraw (the window serves the longest-waiting first).
    """

    key = "panel"
    title = "Panel"
    needs_snapshot = True

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.shown_key = None
        self.drawn_at = 0.0
        self.view: ImageView | None = None

    def state_key(self, live):
        """What the drawing depends on; the panel is redrawn when it changes."""
        return live.key

    def refresh(self, live) -> None:
        """Redraw from ``live`` (`ricom.gui.refresh.LiveState`: ``snapshot``, ``tap``, ``rec``)."""

    def export(self) -> tuple[str, np.ndarray, str] | None:
        """``(signal name, float array, unit)`` that TIFF and .npy saving write, or None."""
        if self.view is None or self.view.data is None:
            return None
        return self.key, np.asarray(self.view.data, np.float64), self.view.unit

    def invalidate(self) -> None:
        self.shown_key = None


def scan_step_A(snap) -> float | None:
    """The scan step in Å of a snapshot (None when uncalibrated): the scale bar of scan images."""
    return snap.settings.calibration.step_A


def single_view_layout(panel: Panel, view: ImageView, top: QtWidgets.QWidget | None = None) -> None:
    lay = QtWidgets.QVBoxLayout(panel)
    lay.setContentsMargins(0, 0, 0, 0)
    lay.setSpacing(0)
    if top is not None:
        lay.addWidget(top)
    lay.addWidget(view, 1)
    view.display_changed.connect(panel.invalidate)


class SignalPanel(Panel):
    """One signal of the snapshot by name (``ricom``, ``icom``, ``com_x`` …)."""

    def __init__(self, key: str, title: str, signal: str, colormap: str = "gray", symmetric: bool = False,
                 parent=None) -> None:
        super().__init__(parent)
        self.key, self.title, self.signal = key, title, signal
        self.view = ImageView(colormap, symmetric)
        single_view_layout(self, self.view)

    def refresh(self, live) -> None:
        snap = live.snapshot
        self.view.set_image(snap.signal(self.signal), snap.unit(self.signal), step_A=scan_step_A(snap))


class _ChoicePanel(Panel):
    """A panel with a selector above its image."""

    def __init__(self, label: str, choices, parent=None) -> None:
        super().__init__(parent)
        bar = QtWidgets.QWidget()
        row = QtWidgets.QHBoxLayout(bar)
        row.setContentsMargins(4, 2, 4, 0)
        row.addWidget(QtWidgets.QLabel(label))
        self.choice = QtWidgets.QComboBox()
        self.choice.addItems(list(choices))
        self.choice.currentTextChanged.connect(lambda _: self.invalidate())
        row.addWidget(self.choice, 1)
        self._bar_row = row
        self._bar = bar

    def _set_choices(self, names) -> None:
        names = list(names)
        if [self.choice.itemText(i) for i in range(self.choice.count())] != names:
            current = self.choice.currentText()
            self.choice.blockSignals(True)
            self.choice.clear()
            self.choice.addItems(names)
            if current in names:
                self.choice.setCurrentText(current)
            self.choice.blockSignals(False)


class VirtualPanel(_ChoicePanel):
    """The virtual-detector images (vBF, vABF, vADF or those of the settings)."""

    key, title = "virtual", "Virtual detector"

    def __init__(self, parent=None) -> None:
        super().__init__("detector", ("vadf", "vbf", "vabf"), parent)
        self.view = ImageView("gray")
        single_view_layout(self, self.view, self._bar)

    def refresh(self, live) -> None:
        snap = live.snapshot
        self._set_choices(sorted(snap.virtual, key=lambda n: ("vadf", "vbf", "vabf").index(n)
                                 if n in ("vadf", "vbf", "vabf") else 9))
        name = self.choice.currentText()
        if name in snap.virtual:
            self.view.set_image(snap.virtual[name], "counts", step_A=scan_step_A(snap))

    def export(self):
        out = super().export()
        return None if out is None else (self.choice.currentText(), out[1], out[2])


class EFieldPanel(Panel):
    """Projected E-field: hue = direction (colour wheel), value = magnitude."""

    key, title = "efield", "E-field"

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.view = ImageView("gray", controls=True)
        self.view.hide_controls(self.view.colormap, self.view.symmetric, self.view.low)
        self.view.high.setToolTip("percentile of the magnitude shown at full brightness")
        wheel = QtWidgets.QLabel(toolTip="direction colour wheel (scan frame, +x right, +y down)")
        wheel.setPixmap(pg.QtGui.QPixmap.fromImage(pg.functions.makeQImage(colour_wheel(40), transpose=False)))
        self.view.tools.insertWidget(0, wheel)
        self._magnitude = self._direction = None
        single_view_layout(self, self.view)

    def refresh(self, live) -> None:
        snap = live.snapshot
        mag, ang = snap.signal("efield_magnitude"), snap.signal("efield_direction")
        _, top = percentile_levels(mag, 0.0, self.view.high.value(), **LEVEL_OPTIONS)
        value = np.clip(mag / top, 0.0, 1.0) ** self.view.gamma.value() if top > 0 else np.zeros_like(mag)
        self._magnitude, self._direction = mag, ang
        self.view.set_image(mag, snap.unit("efield_magnitude"), rgb=direction_rgb(ang, value), step_A=scan_step_A(snap))

    def export(self):
        if self._magnitude is None:
            return None
        return "efield", np.stack([self._magnitude, self._direction]), "magnitude, direction (rad)"


def direction_rgb(angle: np.ndarray, value: np.ndarray) -> np.ndarray:
    """uint8 RGB image: hue from ``angle`` (rad, −π…π), full saturation, brightness ``value`` (0…1)."""
    from matplotlib.colors import hsv_to_rgb

    hsv = np.stack([(np.asarray(angle) / (2 * np.pi)) % 1.0, np.ones_like(value), value], axis=-1)
    return np.ascontiguousarray((hsv_to_rgb(hsv) * 255).astype(np.uint8))


def colour_wheel(size: int) -> np.ndarray:
    """RGBA legend of `direction_rgb` (angle measured from +x towards +y, y down)."""
    yy, xx = np.mgrid[:size, :size] - (size - 1) / 2
    r = np.hypot(xx, yy) / (size / 2)
    rgb = direction_rgb(np.arctan2(yy, xx), np.clip(r, 0, 1))
    alpha = np.where(r <= 1, 255, 0).astype(np.uint8)[..., None]
    return np.ascontiguousarray(np.concatenate([rgb, alpha], axis=-1))


def windowed_log_spectrum(image: np.ndarray) -> np.ndarray:
    """log₁₀ |FFT| of ``image`` minus its mean, times a 2D Hann window (zero frequency at the centre).

    Display only.  Without the window the jump between opposite image edges (the FFT
    treats the image as periodic) draws bright streaks along both frequency axes; the
    window takes the image smoothly to zero at its edges.  Non-finite values count as the
    mean.  The floor is 10⁻⁹ of the peak, so an empty image gives a finite, flat result.

    Examples
    --------
    >>> spec = windowed_log_spectrum(np.arange(64.0).reshape(8, 8))
    >>> spec.shape, bool(np.isfinite(spec).all())
    ((8, 8), True)
    """
    img = np.asarray(image, np.float64)
    finite = np.isfinite(img)
    img = np.where(finite, img - (img[finite].mean() if finite.any() else 0.0), 0.0)
    window = np.outer(_hann(img.shape[0]), _hann(img.shape[1]))
    spec = np.abs(np.fft.fftshift(np.fft.fft2(img * window)))
    return np.log10(spec + (spec.max() * 1e-9 or 1e-30))


def _hann(n: int) -> np.ndarray:
    """Symmetric Hann window of length n (all ones below 3: too short to taper)."""
    return np.hanning(n) if n >= 3 else np.ones(n)


class FFTPanel(_ChoicePanel):
    """log₁₀ |FFT| of any signal, Hann-windowed (display only: `windowed_log_spectrum`)."""

    key, title = "fft", "FFT"

    def __init__(self, parent=None) -> None:
        super().__init__("FFT of", FFT_SOURCES, parent)
        self.view = ImageView("inferno")
        single_view_layout(self, self.view, self._bar)

    def refresh(self, live) -> None:
        snap = live.snapshot
        self._set_choices([*FFT_SOURCES, *snap.virtual])
        self.view.set_image(windowed_log_spectrum(snap.signal(self.choice.currentText())),
                            "log10 |F| (Hann window)")

    def export(self):
        out = super().export()
        return None if out is None else (f"fft_{self.choice.currentText()}", out[1], out[2])


class KernelPanel(_ChoicePanel):
    """The riCOM kernel (with its band-pass folded in) and its radial frequency response."""

    key, title = "kernel", "Kernel"
    needs_snapshot = False

    def __init__(self, parent=None) -> None:
        super().__init__("component", ("K_x", "K_y"), parent)
        self.view = ImageView("diverging", symmetric=True, formats=("npy", "png"))
        self.plot = pg.PlotWidget(background="w")
        self.plot.setMinimumHeight(90)
        self.plot.setLabel("bottom", "k [cycles / scan px]")
        self.plot.setLabel("left", "response")
        self.plot.addLegend(offset=(-5, 5), labelTextSize="7pt")
        self.plot.setXRange(0, 0.5)
        for axis in ("bottom", "left"):  # plain numbers: no "(×0.001)" scaling of the ticks
            self.plot.getAxis(axis).setSIPrefixEnableRanges(())
            self.plot.getAxis(axis).enableAutoSIPrefix(False)
        self._response = self.plot.plot(pen=pg.mkPen("#1f77b4", width=2), name="kernel")
        self._approx = self.plot.plot(pen=pg.mkPen("#ff7f0e", width=1, style=pg.QtCore.Qt.DashLine),
                                      name="line integration")
        self._band_lines: list = []
        split = QtWidgets.QSplitter(pg.QtCore.Qt.Vertical)
        split.addWidget(self.view)
        split.addWidget(self.plot)
        split.setSizes([200, 150])
        lay = QtWidgets.QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(self._bar)
        lay.addWidget(split, 1)
        self.view.display_changed.connect(self.invalidate)
        self.kernel_settings = None

    def state_key(self, live):
        return live.settings.kernel

    def refresh(self, live) -> None:
        ks = live.settings.kernel
        self.view.setToolTip(f"{ks.size}×{ks.size} kernel, band-pass {ks.band_pass or 'none'}")
        kx, ky = filtered_kernel(ks)
        self.view.set_image(kx if self.choice.currentText() == "K_x" else ky, "1/scan px")
        if ks != self.kernel_settings:
            self.kernel_settings = ks
            spec = frequency_response(ks)
            self._response.setData(spec["k"], spec["response"])
            self._approx.setData(spec["k"], spec["approximation"])
            for line in self._band_lines:
                self.plot.removeItem(line)
            self._band_lines = [self.plot.addLine(x=v, pen=pg.mkPen("#888", style=pg.QtCore.Qt.DotLine))
                                for v in (ks.band_pass or ())]

    def export(self):
        out = super().export()
        return None if out is None else (f"kernel_{self.choice.currentText()}", out[1], out[2])


def standard_panels() -> list[Panel]:
    """Every image panel except the diffraction view, in their default order."""
    return [
        SignalPanel("ricom", "riCOM", "ricom"),
        SignalPanel("icom", "iCOM", "icom"),
        VirtualPanel(),
        SignalPanel("com_x", "COM x", "com_x", "diverging", symmetric=True),
        SignalPanel("com_y", "COM y", "com_y", "diverging", symmetric=True),
        EFieldPanel(),
        SignalPanel("divergence", "Divergence", "divergence", "diverging", symmetric=True),
        FFTPanel(),
        KernelPanel(),
    ]
