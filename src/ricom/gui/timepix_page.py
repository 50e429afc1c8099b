"""The source panel's page for a Timepix3 camera, and what it asks for.

Owns `Tpx3Options` (the choices as plain values: raw packets from the camera server
(Serval) or ASI's sparse stream; for raw, listen for the server or connect to it, the scan
sync, the dwell time and the acceptance time) and `Tpx3Page` (the widgets).
`ricom.gui.live_streams` turns the options into a `ricom.live.timepix.Tpx3RawAcquisitions`
or a `ricom.live.asi.AsiAcquisitions`; the scan shape comes from the settings column.

The acceptance time (ns, 0 = off) keeps only electrons arriving that soon after the probe
reached a position.  A change while streaming (signal ``acceptance_changed``) rebuilds the
latest scan from its kept events and holds for later scans (`ricom.gui.sessions.AcceptanceControl`).
"""
from __future__ import annotations

from dataclasses import dataclass

from PySide6 import QtCore, QtWidgets

RAW_PORT = 8451
"""Default port of the raw stream (listen here, or Serval's ``tcp://listen@…`` port)."""
ASI_PORT = 8283
"""ASI's sparse-stream port."""
PROTOCOLS = (("raw", "raw packets (Serval)"), ("asi", "ASI sparse stream"))
SYNCS = (("line", "line (TDC1 rise/fall per line)"), ("pixel", "pixel (TDC1 rise per position)"))
MAX_ACCEPTANCE_NS = 100_000


@dataclass(frozen=True)
class Tpx3Options:
    """How to receive a Timepix3 camera's events.

    ``protocol`` ``"raw"`` or ``"asi"``.  Raw: ``listen`` (wait for Serval's
    ``tcp://connect@…`` on ``port``) or connect to ``tcp://listen@HOST:port``; ``sync``
    ``"line"`` or ``"pixel"``; ``dwell_ns`` None: from the line length;
    ``acceptance_ns`` None: keep every electron.  ASI: connect to ``HOST:port``.
    """

    protocol: str = "raw"
    listen: bool = True
    port: int = RAW_PORT
    sync: str = "line"
    dwell_ns: float | None = None
    acceptance_ns: float | None = None

    def source_options(self) -> dict:
        """The `Tpx3StreamSource` options these choices set (raw only; ASI takes none)."""
        if self.protocol != "raw":
            return {}
        opts = {"sync": self.sync}
        if self.dwell_ns:
            opts["dwell_ns"] = float(self.dwell_ns)
        if self.acceptance_ns:
            opts["acceptance_ns"] = float(self.acceptance_ns)
        return opts


class Tpx3Page(QtWidgets.QWidget):
    """Protocol, where, sync, dwell and acceptance of a Timepix3 stream (see the module docstring).

    Signals
    -------
    acceptance_changed(float)
        The acceptance time in ns (0: off), whenever it is edited.

    Attributes
    ----------
    protocol, sync : QComboBox
    listen : QCheckBox
        Raw: wait for the camera server to connect (unticked: connect to ``host``).
    host : QLineEdit
    port, acquisitions : QSpinBox
    dwell, acceptance : QDoubleSpinBox
        Nanoseconds; 0 means from the line length / off.
    acceptance_slider : QSlider
        The same acceptance time, in ns.
    raw_box : QGroupBox
        The raw-only choices (disabled for ASI).
    """

    acceptance_changed = QtCore.Signal(float)

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        form = QtWidgets.QFormLayout(self)
        form.setContentsMargins(0, 0, 0, 0)
        self.protocol = QtWidgets.QComboBox(toolTip="raw: Serval's TCP packet stream; ASI: the sparse frame stream")
        for value, label in PROTOCOLS:
            self.protocol.addItem(label, value)
        self.listen = QtWidgets.QCheckBox("wait for the camera server to connect (listen)", checked=True,
                                          toolTip="Serval's raw destination tcp://connect@THIS_PC:PORT; unticked: "
                                                  "connect to its tcp://listen@HOST:PORT")
        self.host = QtWidgets.QLineEdit("127.0.0.1", toolTip="the camera server (Serval) or the ASI camera PC")
        self.port = QtWidgets.QSpinBox(minimum=0, maximum=65535, value=RAW_PORT,
                                       toolTip="raw: the port to listen on or connect to; ASI: 8283")
        self.acquisitions = QtWidgets.QSpinBox(minimum=0, maximum=1_000_000, value=0, specialValueText="until stopped",
                                               toolTip="scans to receive, then the session ends")
        form.addRow("stream", self.protocol)
        form.addRow(self.listen)
        form.addRow("host", self.host)
        form.addRow("port", self.port)
        form.addRow("scans", self.acquisitions)
        self.raw_box = self._raw_box()
        form.addRow(self.raw_box)
        self.protocol.currentIndexChanged.connect(self._protocol_changed)
        self.listen.toggled.connect(self._listen_toggled)
        self._listen_toggled(True)

    def _raw_box(self) -> QtWidgets.QGroupBox:
        """Raw stream: sync, dwell, acceptance time (spin box and slider)."""
        box = QtWidgets.QGroupBox("raw stream", toolTip="the scan shape comes from Scan › rows × cols")
        form = QtWidgets.QFormLayout(box)
        form.setContentsMargins(6, 4, 6, 4)
        self.sync = QtWidgets.QComboBox(toolTip="how the scan position of each electron is found from TDC1")
        for value, label in SYNCS:
            self.sync.addItem(label, value)
        self.dwell = QtWidgets.QDoubleSpinBox(minimum=0, maximum=1e9, value=0, decimals=0, singleStep=100,
                                              suffix=" ns", specialValueText="from the line length",
                                              keyboardTracking=False, toolTip="time per probe position")
        self.acceptance = QtWidgets.QDoubleSpinBox(minimum=0, maximum=MAX_ACCEPTANCE_NS, value=0, decimals=0,
                                                   singleStep=50, suffix=" ns", specialValueText="off",
                                                   keyboardTracking=False,
                                                   toolTip="keep only electrons arriving this soon after the probe "
                                                           "reached a position (lower dose); a change while "
                                                           "streaming applies from the next scan")
        self.acceptance_slider = QtWidgets.QSlider(QtCore.Qt.Horizontal, minimum=0, maximum=5000, value=0,
                                                   singleStep=10, pageStep=100, toolTip="acceptance time, ns")
        form.addRow("sync", self.sync)
        form.addRow("dwell", self.dwell)
        form.addRow("acceptance", self.acceptance)
        form.addRow("", self.acceptance_slider)
        self.acceptance.valueChanged.connect(self._acceptance_spin)
        self.acceptance_slider.valueChanged.connect(lambda v: self.acceptance.setValue(float(v)))
        return box

    # ------------------------------------------------------------------ reactions
    def _protocol_changed(self, index: int) -> None:
        raw = PROTOCOLS[index][0] == "raw"
        self.raw_box.setEnabled(raw)
        self.listen.setEnabled(raw)
        if not raw and self.port.value() == RAW_PORT:
            self.port.setValue(ASI_PORT)
        elif raw and self.port.value() == ASI_PORT:
            self.port.setValue(RAW_PORT)
        self._listen_toggled(self.listen.isChecked())

    def _listen_toggled(self, on: bool) -> None:
        self.host.setEnabled(not (on and self.protocol.currentData() == "raw"))

    def _acceptance_spin(self, value: float) -> None:
        self.acceptance_slider.blockSignals(True)
        self.acceptance_slider.setValue(round(min(value, self.acceptance_slider.maximum())))
        self.acceptance_slider.blockSignals(False)
        self.acceptance_changed.emit(float(value))

    # ------------------------------------------------------------------ values
    def options(self) -> Tpx3Options:
        """The choices as `Tpx3Options`."""
        return Tpx3Options(protocol=self.protocol.currentData(), listen=self.listen.isChecked(),
                           port=self.port.value(), sync=self.sync.currentData(),
                           dwell_ns=self.dwell.value() or None, acceptance_ns=self.acceptance.value() or None)

    def set_options(self, opts: Tpx3Options) -> None:
        """Show ``opts`` in the widgets."""
        self.protocol.setCurrentIndex(max(0, self.protocol.findData(opts.protocol)))
        self.listen.setChecked(opts.listen)
        self.port.setValue(opts.port)
        self.sync.setCurrentIndex(max(0, self.sync.findData(opts.sync)))
        self.dwell.setValue(opts.dwell_ns or 0.0)
        self.acceptance.setValue(opts.acceptance_ns or 0.0)
