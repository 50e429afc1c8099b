"""The GUI's phase-contrast panels: tcBF and SSB beside riCOM.

Owns `TcbfPanel` and `SsbPanel`.  Each is a dock hidden until the user switches it on
(View menu); a run started while it is shown computes its method on the same chunk
stream (`ricom.phase.methods.attach_methods`, in the run's worker thread), with the few
settings in the panel's bar: tcBF's fit mode and defocus, SSB's convergence angle and
defocus.  They apply from the next start.  The images come from the snapshot the window
takes anyway (``tcbf``, ``ssb``; remade between chunks on the worker thread, never on
the GUI thread), and the fitted defocus is shown in the tcBF dock's title and the
panel's line while the scan runs.
"""
from __future__ import annotations

import math

from PySide6 import QtCore, QtGui, QtWidgets

from ricom.gui.imageview import ImageView
from ricom.gui.panels import Panel, scan_step_A, single_view_layout
from ricom.phase.methods import PhaseMethods, phase_methods

PHASE_PANELS = ("tcbf", "ssb")


def _spin(value: float, low: float, high: float, suffix: str, tip: str) -> QtWidgets.QDoubleSpinBox:
    box = QtWidgets.QDoubleSpinBox(minimum=low, maximum=high, value=value, decimals=1, suffix=suffix, toolTip=tip)
    box.setKeyboardTracking(False)
    return box


class ElidedLabel(QtWidgets.QLabel):
    """One line of text that ends in "…" where the dock is too narrow for it, instead of
    widening the dock; ``text()`` and the tooltip keep the whole text."""

    def setText(self, text: str) -> None:
        super().setText(text)
        self.setToolTip(text)

    def minimumSizeHint(self) -> QtCore.QSize:
        return QtCore.QSize(0, super().minimumSizeHint().height())

    def sizeHint(self) -> QtCore.QSize:
        return QtCore.QSize(0, super().sizeHint().height())

    def paintEvent(self, event) -> None:
        painter = QtGui.QPainter(self)
        rect = self.contentsRect()
        shown = self.fontMetrics().elidedText(self.text(), QtCore.Qt.ElideRight, rect.width())
        painter.drawText(rect, int(self.alignment()), shown)


class _PhasePanel(Panel):
    """A phase-contrast image with its settings above it and a status line."""

    signal = ""

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.bar = QtWidgets.QWidget()
        self.grid = QtWidgets.QGridLayout(self.bar)
        self.grid.setContentsMargins(4, 2, 4, 0)
        self.grid.setVerticalSpacing(2)
        self.status = ElidedLabel()
        self.status.setText("shown: computed from the next start")
        self.status.setContentsMargins(4, 0, 4, 0)
        top = QtWidgets.QWidget()
        lay = QtWidgets.QVBoxLayout(top)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.setSpacing(0)
        lay.addWidget(self.bar)
        lay.addWidget(self.status)
        self.view = ImageView("gray")
        single_view_layout(self, self.view, top)

    def add_setting(self, row: int, column: int, label: str, widget: QtWidgets.QWidget) -> None:
        """Put a setting (its label, then its field) into the bar's grid at (``row``, ``column``):
        as few per row as keep the dock as narrow as the image panels."""
        if label:
            self.grid.addWidget(QtWidgets.QLabel(label), row, 2 * column)
        self.grid.addWidget(widget, row, 2 * column + 1)
        self.grid.setColumnStretch(2 * column + 1, 1)

    def keywords(self) -> dict:
        """This method's `ricom.phase.methods.phase_methods` keywords."""
        raise NotImplementedError

    def refresh(self, live) -> None:
        snap = live.snapshot
        if snap is None:
            return
        if self.signal in snap.extra:
            self.view.set_image(snap.extra[self.signal], snap.unit(self.signal), step_A=scan_step_A(snap))
            self.status.setText(self.describe(snap.metadata))
        else:
            self.status.setText("not computed in this run: it starts with the next run while this panel is shown")

    def describe(self, metadata: dict) -> str:
        return ""


class TcbfPanel(_PhasePanel):
    """Tilt-corrected bright field; the fitted defocus in the dock title while the scan runs."""

    key, title, signal = "tcbf", "tcBF", "tcbf"

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.fit = QtWidgets.QComboBox(toolTip="auto: refitted as the scan fills; first: fitted once on the first "
                                               "rows; given: shifts from the defocus")
        self.fit.addItems(["auto", "first", "given"])
        self.defocus = _spin(0.0, -1e5, 1e5, " Å", "defocus, positive = underfocus (used with fit 'given')")
        self.add_setting(0, 0, "fit", self.fit)
        self.add_setting(0, 1, "defocus", self.defocus)
        self.fit.currentTextChanged.connect(lambda fit: self.defocus.setEnabled(fit == "given"))
        self.defocus.setEnabled(False)  # used only with fit 'given'

    def keywords(self) -> dict:
        fit = self.fit.currentText()
        return {"tcbf_fit": fit, **({"defocus_A": self.defocus.value()} if fit == "given" else {})}

    def describe(self, metadata: dict) -> str:
        text = metadata.get("tcbf_summary", "")
        defocus = metadata.get("tcbf_defocus_A", math.nan)
        dock = self.parentWidget()
        if isinstance(dock, QtWidgets.QDockWidget):
            dock.setWindowTitle(f"tcBF — defocus {defocus:.1f} Å" if math.isfinite(defocus) else "tcBF")
        return text


class SsbPanel(_PhasePanel):
    """Single side-band ptychography (needs the convergence angle and the calibration)."""

    key, title, signal = "ssb", "SSB", "ssb"

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.convergence = _spin(20.0, 0.1, 500.0, " mrad", "probe convergence semi-angle")
        self.defocus = _spin(0.0, -1e5, 1e5, " Å", "defocus, positive = underfocus")
        self.use_fit = QtWidgets.QCheckBox("tcBF's fit", toolTip="take the defocus tcBF fits (when tcBF is shown "
                                                                 "too) instead of the one entered here")
        self.add_setting(0, 0, "α", self.convergence)
        self.add_setting(1, 0, "defocus", self.defocus)
        self.add_setting(1, 1, "", self.use_fit)
        self.use_fit.toggled.connect(lambda on: self.defocus.setEnabled(not on))

    def keywords(self) -> dict:
        return {"convergence_mrad": self.convergence.value(),
                **({} if self.use_fit.isChecked() else {"defocus_A": self.defocus.value()})}

    def describe(self, metadata: dict) -> str:
        if "ssb_defocus_A" not in metadata:
            return ""
        return (f"α {metadata['ssb_convergence_mrad']:.1f} mrad, defocus {metadata['ssb_defocus_A']:.1f} Å "
                f"({metadata['ssb_defocus_source']}), binned ×{metadata['ssb_bin_factor']}")


def phase_panels() -> list[_PhasePanel]:
    return [TcbfPanel(), SsbPanel()]


def methods_from(panels: dict, shown) -> PhaseMethods:
    """The methods of the panels ``shown(key)`` says are switched on, with their settings.

    A `SettingsError` (SSB without calibration is found later, when the run knows it)."""
    keys = [k for k in PHASE_PANELS if k in panels and shown(k)]
    kwargs: dict = {}
    for k in reversed(keys):  # tcBF's defocus (given) wins over SSB's own
        kwargs.update(panels[k].keywords())
    return phase_methods(keys, **kwargs)


__all__ = ["PHASE_PANELS", "SsbPanel", "TcbfPanel", "methods_from", "phase_panels"]
