"""The source panel's page for a DECTRIS detector, and what it asks for.

Owns `DectrisOptions` (the choices as plain values: stream version and ports, passive or
active, and in active mode how to set the detector up) and `DectrisPage` (the widgets:
host, API port, stream port — its default follows the stream version, 9999 for V1 and
31001 for V2, until the user edits it —, version, mode and the active-mode settings).
`ricom.gui.sessions` turns the options into a `ricom.live.dectris.DectrisAcquisitions`.
"""
from __future__ import annotations

from dataclasses import dataclass

from PySide6 import QtWidgets

STREAM_PORTS = {"v1": 9999, "v2": 31001}
"""Default ZMQ stream port of each stream version."""
TRIGGER_MODES = (("exte", "exte (pulse per frame)"), ("exts", "exts (pulse per line)"), ("ints", "ints (software)"))
ROI_MODES = ((None, "detector's"), ("disabled", "disabled (full)"), ("merge2x2", "merge2x2 (binned)"))
COMPRESSIONS = ("bslz4", "lz4")


@dataclass(frozen=True)
class DectrisOptions:
    """How to reach and (``active``) set up a DECTRIS detector.

    ``stream_port`` None: the default of the stream version (`STREAM_PORTS`).  Times in
    seconds, None: leave the detector's setting; ``roi_mode`` None: leave the ROI.
    """

    stream: str = "v1"
    api_port: int = 80
    stream_port: int | None = None
    active: bool = False
    trigger_mode: str = "exte"
    count_time_s: float | None = None
    frame_time_s: float | None = None
    roi_mode: str | None = None
    compression: str = "bslz4"

    @property
    def port(self) -> int:
        """The stream port in use."""
        return int(self.stream_port or STREAM_PORTS[self.stream])


def _time_spin(tip: str) -> QtWidgets.QDoubleSpinBox:
    return QtWidgets.QDoubleSpinBox(minimum=0.0, maximum=10_000.0, value=0.0, decimals=4, singleStep=0.1,
                                    suffix=" ms", specialValueText="detector's", keyboardTracking=False, toolTip=tip)


class DectrisPage(QtWidgets.QWidget):
    """Host, ports, stream version and mode of a DECTRIS detector (see the module docstring).

    Attributes
    ----------
    host : QLineEdit
    api_port, stream_port, acquisitions : QSpinBox
    stream : QComboBox
        ``V1`` or ``V2`` (index 0, 1).
    active : QCheckBox
        Configure and arm the detector for each acquisition (unticked: only listen).
    trigger_mode, roi_mode, compression : QComboBox
    count_time, frame_time : QDoubleSpinBox
        Milliseconds; 0 leaves the detector's setting.
    """

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        form = QtWidgets.QFormLayout(self)
        form.setContentsMargins(0, 0, 0, 0)
        self.host = QtWidgets.QLineEdit("127.0.0.1", toolTip="the detector control unit (DCU)")
        self.api_port = QtWidgets.QSpinBox(minimum=1, maximum=65535, value=80, toolTip="SIMPLON REST API port")
        self.stream = QtWidgets.QComboBox(toolTip="V1: legacy JSON stream; V2: CBOR stream")
        self.stream.addItems(["V1", "V2"])
        self.stream_port = QtWidgets.QSpinBox(minimum=1, maximum=65535, value=STREAM_PORTS["v1"],
                                              toolTip="ZMQ stream port (9999 for V1, 31001 for V2)")
        self.active = QtWidgets.QCheckBox("configure and arm the detector (active)",
                                          toolTip="unticked: only listen, the microscope software arms (passive)")
        self.acquisitions = QtWidgets.QSpinBox(minimum=0, maximum=1_000_000, value=0, specialValueText="until stopped",
                                               toolTip="acquisitions to receive, then the session ends")
        form.addRow("host", self.host)
        form.addRow("API port", self.api_port)
        form.addRow("stream", self.stream)
        form.addRow("stream port", self.stream_port)
        form.addRow("acquisitions", self.acquisitions)
        form.addRow(self.active)
        self.arm_box = self._arm_box()
        form.addRow(self.arm_box)
        self.stream.currentIndexChanged.connect(self._stream_changed)
        self.active.toggled.connect(self.arm_box.setEnabled)
        self.arm_box.setEnabled(False)

    def _arm_box(self) -> QtWidgets.QGroupBox:
        """Active mode: trigger mode, times, ROI, compression (frame counts come from the scan shape)."""
        box = QtWidgets.QGroupBox("active mode", toolTip="the frame counts are set from Scan › rows × cols")
        form = QtWidgets.QFormLayout(box)
        form.setContentsMargins(6, 4, 6, 4)
        self.trigger_mode = QtWidgets.QComboBox(toolTip="exte: one frame per scan pulse (usual); exts: one pulse "
                                                        "per scan line; ints: software trigger")
        for value, label in TRIGGER_MODES:
            self.trigger_mode.addItem(label, value)
        self.count_time = _time_spin("exposure per frame")
        self.frame_time = _time_spin("frame period")
        self.roi_mode = QtWidgets.QComboBox(toolTip="detector ROI (ARINA merge2x2: 96×96 binned)")
        for value, label in ROI_MODES:
            self.roi_mode.addItem(label, value)
        self.compression = QtWidgets.QComboBox()
        self.compression.addItems(COMPRESSIONS)
        form.addRow("trigger", self.trigger_mode)
        form.addRow("count time", self.count_time)
        form.addRow("frame time", self.frame_time)
        form.addRow("ROI", self.roi_mode)
        form.addRow("compression", self.compression)
        return box

    def _stream_changed(self, index: int) -> None:
        """A port still at the other version's default follows the version; an edited one stays."""
        if self.stream_port.value() in STREAM_PORTS.values():
            self.stream_port.setValue(STREAM_PORTS[("v1", "v2")[index]])

    # ------------------------------------------------------------------ values
    def options(self) -> DectrisOptions:
        """The choices as `DectrisOptions`."""
        ms = {w: w.value() / 1000.0 or None for w in (self.count_time, self.frame_time)}
        return DectrisOptions(stream=("v1", "v2")[self.stream.currentIndex()], api_port=self.api_port.value(),
                              stream_port=self.stream_port.value(), active=self.active.isChecked(),
                              trigger_mode=self.trigger_mode.currentData(), count_time_s=ms[self.count_time],
                              frame_time_s=ms[self.frame_time], roi_mode=self.roi_mode.currentData(),
                              compression=self.compression.currentText())

    def set_options(self, opts: DectrisOptions) -> None:
        """Show ``opts`` in the widgets."""
        self.stream.setCurrentIndex(("v1", "v2").index(opts.stream))
        self.api_port.setValue(opts.api_port)
        self.stream_port.setValue(opts.port)
        self.active.setChecked(opts.active)
        self.trigger_mode.setCurrentIndex(max(0, self.trigger_mode.findData(opts.trigger_mode)))
        self.count_time.setValue(1000.0 * (opts.count_time_s or 0.0))
        self.frame_time.setValue(1000.0 * (opts.frame_time_s or 0.0))
        self.roi_mode.setCurrentIndex(max(0, self.roi_mode.findData(opts.roi_mode)))
        self.compression.setCurrentText(opts.compression)
