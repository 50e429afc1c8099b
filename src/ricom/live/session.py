"""A live session: one detector connection, acquisition after acquisition, nothing lost.

`LiveSession` is the layer every live source plugs into (Merlin now; DECTRIS and
Timepix3 next).  It connects (`State.CONNECTING`), waits for an acquisition that ricom
or the microscope software starts (`State.WAITING`), reconstructs it while it arrives
(`State.RECEIVING`) and hands each finished acquisition to the caller as an
`Acquisition` (`State.FINISHED`, or `State.ABORTED` when it ended early, `State.FAILED`
when the connection broke).  Then it waits for the next one, ``acquisitions`` times or
until stopped.  Every state change and a periodic `Status` go to ``on_status``; every
acquisition to ``on_acquisition`` (the frontend saves it); the session itself writes
nothing.

A detector family provides an `AcquisitionStream`: ``connect()`` opens the connection,
``next_source(connection)`` blocks until the next acquisition header and returns its
`ricom.sources.base.Source` (with ``frames_received``, ``n_frames``, ``scan_shape``,
``header_scan_shape`` and ``acquisition_header``).
"""
from __future__ import annotations

import enum
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from ricom.api import reconstruct_run
from ricom.core.errors import InputError
from ricom.engine.pipeline import RunResult
from ricom.engine.reconstruction import Reconstruction
from ricom.live.bookkeeping import ScanCount, count_scan, source_shape_problem

RETRY_S = 0.5
"""Pause between attempts to reconnect."""


class State(str, enum.Enum):
    """Where a live session is."""

    CONNECTING = "connecting"
    WAITING = "waiting for acquisition"
    RECEIVING = "receiving"
    FINISHED = "finished"
    ABORTED = "aborted"
    FAILED = "failed"


@dataclass
class Status:
    """What the status line shows: state, frames, rate and latency of the current acquisition."""

    state: State
    acquisition: int = 0
    frames: int = 0
    expected: int | None = None
    rate_hz: float = 0.0
    dropped: int = 0
    """Frames the detector sent that never arrived (sequence-number gaps), so far."""
    not_recorded: int = 0
    """Frames the recorder could not take (the disk did not keep up), so far."""
    latency_ms: float | None = None
    message: str = ""
    warning: str | None = None
    """Said once, when the acquisition starts (e.g. a scan shape that disagrees with the header)."""
    announce: str | None = None
    """Said once, when the acquisition starts: what it is (frames, detector mode, scan)."""

    def line(self) -> str:
        """One line for a terminal or a status bar."""
        parts = [f"[{self.acquisition}] {self.state.value}" if self.acquisition else self.state.value]
        if self.state is State.RECEIVING or self.frames:
            of = f"/{self.expected}" if self.expected else ""
            parts.append(f"{self.frames}{of} frames")
            if self.rate_hz:
                parts.append(f"{self.rate_hz:,.0f}/s")
            if self.dropped:
                parts.append(f"{self.dropped} dropped")
            if self.not_recorded:
                parts.append(f"{self.not_recorded} not recorded")
        if self.latency_ms is not None:
            parts.append(f"latency {self.latency_ms:.0f} ms")
        if self.message:
            parts.append(self.message)
        return ", ".join(parts)


@dataclass
class Acquisition:
    """One acquisition of a session, as the frontend saves it.

    ``reason`` says why it is partial (None: complete); ``count`` is the scan bookkeeping
    (`ricom.live.bookkeeping.ScanCount`); ``header`` the detector's acquisition header.
    """

    index: int
    state: State
    result: RunResult
    reconstruction: Reconstruction
    count: ScanCount
    header: str = ""
    started: float = 0.0
    ended: float = 0.0
    reason: str | None = None
    source_info: dict = field(default_factory=dict)
    recording: dict = field(default_factory=dict)
    """The recorder's counts (``n_recorded``, ``n_not_recorded``, …) when recording."""

    @property
    def complete(self) -> bool:
        return self.state is State.FINISHED and self.reason is None


class AcquisitionStream:
    """How a detector family delivers acquisitions (see the module docstring)."""

    def connect(self):  # pragma: no cover - interface
        raise NotImplementedError

    def next_source(self, connection):  # pragma: no cover - interface
        raise NotImplementedError


class LiveSession:
    """Acquisitions from one detector connection, reconstructed one after another.

    Parameters
    ----------
    stream : AcquisitionStream
        The detector family's connection and acquisitions.
    acquisitions : int or None
        How many acquisitions to handle; None: until stopped.
    stop : threading.Event, optional
        Set it to end the session (the acquisition being received is kept as partial).
    on_status : callable, optional
        Receives a `Status` on every state change and about every ``status_s`` seconds.
    on_acquisition : callable, optional
        Receives each finished `Acquisition` (save it here).
    reconstruct : dict
        Keyword arguments of `ricom.api.reconstruct_run` (settings, chunk size, …).
    pad : bool
        Fewer frames than the scan needs are expected (the rest stay empty): no problem.
    on_start : callable, optional
        ``on_start(index, reconstruction, source)`` before the first chunk of each
        acquisition (a GUI shows this engine from then on).
    settings_for : callable, optional
        ``settings_for(source)`` returns the `Settings` of an acquisition once its header
        is known (e.g. completed from the header's hints); None keeps ``reconstruct``'s.
    reconnect : bool
        After a dropped connection (or one closed while waiting), connect again and wait
        for the next acquisition (stale bytes before its header are skipped), trying for
        ``reconnect_s`` seconds; otherwise the session ends there.
    keep : bool
        Keep every `Acquisition` (with its reconstruction) in `finished`; a session that
        runs for hours hands them to ``on_acquisition`` only (``keep=False``), so its
        memory does not grow with the number of acquisitions.
    record : callable, optional
        ``record(index, reconstruction, source)`` returns a recorder (a reducer with
        ``close() -> dict``, e.g. `ricom.io.attach.attach_recorder`) already attached to
        the reconstruction; it is closed when the acquisition ends and its counts kept in
        `Acquisition.recording`.
    """

    def __init__(self, stream: AcquisitionStream, *, acquisitions: int | None = 1,
                 stop: threading.Event | None = None, on_status: Callable[[Status], None] | None = None,
                 on_acquisition: Callable[[Acquisition], None] | None = None, status_s: float = 1.0,
                 reconstruct: dict | None = None, pad: bool = False, record=None, reconnect: bool = False,
                 reconnect_s: float = 30.0, keep: bool = True, on_start=None, settings_for=None) -> None:
        self.stream, self.acquisitions = stream, acquisitions
        self.stop = stop or threading.Event()
        self.on_status, self.on_acquisition = on_status, on_acquisition
        self.status_s, self.reconstruct, self.pad = float(status_s), dict(reconstruct or {}), bool(pad)
        self.record, self.on_start, self.settings_for = record, on_start, settings_for
        self.reconnect, self.reconnect_s, self.keep = bool(reconnect), float(reconnect_s), bool(keep)
        self.finished: list[Acquisition] = []
        self.n_done = self.reconnects = 0
        self.state = State.CONNECTING

    def _say(self, status: Status) -> None:
        self.state = status.state
        if self.on_status is not None:
            self.on_status(status)

    def run(self) -> list[Acquisition]:
        """Connect and handle acquisitions until ``acquisitions`` are done, the connection
        breaks (without ``reconnect``) or a stop request; returns them (each also handed to
        ``on_acquisition``)."""
        self._say(Status(State.CONNECTING))
        connection = self.stream.connect()
        try:
            while not self.stop.is_set() and (self.acquisitions is None or self.n_done < self.acquisitions):
                index = self.n_done + 1
                self._say(Status(State.WAITING, index))
                try:
                    source = self.stream.next_source(connection)
                except KeyboardInterrupt:  # a stop request while waiting: nothing was received
                    break
                except InputError as exc:  # the connection closed while waiting
                    if not self.reconnect:
                        raise
                    connection = self._reconnect(connection, str(exc))
                    continue
                acq = self._receive(index, source)
                self._hand_over(acq)
                if acq.state is State.FAILED:
                    if not self.reconnect:
                        break
                    connection = self._reconnect(connection, acq.reason)
        finally:
            connection.close()
        return self.finished

    def _hand_over(self, acq: Acquisition) -> None:
        self.n_done += 1
        if self.on_acquisition is not None:
            self.on_acquisition(acq)
        if self.keep:
            self.finished.append(acq)

    def _reconnect(self, connection, why: str):
        """A new connection after ``connection`` broke, retried until ``reconnect_s`` has passed."""
        connection.close()
        self.reconnects += 1
        t_end = time.monotonic() + self.reconnect_s
        while True:
            self._say(Status(State.CONNECTING, self.n_done + 1, message=f"reconnecting ({why})"))
            try:
                return self.stream.connect()
            except InputError:
                if time.monotonic() >= t_end or self.stop.wait(RETRY_S):
                    raise

    def _receive(self, index: int, source) -> Acquisition:
        started = time.time()
        ticker = _Ticker(self, index, source, source_shape_problem(source, pad=self.pad))

        def attach(rec, src) -> None:
            if self.record is not None:
                ticker.recorders.append(self.record(index, rec, src))
            if self.on_start is not None:
                self.on_start(index, rec, src)

        options = dict(self.reconstruct)
        if self.settings_for is not None:
            settings = self.settings_for(source)
            if settings is not None:
                options["settings"] = settings
        try:
            result, rec, _ = reconstruct_run(source, stop=self.stop, progress=ticker, before_run=attach,
                                             full_scan=False, **options)  # the scan is counted below
        finally:
            source.close()
            recording = ticker.recorders[0].close() if ticker.recorders else {}
        lost = bool(getattr(getattr(source, "connection", None), "lost", False))
        state, reason = _outcome(result, self.stop.is_set(), lost)
        count = count_scan(rec, source, pad=self.pad)
        if reason is None and not count.consistent:
            reason = count.problem
        result.snapshot.complete, result.snapshot.reason = reason is None, reason
        latency = sorted(result.latency_s)
        median_ms = 1e3 * latency[len(latency) // 2] if latency else None
        self._say(Status(state, index, source.frames_received, source.n_frames,
                         dropped=int(getattr(source, "frames_lost", 0)),
                         not_recorded=int(recording.get("n_not_recorded", 0)), latency_ms=median_ms,
                         message=reason or ""))
        info = source.describe()
        return Acquisition(index, state, result, rec, count, getattr(source, "acquisition_header", ""),
                           started, time.time(), reason, info, recording)


def _outcome(result: RunResult, stopped: bool, lost: bool) -> tuple[State, str | None]:
    """The state an acquisition ended in, and why it is partial (None: complete); ``lost``:
    the connection broke."""
    if result.error is not None:
        return (State.FAILED if lost else State.ABORTED), result.error
    if result.interrupted or stopped:
        return State.ABORTED, "stopped before the acquisition ended"
    return State.FINISHED, None


class _Ticker:
    """The pipeline's progress callback: a `Status` about every ``status_s`` seconds."""

    def __init__(self, session: LiveSession, index: int, source, warning: str | None) -> None:
        self.session, self.index, self.source = session, index, source
        self.recorders: list = []  # filled before the first chunk when recording
        self.t0 = self.t_last = time.monotonic()
        about = source.summary() if hasattr(source, "summary") else f"scan {source.scan_shape}"
        session._say(Status(State.RECEIVING, index, 0, source.n_frames, warning=warning,
                            announce=f"acquisition: {about}"))

    def __call__(self, n: int) -> None:
        now = time.monotonic()
        if now - self.t_last < self.session.status_s:
            return
        self.t_last = now
        frames = self.source.frames_received
        rate = frames / (now - self.t0) if now > self.t0 else 0.0
        dropped = int(getattr(self.source, "frames_lost", 0))
        missed = sum(int(getattr(r, "n_not_recorded", 0)) for r in self.recorders)
        self.session._say(Status(State.RECEIVING, self.index, frames, self.source.n_frames, rate, dropped, missed))


__all__ = ["Acquisition", "AcquisitionStream", "LiveSession", "State", "Status"]
