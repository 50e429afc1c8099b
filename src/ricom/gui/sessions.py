"""Live sessions in the GUI: a Merlin, DECTRIS or Timepix3 detector watched acquisition after acquisition.

Owns `SessionWorker` (runs a `ricom.live.session.LiveSession` in a thread, with the
same polling interface as `ricom.gui.worker.RunWorker`, so the window draws the
acquisition being received like any run; the detector's acquisition stream comes from
`ricom.gui.live_streams`) and `SessionDock` (the *Acquisitions* dock: the
finished acquisitions with their state, frames and why they are partial, and the choice
between following the acquisition being received and a frozen view of one selected).

What the panels show: while *follow the acquisition being received* is ticked, the
newest acquisition (the one arriving, or the last one finished).  Selecting a finished
acquisition unticks it and shows that acquisition's reconstruction, frozen, while the
session goes on (new ones are still listed; settings edits apply to the one shown);
ticking it again returns to the newest.  The reconstructions of the last `KEEP_LAST`
acquisitions are kept; older entries stay listed without images, so a session that runs
for hours does not grow without bound.  What each acquisition is (the session's
``Status.announce``: frames, detector mode, scan, pixel mask) goes to the status bar
when it starts and stays as the state's tooltip.

A raw Timepix3 stream's acceptance time can be changed while the session runs
(`SessionWorker.set_acceptance`): the stream sends every electron with its arrival time,
the engine of the latest scan keeps them (`ricom.engine.reduction.ChunkReduction.keep_events`)
and rebuilds that scan's image with the new value — received so far or finished — on a
background thread (`AcceptanceControl`), and later scans start with it.  Only the latest
scan keeps its events (up to `ricom.engine.event_store.DEFAULT_MAX_EVENTS`); past that
bound, the new value holds from the next scan on, and the status bar says so.

Nothing here computes images: every snapshot comes from the engine.
"""
from __future__ import annotations

import collections
import threading

from PySide6 import QtCore, QtWidgets

from ricom.core.errors import SettingsError
from ricom.gui.live_streams import SourceTap, TappedStream, acquisition_stream
from ricom.gui.settings_column import settings_with_hints
from ricom.gui.source_panel import SourceRequest
from ricom.gui.worker import describe_error
from ricom.live.session import Acquisition, LiveSession, State, Status

KEEP_LAST = 16
"""Finished acquisitions whose reconstruction (and images) the list keeps."""


class SessionWorker:
    """Run a live session in a background thread (the window polls it, as a `RunWorker`).

    Parameters
    ----------
    request : SourceRequest
        A Merlin request (host, ports; with ``control_port``, each acquisition is armed
        and started from ricom), a DECTRIS one (host, ``dectris``: stream, ports, mode) or a
        Timepix3 one (host, ``timepix``: raw or ASI, listen or connect, sync, acceptance),
        with ``acquisitions`` (None: until stopped) and source options.
    settings : ricom.core.settings.Settings
        Settings of the first acquisition (the input's calibration fills the gaps).
    chunk_size : int
        Frames per engine chunk.
    scan_shape : (int, int), optional
        The settings column's scan: what an active DECTRIS session arms the detector for,
        and the scan of a raw Timepix3 stream (unless the request's source options override it).

    Attributes
    ----------
    stream : TappedStream or None
        The detector's acquisition stream (``stream.connection`` once connected).
    rec, tap : Reconstruction, SourceTap or None
        The engine and the source of the acquisition received last (None before the first).
    source : SourceTap or None
        Same as ``tap``.
    status : Status or None
        The session's latest status.
    done : collections.deque of Acquisition
        Finished acquisitions not yet taken by the window (`take`).
    notes : collections.deque of str
        Warnings for the message bar, not yet taken.
    announced : collections.deque of str
        What each acquisition is, as it starts (``Status.announce``), not yet taken.
    last : Acquisition or None
        The acquisition finished last.
    error : str or None
        Why the session failed (a refused connection, a dropped one).
    """

    pausable = False

    def __init__(self, request: SourceRequest, settings, chunk_size: int = 512, scan_shape=None,
                 methods: dict | None = None) -> None:
        self.request, self.settings, self.chunk_size, self.scan_shape = request, settings, int(chunk_size), scan_shape
        self.methods = dict(methods or {})
        """`ricom.api.reconstruct_run`'s ``methods`` and ``refresh_s``: tcBF and SSB beside riCOM."""
        self.stop_event = threading.Event()
        self.finished = threading.Event()
        self.rec = self.tap = self.source = None
        self.status: Status | None = None
        self.done: collections.deque = collections.deque()
        self.notes: collections.deque = collections.deque()
        self.announced: collections.deque = collections.deque()
        self.error: str | None = None
        self.last: Acquisition | None = None
        self.paused = False
        self.session: LiveSession | None = None
        self.stream: TappedStream | None = None
        self.thread = threading.Thread(target=self._main, name="ricom-gui-session", daemon=True)
        t = request.timepix if request.kind == "timepix3" else None
        self.said: collections.deque = collections.deque()
        """Messages for the status bar (acceptance-time changes), not yet taken."""
        self.acceptance = AcceptanceControl(t.acceptance_ns or None, self.said) \
            if t is not None and t.protocol == "raw" else None
        """The acceptance time of a raw Timepix3 session (None for other detectors)."""

    def start(self) -> SessionWorker:
        self.thread.start()
        return self

    def _make_session(self) -> LiveSession:
        """The session (built in the thread: a bad request is an error message, not a traceback)."""
        self.stream = TappedStream(acquisition_stream(self.request, self.stop_event, self.scan_shape),
                                   self.notes.append)
        return LiveSession(self.stream, acquisitions=self.request.acquisitions,
                           stop=self.stop_event, on_status=self._on_status, on_acquisition=self._finished,
                           reconstruct={"settings": self.settings, "chunk_size": self.chunk_size, **self.methods},
                           on_start=self._attach, settings_for=self._settings_for, keep=False, status_s=0.25)

    def _main(self) -> None:
        try:
            self.session = self._make_session()
            self.session.run()
            if self.last is not None and self.last.state is State.FAILED:
                self.error = self.last.reason
        except Exception as exc:  # a refused or lost connection: said in the window
            self.error = describe_error(exc)
        finally:
            self.finished.set()

    def _settings_for(self, tap: SourceTap):
        """The next acquisition's settings: the current ones (edits carry over) completed from its header."""
        base = self.rec.settings if self.rec is not None else self.settings
        return settings_with_hints(base, tap.hints(), tap.scan_shape) if tap.scan_shape is not None else None

    def _attach(self, index: int, rec, source) -> None:
        """The session's hook before the first chunk: the window draws this engine from now on."""
        if self.acceptance is not None:  # a raw Timepix3 scan: the engine filters, and keeps the events
            if self.rec is not None:
                self.rec.event_store = None  # only the latest scan keeps its events
            rec.keep_events()
            rec.set_acceptance(self.acceptance.value)
        self.tap = self.source = source
        self.rec = rec

    def _finished(self, acq: Acquisition) -> None:
        self.last = acq
        self.done.append(acq)

    def _on_status(self, status: Status) -> None:
        self.status = status
        if status.announce:
            self.announced.append(f"acquisition {status.acquisition}: {status.announce.removeprefix('acquisition: ')}")
        if status.warning:
            self.notes.append(f"acquisition {status.acquisition}: {status.warning}")

    def take(self) -> list[Acquisition]:
        """The acquisitions finished since the last call, oldest first."""
        out = []
        while self.done:
            out.append(self.done.popleft())
        return out

    # ------------------------------------------------------------------ control (as RunWorker)
    @property
    def running(self) -> bool:
        return self.thread.is_alive()

    @property
    def processed(self) -> int:
        return self.tap.frames if self.tap is not None else 0

    def pause(self) -> None:
        """A detector does not wait: a live session cannot pause."""

    def resume(self) -> None:
        """See `pause`."""

    def set_acceptance(self, ns: float | None) -> bool:
        """Keep only electrons arriving ``ns`` after the probe (None or 0: all): the latest
        scan is rebuilt with it (see `AcceptanceControl`), later ones start with it.

        False when the stream has no acceptance time (not a raw Timepix3 stream).
        """
        if self.acceptance is None:
            return False
        self.acceptance.set(ns or None, self.rec)
        return True

    def stop(self, wait: float | None = None) -> None:
        """End the session (the acquisition being received is kept as partial)."""
        self.stop_event.set()
        if wait is not None and self.thread.is_alive():
            self.thread.join(wait)


def describe_acquisition(acq: Acquisition) -> str:
    """One list line: index, state, frames received (of those announced), why partial."""
    count = acq.count
    of = f"/{count.n_expected}" if count.n_expected else ""
    line = f"#{acq.index}  {acq.state.value}, {count.n_received}{of} frames"
    return f"{line} — {acq.reason}" if acq.reason else line


class SessionDock(QtCore.QObject):
    """The *Acquisitions* dock of the main window and how the window follows a session.

    Parameters
    ----------
    window : ricom.gui.window.MainWindow
        Needs ``worker``, ``rec``, ``state_label``, ``show_message`` and
        ``show_reconstruction``.

    Attributes
    ----------
    dock : QDockWidget
    list : QListWidget
        One row per finished acquisition, oldest first.
    follow : QCheckBox
        Show the acquisition being received (ticked) or the one selected in the list.
    acquisitions : list of Acquisition or None
        By row; None once its reconstruction is no longer kept (`KEEP_LAST`).
    """

    def __init__(self, window) -> None:
        super().__init__(window)
        self.window = window
        self.acquisitions: list[Acquisition | None] = []
        inner = QtWidgets.QWidget()
        lay = QtWidgets.QVBoxLayout(inner)
        lay.setContentsMargins(4, 4, 4, 4)
        self.follow = QtWidgets.QCheckBox("follow the acquisition being received", checked=True)
        self.list = QtWidgets.QListWidget(toolTip="finished acquisitions; select one to show it (frozen)")
        lay.addWidget(self.follow)
        lay.addWidget(self.list, 1)
        self.dock = QtWidgets.QDockWidget("Acquisitions", window)
        self.dock.setObjectName("dock_acquisitions")
        self.dock.setWidget(inner)
        self.list.currentRowChanged.connect(self.select)
        self.follow.toggled.connect(self._follow_toggled)

    def clear(self) -> None:
        """Empty the list (a new session starts)."""
        self.acquisitions.clear()
        self.list.clear()
        self.follow.setChecked(True)

    def add(self, acq: Acquisition) -> None:
        """List a finished acquisition (only the last `KEEP_LAST` keep their images)."""
        self.acquisitions.append(acq)
        item = QtWidgets.QListWidgetItem(describe_acquisition(acq))
        item.setToolTip(acq.header or describe_acquisition(acq))
        self.list.addItem(item)
        for row in range(max(0, len(self.acquisitions) - KEEP_LAST)):
            if self.acquisitions[row] is not None and self.acquisitions[row].reconstruction is not self.window.rec:
                self.acquisitions[row] = None
                self.list.item(row).setText(f"{self.list.item(row).text()} (images no longer kept)")

    def select(self, row: int) -> None:
        """Show the acquisition of ``row`` (frozen: the view stops following the session)."""
        if row < 0 or row >= len(self.acquisitions):
            return
        acq = self.acquisitions[row]
        if acq is None:
            self.window.show_message(f"the images of acquisition {row + 1} are no longer kept "
                                     f"(the last {KEEP_LAST} are)")
            return
        self.follow.blockSignals(True)
        self.follow.setChecked(False)
        self.follow.blockSignals(False)
        self.window.show_reconstruction(acq.reconstruction)

    def _follow_toggled(self, on: bool) -> None:
        if on:
            self.list.blockSignals(True)
            self.list.setCurrentRow(-1)
            self.list.blockSignals(False)
            self.poll()

    def set_acceptance(self, ns: float) -> None:
        """The acceptance time was edited: the running raw Timepix3 session rebuilds its latest scan."""
        w = self.window.worker
        if isinstance(w, SessionWorker) and w.running:
            w.set_acceptance(ns)

    def poll(self) -> None:
        """From the window's timer: list finished acquisitions, follow the newest, show the status."""
        w = self.window.worker
        if not isinstance(w, SessionWorker):
            return
        for acq in w.take():
            self.add(acq)
        while w.notes:
            self.window.show_message(w.notes.popleft(), error=True)
        while w.said:
            self.window.show_message(w.said.popleft())
        while w.announced:
            text = w.announced.popleft()
            self.window.show_message(text)
            self.window.state_label.setToolTip(text)
        if self.follow.isChecked() and w.rec is not None and w.rec is not self.window.rec:
            self.window.show_reconstruction(w.rec)
        if w.status is not None and w.running:
            self.window.state_label.setText(w.status.line())


def _ns(value) -> str:
    return f"{value:g} ns" if value else "off"


class AcceptanceControl:
    """The acceptance time of a raw Timepix3 session, applied to the latest scan's engine on
    one background thread (a rebuild replays the scan's events: not on the GUI thread).

    Edits that come faster than rebuilds collapse into the newest.  Each outcome goes to
    ``said`` (the window's status messages).
    """

    def __init__(self, value: float | None, said: collections.deque) -> None:
        self.value, self.said = value, said
        self._pending: tuple | None = None
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def set(self, value: float | None, rec) -> None:
        """Use ``value`` from now on, and rebuild ``rec`` (the latest scan's engine) with it."""
        with self._lock:
            self.value = value
            self._pending = (value, rec)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._apply, name="ricom-gui-acceptance", daemon=True)
                self._thread.start()

    def _apply(self) -> None:
        while True:
            with self._lock:
                if self._pending is None:
                    return
                (value, rec), self._pending = self._pending, None
            if rec is None:
                self.said.append(f"acceptance time {_ns(value)} from the first scan on")
                continue
            try:
                rec.set_acceptance(value)
                self.said.append(f"acceptance time {_ns(value)}: the latest scan was rebuilt with it")
            except SettingsError as exc:
                self.said.append(f"acceptance time {_ns(value)} from the next scan on ({exc})")

    def wait(self, timeout: float = 10.0) -> None:
        """Until the rebuilds asked for so far are done (tests)."""
        thread = self._thread
        if thread is not None:
            thread.join(timeout)
