"""A Merlin detector simulator: control and data ports over TCP, serving real MIB frames.

It behaves like the Merlin software (FORMATS.md §2): on the data port (default 6342)
each acquisition is one ``MPX,<len+1>,HDR,…`` message (the ``.hdr`` text) followed by
one ``MPX,<len+1>,`` + MIB frame message per frame; the control port (default 6341)
answers ``MPX``-framed ``GET``/``SET``/``CMD`` requests (`ricom.simulators.merlin.control`:
the parameters, commands and return codes).

When an acquisition starts (``start_on``): ``"connect"`` — as soon as a data client
connects (like LiberTEM-live's simulator); ``"command"`` — on ``STARTACQUISITION``
(like the detector; with ``TRIGGERSTART 5`` frames wait for ``SOFTTRIGGER``);
``"auto"`` (default) — on ``STARTACQUISITION`` or ``auto_start_s`` after the data
client connected, whichever is first.  Later acquisitions on the same connection need
``STARTACQUISITION``, or start by themselves with ``acquisitions=N`` (``between_s``
apart), as when the microscope software starts scans one after another.

Frames come from a ``.mib`` file, an integer array, or the built-in specimen
(`ricom.simulators.merlin.feed` encodes them).  This module owns `MerlinServer`: its life cycle,
threads and the data port, which plays the faults a live client must survive
(`ricom.simulators.merlin.faults`): junk bytes before a header, several acquisitions
on one connection (each with its own header and scan size), an aborted scan, a header
whose scan size disagrees with the frames, a stall with the connection open, a
disconnect after N frames (in the middle of frame N + 1), a truncated frame, messages
sent in random small pieces.  `MerlinServer.start` runs it on background threads
(``port 0`` picks a free port); ``ricom simulate merlin`` runs it in the foreground.
"""
from __future__ import annotations

import select
import socket
import sys
import threading
import time

import numpy as np

from ricom.core.errors import InputError, SettingsError
from ricom.simulators.merlin.control import SETTABLE, ControlPort
from ricom.simulators.merlin.faults import FaultPlan, FaultySender
from ricom.simulators.merlin.feed import Feed, make_feed, patch_sequence, wire_messages
from ricom.sources.merlin.control import mpx_prefix
from ricom.sources.merlin.hdr import make_acquisition_header


class MerlinServer(ControlPort, FaultySender):
    """A simulated Merlin detector (see the module docstring).

    Parameters
    ----------
    data : str, ndarray or SimulationParams
        A ``.mib`` file, integer frames ``(n, rows, cols)`` or ``(sy, sx, rows, cols)``,
        or the built-in specimen.
    scan_shape : (int, int), optional
        Written as ScanY/ScanX in the acquisition header (default: from the data).
    host : str
        Interface to listen on (default loopback).
    data_port, control_port : int
        0 picks a free port; ``control_port=None`` runs without a control port.
    depth : {1, 6, 12, 24}, optional
        Counter depth (default: the file's, else 12).
    raw : bool, optional
        Send raw ``R64`` frames (default: the file's, else processed).
    rate_hz : float
        Frames per second (0 = as fast as possible).
    repeat : int
        Passes over the data in one acquisition (frames in acquisition = repeat × frames).
    junk_bytes : int
        Stale bytes sent on every data connection before the first header.
    junk_between : int
        Stale bytes sent before every later header on the same connection.
    disconnect_after : int, optional
        Close the data connection after this many frames (mid-way through the next one).
    truncate_frame : int, optional
        Send this frame (1-based) with its last quarter missing (and a matching MPX length).
    split_messages : bool
        Send in random pieces of 1 byte to 4 KiB (exercises message reassembly).
    acquisitions : int
        Acquisitions on each data connection without the control port: the first starts
        as ``start_on`` says, each later one ``between_s`` after the previous one ended,
        with a new header and sequence numbers from 1 (later ones still follow
        ``STARTACQUISITION``).
    between_s : float
        The pause between those acquisitions (seconds).
    scan_shapes : list of (int, int), optional
        The scan of each acquisition in turn (acquisition i takes item i % len); it
        lasts ``sy × sx`` frames, the first of the data (from its start again when the
        data run out: a smaller scan with the data's width is its first rows).  Sets
        the frame count instead of ``repeat``/``NUMFRAMESTOACQUIRE``.
    abort_after : int or list, optional
        End each acquisition after this many frames, as an operator's abort does: the
        header announced more, nothing marks the end, the next header (if any) follows.
    header_scan_shape : (int, int) or list, optional
        ScanY/ScanX written in the header instead of the real scan (frames sent unchanged).
    header_frames : int or list, optional
        ``Frames in Acquisition`` written in the header (default: ``sy × sx`` of
        ``header_scan_shape`` when given, as the Merlin software computes it; else the
        frames of the acquisition).
    stall_after : int or list, optional
        Send this many frames, then nothing more while the connection stays open (until
        the server stops or the client leaves).  For ``abort_after``, ``stall_after`` and
        ``header_*`` a list gives one value per acquisition in turn (None = no fault);
        frames count from 1 in each acquisition (so do ``disconnect_after``, ``truncate_frame``).
    start_on : {"auto", "connect", "command"}
        When an acquisition starts; see the module docstring.
    once : bool
        Stop after the first data connection ends.
    log : callable, optional
        Receives one-line event messages.
    cache_bytes : int
        An encoded pass over the frames is kept in memory up to this size and served from
        there on later passes.
    preload : bool
        Fill that cache before serving, so that even the first pass is sent from memory
        (the simulator then sends at loopback speed, not at the speed of re-encoding).
    """

    def __init__(self, data, *, scan_shape=None, host: str = "127.0.0.1", data_port: int = 6342,
                 control_port: int | None = 6341, depth: int | None = None, raw: bool | None = None,
                 rate_hz: float = 0.0, repeat: int = 1, junk_bytes: int = 0, disconnect_after: int | None = None,
                 truncate_frame: int | None = None, split_messages: bool = False, start_on: str = "auto",
                 auto_start_s: float = 0.5, once: bool = False, seed: int = 0, log=None,
                 cache_bytes: int = 1 << 30, preload: bool = False, junk_between: int = 0, acquisitions: int = 1,
                 between_s: float = 0.0, scan_shapes=None, abort_after=None, header_scan_shape=None,
                 header_frames=None, stall_after=None) -> None:
        self.faults = FaultPlan(junk_bytes=junk_bytes, junk_between=junk_between, disconnect_after=disconnect_after,
                                truncate_frame=truncate_frame, split_messages=split_messages,
                                acquisitions=acquisitions, between_s=between_s, scan_shapes=scan_shapes,
                                abort_after=abort_after, stall_after=stall_after,
                                header_scan_shape=header_scan_shape, header_frames=header_frames)
        if start_on not in ("auto", "connect", "command"):
            raise SettingsError(f"start_on must be 'auto', 'connect' or 'command', got {start_on!r}")
        if repeat < 1 or rate_hz < 0:
            raise SettingsError(f"repeat must be ≥ 1 and rate ≥ 0, got {repeat}, {rate_hz}")
        if repeat > 1 and scan_shapes is not None:
            raise SettingsError("scan_shapes sets the frames of each acquisition; do not combine it with repeat")
        self.feed = data if isinstance(data, Feed) else make_feed(data, scan_shape, depth)
        dy, dx = self.feed.detector_shape
        self._raw_ok = (dy * dx) % 64 == 0  # raw R64 words hold 64 bits of pixels
        if raw and not self._raw_ok:
            raise SettingsError(f"raw frames need a multiple of 64 pixels; {dy}×{dx} has {dy * dx}")
        self.host, self.rate_hz = host, float(rate_hz)
        self.start_on, self.auto_start_s, self.once, self.log = start_on, float(auto_start_s), once, log
        self.cache_bytes, self._rng = cache_bytes, np.random.default_rng(seed)
        self.params = {k: v for k, ((_, _), v) in SETTABLE.items()}
        d0, r0 = self.feed.native
        self.params.update(COUNTERDEPTH=depth or d0, FILEFORMAT=2 if (r0 if raw is None else raw) else 0,
                           NUMFRAMESTOACQUIRE=self.feed.n_frames * int(repeat))
        self.scan_shape = tuple(scan_shape) if scan_shape is not None else self.feed.scan_shape
        self._ports = (data_port, control_port)
        self._cache: dict = {}
        self._cond = threading.Condition()
        self._state, self._start_pending, self._auto, self._trigger, self._abort = "idle", False, False, False, False
        self._stopping = threading.Event()
        self.finished = threading.Event()
        self._threads: list[threading.Thread] = []
        self._conns: set = set()
        self._listeners: list[socket.socket] = []
        self.data_port = self.control_port = None
        self.frames_sent = self.bytes_sent = self.acquisitions = 0
        self.error: BaseException | None = None
        if preload:  # fill the cache now (kept only if the pass fits in cache_bytes)
            for _ in wire_messages(self.feed, self.params["COUNTERDEPTH"], self.params["FILEFORMAT"] == 2,
                                   self._cache, self.cache_bytes):
                pass

    # --- life cycle ----------------------------------------------------------------------
    def start(self) -> MerlinServer:
        """Listen on the ports and serve on background threads; returns self."""
        try:
            data = self._listen(self._ports[0])
            ctrl = self._listen(self._ports[1]) if self._ports[1] is not None else None
        except InputError:
            self.stop()
            raise
        self.data_port = data.getsockname()[1]
        self._spawn(self._accept_loop, data, self._serve_data)
        if ctrl is not None:
            self.control_port = ctrl.getsockname()[1]
            self._spawn(self._accept_loop, ctrl, self._serve_control_thread)
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Close every port and connection and wait for the threads."""
        self._stopping.set()
        with self._cond:
            self._cond.notify_all()
        for s in list(self._listeners) + list(self._conns):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()
        for t in self._threads:
            t.join(timeout)
        self.finished.set()

    def __enter__(self) -> MerlinServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def serve_forever(self) -> None:
        """Start (if needed) and block until stopped, ``once`` is done, or Ctrl-C."""
        if self.data_port is None:
            self.start()
        try:
            while not self.finished.wait(0.2):
                pass
        finally:
            self.stop()

    def _listen(self, port: int) -> socket.socket:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((self.host, int(port)))
        except OSError as exc:
            s.close()
            raise InputError(f"cannot listen on {self.host}:{port} ({exc.strerror}); choose another port "
                             f"(0 picks a free one)") from None
        s.listen(4)
        s.settimeout(0.2)
        self._listeners.append(s)
        return s

    def _spawn(self, target, *args) -> None:
        t = threading.Thread(target=target, args=args, daemon=True, name="ricom-merlin-sim")
        t.start()
        self._threads.append(t)

    def _say(self, text: str) -> None:
        if self.log is not None:
            self.log(text)

    def _accept_loop(self, listener: socket.socket, handler) -> None:
        port = listener.getsockname()[1]  # read once: stop() may close the listener meanwhile
        while not self._stopping.is_set():
            try:
                conn, addr = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._conns.add(conn)
            self._say(f"connection from {addr[0]}:{addr[1]} on port {port}")
            handler(conn)

    # --- data port -----------------------------------------------------------------------
    def _serve_data(self, conn: socket.socket) -> None:
        try:
            if self.faults.junk_bytes:
                self._send(conn, self.faults.junk(self.faults.junk_bytes, self._rng))
            index = 0
            while self._wait_start(conn, self._start_delay(index)):
                if index and self.faults.junk_between:
                    self._send(conn, self.faults.junk(self.faults.junk_between, self._rng))
                if not self._acquire(conn, index):
                    break
                index += 1
        except (OSError, ConnectionError):
            pass
        except Exception as exc:  # reported; the server keeps running
            self.error = exc
            print(f"ricom simulate merlin: error: {exc}", file=sys.stderr)
        finally:
            with self._cond:
                self._state, self._auto = "idle", False
            self._conns.discard(conn)
            conn.close()
            if self.once:
                self._stopping.set()
                self.finished.set()

    def _start_delay(self, index: int) -> float | None:
        """Seconds until acquisition ``index`` of a connection starts by itself (None = on a command)."""
        if index == 0:
            return {"connect": 0.0, "auto": self.auto_start_s}.get(self.start_on)
        return self.faults.start_delay(index)

    def _wait_start(self, conn: socket.socket, delay: float | None) -> bool:
        """Wait for the next acquisition; False when the client left or the server stops."""
        deadline = None if delay is None else time.monotonic() + delay
        while not self._stopping.is_set():
            with self._cond:
                if self._start_pending or (deadline is not None and time.monotonic() >= deadline):
                    self._auto = not self._start_pending
                    self._start_pending = self._abort = False
                    self._state = "busy"
                    return True
            readable, _, _ = select.select([conn], [], [], 0.02)
            if readable and not conn.recv(65536):
                return False
        return False

    def _acquire(self, conn: socket.socket, index: int = 0) -> bool:
        """Send acquisition ``index`` of this connection; False if the connection ends with it."""
        p = self.params
        depth, raw = int(p["COUNTERDEPTH"]), p["FILEFORMAT"] == 2
        scan = (p["SCANY"], p["SCANX"]) if p["SCANX"] and p["SCANY"] else self.scan_shape
        acq = self.faults.acquisition(index, scan, int(p["NUMFRAMESTOACQUIRE"]))
        hdr = make_acquisition_header(acq.header_frames, acq.header_scan, depth, quad=self.feed.quad,
                                      gap=self.feed.gap)
        hdr = hdr.encode("latin-1")
        self._send(conn, mpx_prefix(len(hdr)) + hdr)
        self.acquisitions += 1
        self._say(f"acquisition {self.acquisitions}: {acq.n_frames or 'continuous'} frames, depth {depth}, "
                  f"{'raw' if raw else 'processed'}{acq.note()}")
        if p["TRIGGERSTART"] == 5 and not self._auto:
            with self._cond:
                self._state = "armed"
                while not (self._trigger or self._abort or self._stopping.is_set()):
                    self._cond.wait(0.1)
                self._state = "busy"
        limit = acq.frames_to_send
        sent = self._send_acquisition(conn, depth, raw, limit, idle_at_end=not acq.stalls)
        if sent is None:
            return False
        if acq.stalls and sent == limit and not self._ended():
            self._say(f"stalling after {sent} frames with the connection open (fault injection)")
            self._linger(conn)
            return False
        self._set_idle()
        return True

    def _set_idle(self) -> None:
        with self._cond:
            self._state = "idle"

    def _send_acquisition(self, conn: socket.socket, depth: int, raw: bool, limit: int | None,
                          idle_at_end: bool = True) -> int | None:
        """Send up to ``limit`` frames (None = until stopped); frames sent, None if dropped.

        With ``idle_at_end`` the detector reads idle before the last frame goes out, so
        that a client which has every frame finds it idle (as a real Merlin is then).
        """
        sent, t0 = 0, time.monotonic()
        while (limit is None or sent < limit) and not self._ended():
            empty = True
            for wire in wire_messages(self.feed, depth, raw, self._cache, self.cache_bytes):
                empty = False
                k = len(wire) if limit is None else min(len(wire), limit - sent)
                patch_sequence(wire[:k], sent + 1)
                last = int(idle_at_end and limit is not None and sent + k == limit)
                result = self._send_frames(conn, wire[:k - last], sent, t0)
                if last and result == k - 1:
                    self._set_idle()
                    tail = self._send_frames(conn, wire[k - 1:k], sent + result, t0)
                    result = None if tail is None else result + tail
                if result is None:
                    return None
                sent += result
                if result < k or (limit is not None and sent >= limit):
                    break
            if empty:
                break
        return sent

    def _linger(self, conn: socket.socket) -> None:
        """Keep the connection open, sending nothing, until the client leaves or the server stops."""
        while not self._stopping.is_set():
            readable, _, _ = select.select([conn], [], [], 0.05)
            if readable and not conn.recv(65536):
                return

    def _ended(self) -> bool:
        return self._stopping.is_set() or self._abort
