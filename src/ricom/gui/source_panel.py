"""The source controls: what to read (simulator, file, Merlin, DECTRIS or Timepix3 stream) and start/pause/stop.

Owns `SourcePanel` (the widgets) and `SourceRequest` (what the user chose, as plain
values), plus `open_request`, which turns a request into a `ricom.sources.base.Source`
in the worker thread: the live simulator (`ricom.gui.simulator.LiveSimulatorSource`),
any file `ricom.api.open_input` reads, or the Merlin live stream
(`ricom.sources.merlin.live`, imported only when asked for, so the GUI works without it);
the panel's Merlin and DECTRIS choices ask for a live session instead
(``SourceRequest.live_session``, run by `ricom.gui.sessions.SessionWorker`), with how many
``acquisitions`` (None: until stopped); a DECTRIS stream is always a session (its page,
`ricom.gui.dectris_page`), and so is a Timepix3 stream (`ricom.gui.timepix_page`).
The simulator's rate, defocus, astigmatism and dose apply while it runs.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass, field

from PySide6 import QtCore, QtWidgets

from ricom.api import open_input
from ricom.core.errors import InputError, SettingsError
from ricom.gui.dectris_page import DectrisOptions, DectrisPage
from ricom.gui.simulator import DEFAULT_PARAMS, LiveSimulatorSource
from ricom.gui.timepix_page import Tpx3Options, Tpx3Page
from ricom.simulators.specimen import SimulationParams

KINDS = ("simulator", "file", "merlin", "dectris", "timepix3")
_KIND_LABELS = ("Simulator (live stream)", "File", "Merlin live stream", "DECTRIS live stream",
                "Timepix3 live stream")
_SESSION_PAGES = ("dectris", "timepix3")
"""Kinds whose page has its own host and acquisitions fields."""


@dataclass(frozen=True)
class SourceRequest:
    """What to open, as chosen in the panel (or on the command line).

    ``kind`` is ``"simulator"``, ``"file"``, ``"merlin"``, ``"dectris"`` or ``"timepix3"``; ``repeats`` is
    the engine's ``"replace"`` (show the newest pass) or ``"sum"``.  ``session``: a Merlin
    stream is watched as a live session (`ricom.gui.sessions`) of ``acquisitions``
    acquisitions (None: until stopped) instead of read as one acquisition; a DECTRIS stream
    (``host`` and ``dectris``) always is, and so is a Timepix3 one (``host`` and ``timepix``).
    """

    kind: str = "simulator"
    path: str = ""
    host: str = "127.0.0.1"
    data_port: int = 6342
    control_port: int | None = None
    sim: dict = field(default_factory=dict)
    rate: float | None = 2000.0
    repeats: str = "replace"
    source_options: dict = field(default_factory=dict)
    session: bool = False
    acquisitions: int | None = None
    dectris: DectrisOptions = field(default_factory=DectrisOptions)
    timepix: Tpx3Options = field(default_factory=Tpx3Options)

    @property
    def live_session(self) -> bool:
        """Run as a live session (`ricom.gui.sessions.SessionWorker`) rather than one run."""
        return self.session or self.kind in _SESSION_PAGES


def open_request(req: SourceRequest, scan_shape, stop):
    """Open the source of ``req`` (called in the worker thread; may block for a stream).

    ``scan_shape`` is the settings column's shape: the simulator's scan, and for files
    and streams the shape to use when the input does not carry one (or when
    ``req.source_options["scan_shape"]`` overrides it).
    """
    if req.kind == "simulator":
        params = SimulationParams(**{**_sim_defaults(), **req.sim, "scan_shape": tuple(scan_shape)})
        return LiveSimulatorSource(params, rate=req.rate)
    if req.kind == "file":

        if not req.path:
            raise InputError("choose a file to open first")
        try:
            return open_input(req.path, **req.source_options)
        except SettingsError as exc:
            if "scan_shape" in req.source_options or "scan_shape" not in exc.parameters:
                raise
            return open_input(req.path, **{**req.source_options, "scan_shape": tuple(scan_shape)})
    if req.kind in _SESSION_PAGES:
        raise InputError(f"a {req.kind} stream is read as a live session (ricom.gui.sessions.SessionWorker)")
    if req.kind == "merlin":
        try:
            live = importlib.import_module("ricom.sources.merlin.live")
        except ImportError:
            raise InputError("Merlin live streaming is not available in this installation of ricom "
                             "(ricom.sources.merlin.live is missing)") from None
        control = trigger = None
        if req.control_port:
            control = live.MerlinControl(req.host, req.control_port)
            trigger = control.start
        return live.MerlinLiveSource(req.host, req.data_port, stop=stop, trigger=trigger, control=control,
                                     **req.source_options)
    raise InputError(f"unknown source kind {req.kind!r}")


def _sim_defaults() -> dict:
    p = DEFAULT_PARAMS
    return {"detector_shape": p.detector_shape, "dose_e_per_probe": p.dose_e_per_probe}


class SourcePanel(QtWidgets.QWidget):
    """Choose and control the input.

    Signals
    -------
    start_requested(), stop_requested()
    pause_toggled(bool)
        True = pause.
    simulator_changed(dict)
        Simulation parameters to apply to the running simulator.
    rate_changed(float)
        Patterns per second for the running simulator (0 = unthrottled).
    """

    start_requested = QtCore.Signal()
    stop_requested = QtCore.Signal()
    pause_toggled = QtCore.Signal(bool)
    simulator_changed = QtCore.Signal(dict)
    rate_changed = QtCore.Signal(float)

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        lay = QtWidgets.QVBoxLayout(self)
        lay.setContentsMargins(4, 4, 4, 4)
        self.kind = QtWidgets.QComboBox()
        self.kind.addItems(_KIND_LABELS)
        lay.addWidget(self.kind)
        self.stack = QtWidgets.QStackedWidget()
        lay.addWidget(self.stack)
        self.dectris = DectrisPage()
        self.timepix = Tpx3Page()
        for page in (self._simulator_page(), self._file_page(), self._merlin_page(), self.dectris,
                     self.timepix):  # KINDS order
            self.stack.addWidget(page)

        self.repeats = QtWidgets.QComboBox(toolTip="what a repeated scan does at a position already seen")
        self.repeats.addItems(["show the newest pass", "sum the passes"])
        lay.addWidget(self.repeats)
        buttons = QtWidgets.QHBoxLayout()
        self.start_button = QtWidgets.QPushButton("Start")
        self.pause_button = QtWidgets.QPushButton("Pause", checkable=True, enabled=False)
        self.stop_button = QtWidgets.QPushButton("Stop", enabled=False)
        for b in (self.start_button, self.pause_button, self.stop_button):
            buttons.addWidget(b)
        lay.addLayout(buttons)

        self.kind.currentIndexChanged.connect(self._kind_changed)
        self._kind_changed(0)
        self.start_button.clicked.connect(self.start_requested)
        self.stop_button.clicked.connect(self.stop_requested)
        self.pause_button.toggled.connect(self._pause)
        self.rate.valueChanged.connect(self.rate_changed)
        self.defocus.valueChanged.connect(self._defocus_spin)
        self.defocus_slider.valueChanged.connect(lambda v: self.defocus.setValue(float(v)))
        for w in (self.astig, self.astig_angle, self.dose):
            w.valueChanged.connect(self._sim_changed)

    def _simulator_page(self) -> QtWidgets.QWidget:
        """Controls of the live simulator: rate, defocus, astigmatism, dose, detector size."""
        sim = QtWidgets.QWidget()
        form = QtWidgets.QFormLayout(sim)
        form.setContentsMargins(0, 0, 0, 0)
        self.rate = QtWidgets.QDoubleSpinBox(minimum=0, maximum=1e6, value=2000, decimals=0, singleStep=500,
                                             suffix=" /s", specialValueText="max", keyboardTracking=False)
        self.defocus = QtWidgets.QDoubleSpinBox(minimum=-2000, maximum=2000, value=0, decimals=0, singleStep=20,
                                                suffix=" Å", keyboardTracking=False,
                                                toolTip="defocus Δf (positive = underfocus)")
        self.defocus_slider = QtWidgets.QSlider(QtCore.Qt.Horizontal, minimum=-500, maximum=500, value=0)
        self.astig = QtWidgets.QDoubleSpinBox(minimum=0, maximum=2000, value=0, decimals=0, singleStep=10,
                                              suffix=" Å", keyboardTracking=False, toolTip="two-fold astigmatism |A1|")
        self.astig_angle = QtWidgets.QDoubleSpinBox(minimum=-180, maximum=180, value=0, decimals=0, singleStep=15,
                                                    suffix=" °", keyboardTracking=False, wrapping=True)
        self.dose = QtWidgets.QDoubleSpinBox(minimum=0, maximum=1e9, value=DEFAULT_PARAMS.dose_e_per_probe or 0,
                                             decimals=0, singleStep=5000, specialValueText="noiseless",
                                             suffix=" e⁻", keyboardTracking=False, toolTip="electrons per probe")
        self.det_size = QtWidgets.QComboBox()
        self.det_size.addItems(["32", "48", "64", "96", "128"])
        self.det_size.setCurrentText(str(DEFAULT_PARAMS.detector_shape[0]))
        form.addRow("rate", self.rate)
        form.addRow("defocus", self.defocus)
        form.addRow("", self.defocus_slider)
        form.addRow("astigmatism", self.astig)
        form.addRow("astig. angle", self.astig_angle)
        form.addRow("dose / probe", self.dose)
        form.addRow("detector px", self.det_size)
        return sim

    def _file_page(self) -> QtWidgets.QWidget:
        """The file name and its browse button."""
        file_w = QtWidgets.QWidget()
        row = QtWidgets.QHBoxLayout(file_w)
        row.setContentsMargins(0, 0, 0, 0)
        self.path = QtWidgets.QLineEdit(placeholderText=".npy, .mib, .h5:/dataset, …")
        browse = QtWidgets.QPushButton("…", maximumWidth=30, toolTip="choose a file")
        browse.clicked.connect(self._browse)
        row.addWidget(self.path, 1)
        row.addWidget(browse)
        return file_w

    def _merlin_page(self) -> QtWidgets.QWidget:
        """Host and ports of a Merlin detector, and whether to start it via the control port."""
        merlin = QtWidgets.QWidget()
        form = QtWidgets.QFormLayout(merlin)
        form.setContentsMargins(0, 0, 0, 0)
        self.host = QtWidgets.QLineEdit("127.0.0.1")
        self.data_port = QtWidgets.QSpinBox(minimum=1, maximum=65535, value=6342)
        self.use_control = QtWidgets.QCheckBox("start the acquisition via the control port")
        self.control_port = QtWidgets.QSpinBox(minimum=1, maximum=65535, value=6341)
        self.acquisitions = QtWidgets.QSpinBox(minimum=0, maximum=1_000_000, value=0, specialValueText="until stopped",
                                               toolTip="acquisitions to receive (the microscope starts them), "
                                                       "then the session ends")
        form.addRow("host", self.host)
        form.addRow("data port", self.data_port)
        form.addRow(self.use_control)
        form.addRow("control port", self.control_port)
        form.addRow("acquisitions", self.acquisitions)
        return merlin

    # ------------------------------------------------------------------ reactions
    def _kind_changed(self, index: int) -> None:
        self.stack.setCurrentIndex(index)
        for i in range(self.stack.count()):  # the stack takes the height of the page shown only
            policy = QtWidgets.QSizePolicy.Preferred if i == index else QtWidgets.QSizePolicy.Ignored
            self.stack.widget(i).setSizePolicy(QtWidgets.QSizePolicy.Preferred, policy)
        self.stack.adjustSize()
        self.repeats.setCurrentIndex(1 if KINDS[index] == "file" else 0)

    def _browse(self) -> None:
        path, _ = QtWidgets.QFileDialog.getOpenFileName(self, "Open 4D-STEM data")
        if path:
            self.path.setText(path)

    def _pause(self, on: bool) -> None:
        self.pause_button.setText("Resume" if on else "Pause")
        self.pause_toggled.emit(on)

    def _defocus_spin(self, value: float) -> None:
        self.defocus_slider.blockSignals(True)
        self.defocus_slider.setValue(round(max(-500, min(500, value))))
        self.defocus_slider.blockSignals(False)
        self._sim_changed()

    def _sim_changed(self, *_) -> None:
        self.simulator_changed.emit(self.simulation_changes())

    # ------------------------------------------------------------------ public
    def simulation_changes(self) -> dict:
        """The simulator fields the panel controls (those that may change while it runs)."""
        return {"defocus_A": self.defocus.value(), "astigmatism_A": self.astig.value(),
                "astigmatism_angle_deg": self.astig_angle.value(),
                "dose_e_per_probe": self.dose.value() or None}

    def request(self, scan_override=None) -> SourceRequest:
        """The current choice; ``scan_override`` (or None) is passed to file/stream readers."""
        kind = KINDS[self.kind.currentIndex()]
        opts = {"scan_shape": tuple(scan_override)} if scan_override is not None else {}
        d = int(self.det_size.currentText())
        page = self._page_of(kind)
        host = page.host.text().strip()
        acquisitions = page.acquisitions.value() or None
        return SourceRequest(kind=kind, path=self.path.text().strip(), host=host,
                             data_port=self.data_port.value(),
                             control_port=self.control_port.value() if self.use_control.isChecked() else None,
                             sim={**self.simulation_changes(), "detector_shape": (d, d)},
                             rate=self.rate.value() or None,
                             repeats="replace" if self.repeats.currentIndex() == 0 else "sum",
                             source_options=opts, session=kind in ("merlin", *_SESSION_PAGES),
                             acquisitions=acquisitions, dectris=self.dectris.options(),
                             timepix=self.timepix.options())

    def _page_of(self, kind: str):
        """The page holding the ``host`` and ``acquisitions`` fields of ``kind``."""
        return {"dectris": self.dectris, "timepix3": self.timepix}.get(kind, self)

    def set_request(self, req: SourceRequest) -> None:
        """Show ``req`` in the widgets (used by the command line)."""
        self.kind.setCurrentIndex(KINDS.index(req.kind))
        self.path.setText(req.path)
        page = self._page_of(req.kind)
        page.host.setText(req.host)
        self.dectris.set_options(req.dectris)
        self.timepix.set_options(req.timepix)
        page.acquisitions.setValue(req.acquisitions or 0)
        self.data_port.setValue(req.data_port)
        self.use_control.setChecked(req.control_port is not None)
        if req.control_port:
            self.control_port.setValue(req.control_port)
        self.rate.setValue(req.rate or 0)
        self.repeats.setCurrentIndex(0 if req.repeats == "replace" else 1)
        for key, w in (("defocus_A", self.defocus), ("astigmatism_A", self.astig),
                       ("astigmatism_angle_deg", self.astig_angle)):
            if key in req.sim:
                w.setValue(float(req.sim[key]))
        if "dose_e_per_probe" in req.sim:
            self.dose.setValue(float(req.sim["dose_e_per_probe"] or 0))
        if "detector_shape" in req.sim:
            self.det_size.setCurrentText(str(int(req.sim["detector_shape"][0])))

    def set_running(self, running: bool, paused: bool = False) -> None:
        self.start_button.setText("Restart" if running else "Start")
        self.pause_button.setEnabled(running)
        self.stop_button.setEnabled(running)
        self.kind.setEnabled(not running)
        self.det_size.setEnabled(not running)
        self.repeats.setEnabled(not running)
        if not running and self.pause_button.isChecked():
            self.pause_button.blockSignals(True)
            self.pause_button.setChecked(False)
            self.pause_button.setText("Pause")
            self.pause_button.blockSignals(False)
