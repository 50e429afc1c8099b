"""The Calibration group of the settings column: step, pixel size, energy, and what is missing.

Owns `CalibrationBox`: the three calibration fields (scan step in Å, detector pixel size
in mrad, beam energy in keV; 0 shows "none"), a hint that says which of them are missing
and what the images are in meanwhile, and the one-click ways to complete them: **Enter**
puts the cursor into the first empty field, **Load…** asks the window for a calibration
file (a GUI settings file or a data file's ``.ricom.json`` sidecar, read by
`ricom.gui.files.load_calibration`).  It computes nothing: which unit the images have
is the engine's (`ricom.engine.snapshot.Snapshot.unit`); the hint only names the fields.
"""
from __future__ import annotations

from PySide6 import QtCore, QtWidgets

from ricom.core.params import Calibration

FIELD_LABELS = {"step_A": "step", "pixel_size_mrad": "pixel size", "energy_keV": "energy"}
"""The label of each calibration field, by `Calibration` attribute."""
HINT_STYLE = "background:#fff4ce; color:#5c4400; border:1px solid #e0c060; padding:3px"


def _dspin(hi: float, decimals: int, step: float, suffix: str, tip: str) -> QtWidgets.QDoubleSpinBox:
    s = QtWidgets.QDoubleSpinBox(minimum=0.0, maximum=hi, value=0.0, decimals=decimals, singleStep=step,
                                 suffix=suffix, toolTip=tip)
    s.setSpecialValueText("none")
    s.setKeyboardTracking(False)
    return s


class CalibrationBox(QtWidgets.QGroupBox):
    """The calibration fields with a "calibration missing" hint.

    Signals
    -------
    changed()
        The user edited a field (or `fill` set values).
    load_requested()
        The user pressed **Load…**: the window asks for a file and calls `fill`.
    missing_changed(str)
        The hint's text after a change ("" when all three are given).
    """

    changed = QtCore.Signal()
    load_requested = QtCore.Signal()
    missing_changed = QtCore.Signal(str)

    def __init__(self, parent=None) -> None:
        super().__init__("Calibration (all three: V·Å)", parent)
        self.step = _dspin(1e4, 4, 0.01, " Å", "scan step")
        self.pixel_size = _dspin(1e3, 4, 0.01, " mrad", "detector pixel size")
        self.energy = _dspin(1e4, 1, 10.0, " keV", "beam energy")
        self.fields = {"step_A": self.step, "pixel_size_mrad": self.pixel_size, "energy_keV": self.energy}
        self.hint = QtWidgets.QLabel(wordWrap=True, styleSheet=HINT_STYLE)
        self.enter_button = QtWidgets.QPushButton("Enter", toolTip="put the cursor into the first empty field")
        self.load_button = QtWidgets.QPushButton(
            "Load…", toolTip="read step, pixel size and energy from a JSON file (a settings file, or the "
                             ".ricom.json sidecar of a data file)")
        buttons = QtWidgets.QWidget()
        row = QtWidgets.QHBoxLayout(buttons)
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(self.enter_button)
        row.addWidget(self.load_button)
        self.hint_row = QtWidgets.QWidget()
        hint_lay = QtWidgets.QVBoxLayout(self.hint_row)
        hint_lay.setContentsMargins(0, 0, 0, 0)
        hint_lay.setSpacing(2)
        hint_lay.addWidget(self.hint)
        hint_lay.addWidget(buttons)
        form = QtWidgets.QFormLayout(self)
        form.setContentsMargins(6, 4, 6, 4)
        form.addRow(self.hint_row)  # first: seen before the fields
        for key, w in self.fields.items():
            form.addRow(FIELD_LABELS[key], w)
            w.valueChanged.connect(self._edited)
        self.enter_button.clicked.connect(self.focus_missing)
        self.load_button.clicked.connect(self.load_requested)
        self._hint_text: str | None = None
        self.update_hint()

    # ------------------------------------------------------------------ values
    def calibration(self) -> Calibration:
        """The `Calibration` of the fields (0 = not given)."""
        return Calibration(*(w.value() or None for w in self.fields.values()))

    def set_calibration(self, cal: Calibration) -> None:
        """Show ``cal`` without emitting `changed`."""
        for key, w in self.fields.items():
            w.blockSignals(True)
            w.setValue(getattr(cal, key) or 0.0)
            w.blockSignals(False)
        self.update_hint()

    def fill(self, values: dict) -> None:
        """Set the given fields (keys of `FIELD_LABELS`, e.g. from a calibration file); emits `changed` once."""
        for key, value in values.items():
            w = self.fields[key]
            w.blockSignals(True)
            w.setValue(float(value))
            w.blockSignals(False)
        self._edited()

    def missing(self) -> list[str]:
        """Labels of the empty fields, in form order."""
        return [FIELD_LABELS[k] for k, w in self.fields.items() if not w.value()]

    # ------------------------------------------------------------------ hint
    def hint_text(self) -> str:
        """What the hint says ("" when the calibration is complete)."""
        missing = self.missing()
        if not missing:
            return ""
        if len(missing) == len(self.fields):
            return "⚠ calibration missing: the images are in pixel units, not V·Å."
        return f"⚠ no {' or '.join(missing)}: riCOM and iCOM are not in V·Å."

    def update_hint(self) -> None:
        """Show or hide the hint; emits `missing_changed` when its text changes."""
        text = self.hint_text()
        self.hint.setText(text)
        self.hint_row.setVisible(bool(text))
        if text != self._hint_text:
            self._hint_text = text
            self.missing_changed.emit(text)

    def focus_missing(self) -> QtWidgets.QDoubleSpinBox:
        """Put the keyboard focus into the first empty field (the step if all are given); returns it."""
        target = next((w for w in self.fields.values() if not w.value()), self.step)
        target.setFocus(QtCore.Qt.OtherFocusReason)
        target.selectAll()
        return target

    def _edited(self, *_) -> None:
        self.update_hint()
        self.changed.emit()
