"""The settings column: every reconstruction setting as a widget, turned into `Settings`.

Owns `SettingsColumn`: kernel size and band-pass, rotation and flip, the centre
(auto = running mean COM, manual, or measured on a reference scan), the virtual-detector
annulus (auto from the bright-field disc, or manual radii), the scan shape (used before
a run; while one runs, the input's) and the calibration (`ricom.gui.calibration_box`).
While radii and centre are automatic, their greyed fields show what the engine uses
(`show_radii_in_use`, `show_centre_in_use`).  It emits `changed`
whenever the user edits something; the window then builds `settings()` and hands it to
`Reconstruction.update_settings`.  `set_settings` shows a `Settings` without emitting.
"""
from __future__ import annotations

import math

from PySide6 import QtCore, QtWidgets

from ricom.api import DEFAULT_VIRTUAL_DETECTORS, virtual_detectors_from_annulus
from ricom.core.errors import SettingsError
from ricom.core.params import (
    MAX_KERNEL_SIZE,
    DetectorGeometry,
    KernelSettings,
    Settings,
    max_kernel_size,
)
from ricom.gui.calibration_box import CalibrationBox

CENTRE_MODES = ("auto (mean COM)", "manual", "from reference")
VD_MODES = ("auto (from BF disc)", "manual", "custom (from file)")


def _dspin(lo, hi, value, decimals, step, suffix="", special=None, tip="") -> QtWidgets.QDoubleSpinBox:
    s = QtWidgets.QDoubleSpinBox(minimum=lo, maximum=hi, value=value, decimals=decimals, singleStep=step,
                                 suffix=suffix, toolTip=tip)
    if special:
        s.setSpecialValueText(special)
    s.setKeyboardTracking(False)
    return s


class SettingsColumn(QtWidgets.QWidget):
    """Widgets for `ricom.core.params.Settings` plus the scan shape.

    Signals
    -------
    changed()
        The user changed a reconstruction setting.
    reference_requested()
        The user asked to measure the centre on a reference scan.
    guess_requested()
        The user asked to find rotation and flip from the data seen so far.

    Attributes
    ----------
    calibration_box : CalibrationBox
        The Calibration group (its `load_requested` and `missing_changed` signals).
    """

    changed = QtCore.Signal()
    reference_requested = QtCore.Signal()
    guess_requested = QtCore.Signal()

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self._custom_vds = None
        self._com_mask = None
        self._reference_centre: tuple[float, float] | None = None
        lay = QtWidgets.QVBoxLayout(self)
        lay.setContentsMargins(4, 4, 4, 4)
        self._kernel_group(lay)
        self._geometry_group(lay)
        self._detector_group(lay)
        self._scan_group(lay)
        self.calibration_box = CalibrationBox()
        self.step, self.pixel_size, self.energy = (self.calibration_box.step, self.calibration_box.pixel_size,
                                                   self.calibration_box.energy)
        lay.addWidget(self.calibration_box)
        lay.addStretch(1)

        self.kernel_size.valueChanged.connect(self._kernel_size_changed)
        for w in (self.k_min, self.k_max, self.rotation, self.centre_y, self.centre_x, self.r_in, self.r_out):
            w.valueChanged.connect(self._emit)
        self.calibration_box.changed.connect(self._emit)
        for w in (self.band_pass, self.flip):
            w.toggled.connect(self._emit)
        self.centre_mode.currentIndexChanged.connect(self._centre_mode_changed)
        self.vd_mode.currentIndexChanged.connect(self._vd_mode_changed)
        self.reference_button.clicked.connect(self.reference_requested)
        self._update_enabled()

    def _kernel_group(self, lay: QtWidgets.QVBoxLayout) -> None:
        """Kernel size and band-pass."""
        self.kernel_size = QtWidgets.QSpinBox(minimum=3, maximum=MAX_KERNEL_SIZE, value=21, singleStep=2,
                                              toolTip="odd n of the n×n riCOM kernel")
        self.kernel_size.setKeyboardTracking(False)
        self.band_pass = QtWidgets.QCheckBox("band-pass", toolTip="fold an annular band-pass into the kernel")
        self.k_min = _dspin(0.0, 1.0, 0.0, 3, 0.01, tip="lowest passed frequency, cycles per scan pixel")
        self.k_max = _dspin(0.001, 1.0, 0.5, 3, 0.01, tip="highest passed frequency (0.5 = Nyquist)")
        form = self._group(lay, "Kernel")
        form.addRow("size", self.kernel_size)
        form.addRow(self.band_pass)
        form.addRow("k min / max", _pair(self.k_min, self.k_max))
        form.addRow(QtWidgets.QLabel("cycles per scan pixel (0.5 = Nyquist)", styleSheet="color:#666"))

    def _geometry_group(self, lay: QtWidgets.QVBoxLayout) -> None:
        """Rotation, flip, their guess, and the centre (mode, value, reference scan)."""
        self.rotation = _dspin(-360.0, 360.0, 0.0, 2, 1.0, "°",
                               tip="turns the measured COM from detector +x towards +y (clockwise on screen)")
        self.rotation.setWrapping(True)
        self.flip = QtWidgets.QCheckBox("flip (mirror detector x first)")
        self.centre_mode = QtWidgets.QComboBox()
        self.centre_mode.addItems(CENTRE_MODES)
        self.centre_y = _dspin(0.0, 65535.0, 0.0, 2, 0.25, tip="centre row, detector pixels")
        self.centre_x = _dspin(0.0, 65535.0, 0.0, 2, 0.25, tip="centre column, detector pixels")
        self.reference_button = QtWidgets.QPushButton("Reference scan…")
        form = self._group(lay, "Geometry")
        self.guess_button = QtWidgets.QPushButton(
            "Guess rotation + flip", toolTip="find them from the COM field seen so far (curl and divergence)")
        self.guess_button.clicked.connect(self.guess_requested)
        form.addRow("rotation", self.rotation)
        form.addRow(self.flip)
        form.addRow(self.guess_button)
        form.addRow("centre", self.centre_mode)
        form.addRow("row / col", _pair(self.centre_y, self.centre_x))
        form.addRow(self.reference_button)

    def _detector_group(self, lay: QtWidgets.QVBoxLayout) -> None:
        """Radii of the virtual detectors."""
        self.vd_mode = QtWidgets.QComboBox()
        self.vd_mode.addItems(VD_MODES[:2])
        self.r_in = _dspin(0.0, 65535.0, 8.0, 2, 0.5, " px", tip="vADF inner radius = vBF radius")
        self.r_out = _dspin(0.0, 65535.0, 0.0, 2, 0.5, " px", special="∞", tip="vADF outer radius (0 = ∞)")
        form = self._group(lay, "Virtual detectors (from the next chunk)")
        form.addRow("radii", self.vd_mode)
        form.addRow("r in / out", _pair(self.r_in, self.r_out))

    def _scan_group(self, lay: QtWidgets.QVBoxLayout) -> None:
        """Scan shape for inputs without one (or overriding theirs)."""
        self.scan_y = QtWidgets.QSpinBox(minimum=1, maximum=65535, value=64)
        self.scan_x = QtWidgets.QSpinBox(minimum=1, maximum=65535, value=64)
        self.scan_override = QtWidgets.QCheckBox("override the input's own scan shape")
        for w in (self.scan_y, self.scan_x):
            w.setToolTip("scan rows × columns: the input's own while it runs; set before a run for the simulator "
                         "and inputs without one")
        form = self._group(lay, "Scan (before a run)")
        form.addRow("rows × cols", _pair(self.scan_y, self.scan_x))
        form.addRow(self.scan_override)

    def _group(self, lay, title: str) -> QtWidgets.QFormLayout:
        box = QtWidgets.QGroupBox(title)
        form = QtWidgets.QFormLayout(box)
        form.setContentsMargins(6, 4, 6, 4)
        lay.addWidget(box)
        return form

    # ------------------------------------------------------------------ reactions
    def _emit(self, *_) -> None:
        self._update_enabled()
        self.changed.emit()

    def _kernel_size_changed(self, n: int) -> None:
        if n % 2 == 0:
            self.kernel_size.setValue(n + 1)  # emits again with the odd value
            return
        self._emit()

    def _centre_mode_changed(self, index: int) -> None:
        if index == 2 and self._reference_centre is None:
            self.reference_requested.emit()
        elif index == 2:
            self._show_centre(self._reference_centre)
        self._emit()

    def _vd_mode_changed(self, _index: int) -> None:
        if self.vd_mode.currentIndex() != 2:
            self._custom_vds = None
            if self.vd_mode.count() > 2:
                self.vd_mode.removeItem(2)
        self._emit()

    def _update_enabled(self) -> None:
        self.k_min.setEnabled(self.band_pass.isChecked())
        self.k_max.setEnabled(self.band_pass.isChecked())
        manual = self.centre_mode.currentIndex() == 1
        self.centre_y.setEnabled(manual)
        self.centre_x.setEnabled(manual)
        vd_manual = self.vd_mode.currentIndex() == 1
        self.r_in.setEnabled(vd_manual)
        self.r_out.setEnabled(vd_manual)
        self.calibration_box.update_hint()

    def _show_centre(self, centre) -> None:
        for w, v in ((self.centre_y, centre[0]), (self.centre_x, centre[1])):
            w.blockSignals(True)
            w.setValue(v)
            w.blockSignals(False)

    # ------------------------------------------------------------------ public
    def set_reference_centre(self, centre: tuple[float, float]) -> None:
        """Use a centre measured on a reference scan (switches the mode to "from reference")."""
        self._reference_centre = (float(centre[0]), float(centre[1]))
        self._show_centre(self._reference_centre)
        self.centre_mode.blockSignals(True)
        self.centre_mode.setCurrentIndex(2)
        self.centre_mode.blockSignals(False)
        self._emit()

    def set_manual_centre(self, cy: float, cx: float) -> None:
        """Switch to a manual centre at (row, column) and emit `changed`."""
        self._show_centre((cy, cx))
        self.centre_mode.blockSignals(True)
        self.centre_mode.setCurrentIndex(1)
        self.centre_mode.blockSignals(False)
        self._emit()

    def set_manual_radii(self, r_in: float, r_out: float) -> None:
        """Switch to manual virtual-detector radii (r_out = inf allowed) and emit `changed`."""
        for w, v in ((self.r_in, r_in), (self.r_out, 0.0 if not math.isfinite(r_out) else r_out)):
            w.blockSignals(True)
            w.setValue(v)
            w.blockSignals(False)
        self.vd_mode.blockSignals(True)
        self.vd_mode.setCurrentIndex(1)
        self.vd_mode.blockSignals(False)
        self._emit()

    def show_centre_in_use(self, centre) -> None:
        """Show the engine's centre in the (disabled) fields while the mode is auto."""
        if centre is not None and self.centre_mode.currentIndex() == 0:
            self._show_centre(centre)

    def show_radii_in_use(self, radii: dict) -> None:
        """Show the engine's vADF radii (``Snapshot.virtual_radii_px``) in the (disabled) fields
        while the radii are not manual."""
        if self.vd_mode.currentIndex() == 1 or "vadf" not in radii:
            return
        r_in, r_out = radii["vadf"]
        for w, v in ((self.r_in, r_in), (self.r_out, r_out if math.isfinite(r_out) else 0.0)):
            w.blockSignals(True)
            w.setValue(float(v))
            w.blockSignals(False)

    def show_scan_shape_in_use(self, shape) -> None:
        """Show the scan shape of the input being reconstructed (unless 'override' is ticked)."""
        if self.scan_override.isChecked():
            return
        for w, v in ((self.scan_y, shape[0]), (self.scan_x, shape[1])):
            w.blockSignals(True)
            w.setValue(int(v))
            w.blockSignals(False)

    def scan_shape(self) -> tuple[int, int]:
        return self.scan_y.value(), self.scan_x.value()

    def set_scan_shape(self, shape) -> None:
        self.scan_y.setValue(int(shape[0]))
        self.scan_x.setValue(int(shape[1]))

    def set_running(self, running: bool) -> None:
        """Scan shape edits are possible only between runs."""
        for w in (self.scan_y, self.scan_x, self.scan_override):
            w.setEnabled(not running)

    def settings(self) -> Settings:
        """The `Settings` the widgets describe.

        Raises
        ------
        SettingsError
            For inconsistent values (e.g. k min ≥ k max, r in ≥ r out).
        """
        band = (self.k_min.value(), self.k_max.value()) if self.band_pass.isChecked() else None
        kernel = KernelSettings(int(self.kernel_size.value()) | 1, band)
        mode = self.centre_mode.currentIndex()
        if mode == 0 or (mode == 2 and self._reference_centre is None):
            centre = None
        elif mode == 2:
            centre = self._reference_centre  # exact, not rounded to the fields' 0.01 px
        else:
            centre = (self.centre_y.value(), self.centre_x.value())
        geometry = DetectorGeometry(centre, self.rotation.value(), self.flip.isChecked())
        calibration = self.calibration_box.calibration()
        vd_mode = self.vd_mode.currentIndex()
        if vd_mode == 2 and self._custom_vds is not None:
            vds = self._custom_vds
        elif vd_mode == 1:
            r_out = self.r_out.value() or math.inf
            if not r_out > self.r_in.value():
                raise SettingsError(f"virtual detector: r in ({self.r_in.value():g}) must be below r out")
            vds = virtual_detectors_from_annulus((self.r_in.value(), r_out))
        else:
            vds = DEFAULT_VIRTUAL_DETECTORS
        return Settings(kernel=kernel, geometry=geometry, calibration=calibration, virtual_detectors=vds,
                        com_mask_px=self._com_mask)

    def set_settings(self, s: Settings) -> None:
        """Show ``s`` in the widgets without emitting `changed`."""
        widgets = [self.kernel_size, self.band_pass, self.k_min, self.k_max, self.rotation, self.flip,
                   self.centre_mode, self.centre_y, self.centre_x, self.vd_mode, self.r_in, self.r_out]
        for w in widgets:
            w.blockSignals(True)
        try:
            self.kernel_size.setValue(s.kernel.size)
            self.band_pass.setChecked(s.kernel.band_pass is not None)
            if s.kernel.band_pass is not None:
                self.k_min.setValue(s.kernel.band_pass[0])
                self.k_max.setValue(s.kernel.band_pass[1])
            self.rotation.setValue(s.geometry.rotation_deg)
            self.flip.setChecked(s.geometry.flip)
            c = s.geometry.center_yx
            if c is None:
                self.centre_mode.setCurrentIndex(0)
            else:
                from_ref = self.centre_mode.currentIndex() == 2 and self._reference_centre == c
                self.centre_mode.setCurrentIndex(2 if from_ref else 1)
                self._show_centre(c)
            self._show_vds(s.virtual_detectors)
            self.calibration_box.set_calibration(s.calibration)
            self._com_mask = s.com_mask_px
        finally:
            for w in widgets:
                w.blockSignals(False)
        self._update_enabled()

    def _show_vds(self, vds) -> None:
        self._custom_vds = None
        if self.vd_mode.count() > 2:
            self.vd_mode.removeItem(2)
        if tuple(vds) == DEFAULT_VIRTUAL_DETECTORS:
            self.vd_mode.setCurrentIndex(0)
            return
        names = {vd.name: vd for vd in vds}
        adf = names.get("vadf")
        if adf is not None and adf.unit == "px" and \
                tuple(vds) == virtual_detectors_from_annulus((adf.inner, adf.outer)):
            self.vd_mode.setCurrentIndex(1)
            self.r_in.setValue(adf.inner)
            self.r_out.setValue(adf.outer if math.isfinite(adf.outer) else 0.0)
            return
        self._custom_vds = tuple(vds)
        self.vd_mode.addItem(VD_MODES[2])
        self.vd_mode.setCurrentIndex(2)


def settings_with_hints(settings: Settings, hints: dict, scan_shape) -> Settings:
    """``settings`` with the calibration the input carries filled in where none is given,
    and the kernel no larger than useful for ``scan_shape`` (`max_kernel_size`)."""
    filled = settings.calibration.filled_from(hints)
    limit = max_kernel_size(scan_shape)
    kernel = settings.kernel
    if kernel.size > limit:
        kernel = KernelSettings(limit, kernel.band_pass)
    return settings.with_(calibration=filled, kernel=kernel)


def _pair(a: QtWidgets.QWidget, b: QtWidgets.QWidget) -> QtWidgets.QWidget:
    w = QtWidgets.QWidget()
    row = QtWidgets.QHBoxLayout(w)
    row.setContentsMargins(0, 0, 0, 0)
    row.addWidget(a)
    row.addWidget(b)
    return w
