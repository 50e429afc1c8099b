"""The fault plan of the Merlin simulator: what each acquisition on a data connection looks like.

Live clients meet more than clean single acquisitions (FORMATS.md §7): stale bytes
before a header, several acquisitions one after another on one connection (each with
its own header, sequence numbers from 1 and perhaps its own scan size), scans aborted
mid-way (frames just stop and the next header follows), headers whose scan size
disagrees with the frames sent, a detector that stalls with the connection open, a
connection dropped mid-frame, a truncated frame, messages split into small pieces.
`FaultPlan` holds these options for `ricom.simulators.merlin.server.MerlinServer` and
turns them into one `Acquisition` (the header to send and how many frames follow) per
acquisition on a connection; `FaultySender`, a part of the server, sends frames with
the faults that strike within a frame sequence (pacing, a dropped connection, a
truncated frame, split messages).

Options that take one value per acquisition (``abort_after``, ``stall_after``,
``header_scan_shape``, ``header_frames``, ``scan_shapes``) also accept a list, used in
turn (acquisition *i* takes item ``i % len``); ``None`` in a list means "no fault" for
that acquisition.
"""
from __future__ import annotations

import dataclasses
import socket
import time

import numpy as np

from ricom.core.errors import SettingsError
from ricom.core.params import shape2
from ricom.sources.merlin.control import PREFIX_BYTES, mpx_prefix


@dataclasses.dataclass(frozen=True)
class Acquisition:
    """One acquisition on a data connection: its header and the frames that follow.

    Attributes
    ----------
    index : int
        0 for the first acquisition on the connection, 1 for the next, ….
    junk : int
        Stale bytes sent just before this acquisition's header.
    n_frames : int
        Frames the acquisition lasts (0 = until stopped), before any abort or stall.
    header_scan : (int, int) or None
        ScanY/ScanX written in the header.
    header_frames : int
        ``Frames in Acquisition`` written in the header.
    abort_after, stall_after : int or None
        The acquisition ends (abort) or the stream stops with the connection open (stall)
        after this many frames.
    """

    index: int
    junk: int
    n_frames: int
    header_scan: tuple[int, int] | None
    header_frames: int
    abort_after: int | None = None
    stall_after: int | None = None

    @property
    def frames_to_send(self) -> int | None:
        """Frames actually sent (None = until stopped): the fewest of the count, abort and stall."""
        limits = [v for v in (self.abort_after, self.stall_after) if v is not None]
        if self.n_frames:
            limits.append(self.n_frames)
        return min(limits) if limits else None

    def note(self) -> str:
        """The faults of this acquisition for the server's log ("" when there are none)."""
        notes = [f"header says {self.header_frames} frames, scan {self.header_scan}"] \
            if self.header_frames != self.n_frames else []
        notes += [f"{what} after {k} frames" for what, k in (("abort", self.abort_after), ("stall", self.stall_after))
                  if k is not None]
        return f" ({'; '.join(notes)}: fault injection)" if notes else ""

    @property
    def stalls(self) -> bool:
        """Whether the stream stalls at the end of this acquisition's frames."""
        return self.stall_after is not None and self.frames_to_send == self.stall_after


def _nth(value, i: int):
    """``value`` itself, or item ``i % len`` of a list of per-acquisition values."""
    if isinstance(value, list):
        return value[i % len(value)] if value else None
    return value


def _shape(value, what: str) -> tuple[int, int] | None:
    return None if value is None else shape2(what, value)


def _shapes(value, what: str):
    """One shape ``(sy, sx)`` or a list of shapes (None items allowed) for one per acquisition."""
    if value is None:
        return None
    if isinstance(value, (list, tuple)) and value and not np.isscalar(value[0]):
        return [_shape(v, what) for v in value]
    return _shape(value, what)


def _counts(value, what: str, low: int = 0):
    """One non-negative count or a list of them (None items allowed)."""
    items = value if isinstance(value, (list, tuple)) else [value]
    for v in items:
        if v is not None and (int(v) != v or v < low):
            raise SettingsError(f"{what} must be {'≥ ' + str(low)} (or None), got {value!r}")
    if isinstance(value, (list, tuple)):
        return [None if v is None else int(v) for v in value] or None
    return None if value is None else int(value)


class FaultPlan:
    """The fault options of a `ricom.simulators.merlin.server.MerlinServer` (see its docstring).

    Parameters
    ----------
    junk_bytes, junk_between : int
        Stale bytes before the first header of a connection / before each later header.
    disconnect_after, truncate_frame : int, optional
        Drop the connection after this many frames (mid-way through the next one); send
        this frame (1-based) with its last quarter missing.  Both count in every acquisition.
    split_messages : bool
        Send in random pieces of 1 byte to 4 KiB.
    acquisitions : int
        Acquisitions started one after another on each data connection without the
        control port (the first one still waits for ``start_on``).
    between_s : float
        Pause before each of those later acquisitions (seconds).
    scan_shapes : list of (int, int), optional
        The scan of each acquisition, in turn; its frames are the first ``sy × sx`` frames
        of the data (from its start again when it runs out).
    abort_after, stall_after : int or list, optional
        End the acquisition / stop sending (connection kept open) after this many frames.
    header_scan_shape : (int, int) or list, optional
        ScanY/ScanX written in the header instead of the real scan.
    header_frames : int or list, optional
        ``Frames in Acquisition`` written in the header (default: ``sy × sx`` of
        ``header_scan_shape`` when that is given, else the frames of the acquisition).
    """

    def __init__(self, *, junk_bytes: int = 0, junk_between: int = 0, disconnect_after: int | None = None,
                 truncate_frame: int | None = None, split_messages: bool = False, acquisitions: int = 1,
                 between_s: float = 0.0, scan_shapes=None, abort_after=None, stall_after=None,
                 header_scan_shape=None, header_frames=None) -> None:
        if junk_bytes < 0 or junk_between < 0 or (disconnect_after or 0) < 0 or (truncate_frame or 1) < 1:
            raise SettingsError("junk bytes and disconnect-after must be ≥ 0, truncate-frame ≥ 1")
        if int(acquisitions) < 1 or between_s < 0:
            raise SettingsError(f"acquisitions must be ≥ 1 and between_s ≥ 0, got {acquisitions}, {between_s}")
        self.junk_bytes, self.junk_between, self.split = int(junk_bytes), int(junk_between), bool(split_messages)
        self.disconnect_after, self.truncate_frame = disconnect_after, truncate_frame
        self.acquisitions, self.between_s = int(acquisitions), float(between_s)
        self.scan_shapes = _shapes(list(scan_shapes) if scan_shapes is not None else None, "scan_shapes")
        if isinstance(self.scan_shapes, list) and None in self.scan_shapes:
            raise SettingsError("scan_shapes must all be (scan_y, scan_x) pairs")
        self.abort_after = _counts(abort_after, "abort_after")
        self.stall_after = _counts(stall_after, "stall_after")
        self.header_scan_shape = _shapes(header_scan_shape, "header_scan_shape")
        self.header_frames = _counts(header_frames, "header_frames")

    def start_delay(self, index: int) -> float | None:
        """Seconds before acquisition ``index`` (≥ 1) starts by itself; None = wait for a command."""
        return self.between_s if 1 <= index < self.acquisitions else None

    @staticmethod
    def junk(n: int, rng: np.random.Generator) -> np.ndarray:
        """``n`` random stale bytes (never an ``M``, so never an accidental ``MPX,``)."""
        junk = rng.integers(0, 256, n, dtype=np.uint8)
        junk[junk == ord("M")] = ord("N")  # no accidental "MPX,"
        return junk

    def acquisition(self, index: int, scan_shape, n_frames: int) -> Acquisition:
        """Acquisition ``index`` of a connection; ``scan_shape``/``n_frames`` are the settings'."""
        if self.scan_shapes is not None:
            scan_shape = _nth(self.scan_shapes, index)
            n_frames = scan_shape[0] * scan_shape[1]
        header_scan = _nth(self.header_scan_shape, index)
        header_frames = _nth(self.header_frames, index)
        if header_frames is None:
            header_frames = header_scan[0] * header_scan[1] if header_scan is not None and n_frames else n_frames
        return Acquisition(index=index, junk=self.junk_bytes if index == 0 else self.junk_between,
                           n_frames=int(n_frames), header_scan=header_scan or scan_shape,
                           header_frames=int(header_frames), abort_after=_nth(self.abort_after, index),
                           stall_after=_nth(self.stall_after, index))


class FaultySender:
    """Sending frames with pacing and faults: a part of `ricom.simulators.merlin.server.MerlinServer`.

    It uses the server's ``faults`` (a `FaultPlan`), ``rate_hz``, ``_rng``, ``_ended``,
    ``_say`` and its ``frames_sent``/``bytes_sent`` counters.
    """

    def _send_frames(self, conn: socket.socket, wire: np.ndarray, done: int, t0: float) -> int | None:
        """Send ``wire`` rows (frames done+1 …) with pacing and faults; frames sent, None if dropped."""
        cut = None if self.faults.disconnect_after is None else self.faults.disconnect_after + 1
        truncate = self.faults.truncate_frame
        faults = [f for f in (cut, truncate) if f is not None]
        j, k = 0, len(wire)
        while j < k and not self._ended():
            seq = done + j + 1
            if seq == cut:
                self._send(conn, wire[j, :wire.shape[1] // 2])
                self._say(f"dropping the connection after {seq - 1} frames (fault injection)")
                conn.shutdown(socket.SHUT_RDWR)
                return None
            if seq == truncate:
                body = wire[j, PREFIX_BYTES:wire.shape[1] - max(1, wire.shape[1] // 4)]
                self._send(conn, np.concatenate([np.frombuffer(mpx_prefix(body.size), np.uint8), body]))
                j += 1
                continue
            m = k - j
            if self.rate_hz > 0:
                late = (time.monotonic() - t0) * self.rate_hz
                due = int(late) + 1 - (done + j)
                if due <= 0:
                    time.sleep(min(0.05, (done + j - late) / self.rate_hz))
                    continue
                m = min(m, due)
            m = min([m] + [f - seq for f in faults if f > seq])
            self._send(conn, wire[j:j + m])
            self.frames_sent += m
            j += m
        return j

    def _send(self, conn: socket.socket, data) -> None:
        view = memoryview(np.ascontiguousarray(data).reshape(-1)) if isinstance(data, np.ndarray) \
            else memoryview(data)
        if not self.faults.split:
            conn.sendall(view)
        else:
            pos = 0
            while pos < len(view):
                piece = int(self._rng.integers(1, 17) if self._rng.random() < 0.5 else self._rng.integers(17, 4097))
                conn.sendall(view[pos:pos + piece])
                pos += piece
        self.bytes_sent += len(view)
