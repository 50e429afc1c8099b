"""Timepix3 raw packets live from the camera server (Serval) over TCP.

Serval's raw TCP output is the content of a ``.tpx3`` file sent as it is recorded
(``../shared/FORMATS.md`` §3, §6): 64-bit little-endian words in chunks, each behind a
``TPX3`` chunk header.  This module owns the socket side: `Tpx3Connection` (ricom
listens and Serval connects — Serval's ``tcp://connect@HOST:PORT`` — or ricom connects
to Serval's ``tcp://listen@HOST:PORT``; one scan per TCP connection) and
`Tpx3StreamSource`, which reads bytes as they come, finds the first chunk header at any
byte offset, keeps the packets whole across reads and decodes them every ``yield_s``
seconds with the file reader's `ricom.sources.timepix.tpx3.Tpx3Decoder` and the same
line / pixel synchronisation (`ricom.sources.timepix.sync`).  The stream ends when the
server closes the connection; a scan that ended early (a cancelled scan, a missing line
trigger, a connection that broke mid-chunk) raises `InputError` after the events so far
were yielded, so the pipeline keeps the partial result.
"""
from __future__ import annotations

import socket
import threading
import time

import numpy as np

from ricom.core.chunks import ScanLayout
from ricom.core.errors import InputError, Param, SettingsError
from ricom.core.scan_positions import scan_positions_from
from ricom.sources.timepix.sync import DEFAULT_ORDER_WINDOW_NS, SyncOptions
from ricom.sources.timepix.tpx3 import TimedEventSource, Tpx3Decoder, layout_shape, parse_chip_layout

MAGIC = b"TPX3"
POLL_S = 0.01
"""Socket wait per read: how soon a stop request or a due block is noticed."""


class Tpx3Connection:
    """Where the raw packets come from: a listening socket or a server to connect to.

    Parameters
    ----------
    host, port : str, int, optional
        Connect to Serval's ``tcp://listen@HOST:PORT`` (a new connection per scan).
    listen_port : int, optional
        Listen here for Serval's ``tcp://connect@…`` (0: any free port, see ``port``).
    listen_host : str
        Interface to listen on.
    stop : threading.Event, optional
        Ends a wait for a connection (`KeyboardInterrupt`, as a live session expects).
    """

    def __init__(self, host: str | None = None, port: int | None = None, *, listen_port: int | None = None,
                 listen_host: str = "0.0.0.0", stop: threading.Event | None = None,
                 connect_timeout: float = 5.0) -> None:
        if (listen_port is None) == (port is None):
            raise SettingsError("give either ", Param("listen_port"), " or ", Param("host"), " and ", Param("port"))
        self.stop, self.connect_timeout, self.lost = stop, float(connect_timeout), False
        self.sock: socket.socket | None = None
        self.server: socket.socket | None = None
        self._fresh = False
        if listen_port is not None:
            self.server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            self.server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                self.server.bind((listen_host, int(listen_port)))
            except OSError as exc:
                self.server.close()
                raise InputError(f"cannot listen on {listen_host}:{listen_port} ({exc.strerror or exc})") from None
            self.server.listen(1)
            self.server.settimeout(0.1)
            self.host, self.port = listen_host, self.server.getsockname()[1]
            self.where = f"listening on {listen_host}:{self.port}"
        else:
            self.host, self.port = str(host), int(port)
            self.where = f"{self.host}:{self.port}"
            self.sock, self._fresh = self._connect(), True

    def _connect(self) -> socket.socket:
        try:
            sock = socket.create_connection((self.host, self.port), timeout=self.connect_timeout)
        except OSError as exc:
            raise InputError(f"cannot connect to the Timepix3 raw stream {self.host}:{self.port} "
                             f"({exc.strerror or exc}); is Serval (raw destination tcp://listen@…) or ricom's "
                             f"Timepix3 simulator running there?") from None
        return sock

    def next_socket(self) -> socket.socket:
        """The connection of the next scan: accept one (listening) or connect again."""
        if self.sock is not None and self._fresh:
            self._fresh = False
            return self.sock
        self._drop_socket()
        self.lost = False
        while self.server is not None:
            if self.stop is not None and self.stop.is_set():
                raise KeyboardInterrupt
            try:
                self.sock, _ = self.server.accept()
                return self.sock
            except TimeoutError:
                continue
        while True:  # connect mode: the server opens a new listening socket per measurement
            try:
                self.sock = self._connect()
                return self.sock
            except InputError:
                if self.stop is None or self.stop.wait(0.2):
                    raise KeyboardInterrupt from None

    def _drop_socket(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    def close(self) -> None:
        self._drop_socket()
        if self.server is not None:
            self.server.close()
            self.server = None


class Tpx3StreamSource(TimedEventSource):
    """One scan of raw Timepix3 packets from a socket (see the module docstring).

    Parameters
    ----------
    sock : socket-like
        Anything with ``recv_into`` and ``settimeout`` (a connected socket).
    scan_shape : (int, int)
        (SY, SX).
    sync : {"line", "pixel", "dwell"}
        As `ricom.sources.timepix.tpx3.Tpx3Source` (no ``auto``: the data are not there yet).
    chip_layout : str or sequence
        Default ``"cheetah"`` (an ASI CheeTah quad); ``"single"`` for one chip.
    stop : threading.Event, optional
        Ends the scan (what arrived is kept).
    timeout : float, optional
        Seconds without data, once data came, that end the scan with an error (None: wait).
    yield_s : float
        Decode and yield what arrived at least this often (latency).
    where : str
        For messages (the server's address).
    connection : Tpx3Connection, optional
        Marked ``lost`` when the stream breaks off mid-chunk.
    dwell_ns, acceptance_ns, trigger, skip_lines, skip_frames, flyback_frames, order_window_ns, keep_times
        As `ricom.sources.timepix.tpx3.Tpx3Source`.
    scan_positions : ScanPositions, str or array, optional
        The scan order, as `ricom.sources.timepix.tpx3.Tpx3Source`: a scan is then one pass
        of the list.
    """

    header_scan_shape = None
    acquisition_header = ""

    def __init__(self, sock, scan_shape, *, sync: str = "line", dwell_ns=None, acceptance_ns=None,
                 trigger: str = "tdc1", chip_layout="cheetah", skip_lines: int = 0, skip_frames: int = 0,
                 flyback_frames: int = 0, order_window_ns: float = DEFAULT_ORDER_WINDOW_NS, keep_times: bool = False,
                 stop: threading.Event | None = None, timeout: float | None = None, yield_s: float = 0.015,
                 block_bytes: int = 8 << 20, where: str = "", connection: Tpx3Connection | None = None,
                 scan_positions=None, **_ignored) -> None:
        if scan_shape is None:
            raise SettingsError("a Timepix3 raw stream does not carry the scan shape; give ",
                                Param("scan_shape", form=True))
        if sync not in ("line", "pixel", "dwell"):
            raise SettingsError(f"Timepix3 stream sync must be 'line', 'pixel' or 'dwell', got {sync!r}")
        self.sock, self.stop, self.timeout, self.yield_s = sock, stop, timeout, float(yield_s)
        self.where, self.connection = where, connection
        self.name = f"Timepix3 raw stream {where}".strip()
        self._label = f"the {self.name}"
        self.chip_layout = parse_chip_layout(chip_layout or "cheetah")
        self.detector_shape = layout_shape(self.chip_layout)
        self.trigger = trigger
        self.scan_shape = (int(scan_shape[0]), int(scan_shape[1]))
        order = scan_positions_from(scan_positions)
        self.sync_options = SyncOptions(self.scan_shape, sync, dwell_ns, acceptance_ns, skip_lines, skip_frames,
                                        flyback_frames, 0.0, order_window_ns, keep_times, order)
        self.n_frames = self.sync_options.points_per_pass
        self.layout = ScanLayout(self.scan_shape, order=order)  # (the live session's bookkeeping: points, not frames)
        self._decoder = Tpx3Decoder(self.chip_layout, trigger)
        self._buf = bytearray(max(int(block_bytes), 1 << 16))
        self.bytes_received = self.skipped_bytes = self._tail = 0
        self._stopped = False

    @property
    def frames_received(self) -> int:
        """Scan points (positions of a raster, listed points of a scan order) whose dwell has passed so far."""
        return self._sync.counts["points_done"] if self._sync is not None else 0

    def summary(self) -> str:
        sy, sx = self.scan_shape
        order = self.scan_positions
        listed = f", {len(order)} points listed in {order.name}" if order is not None else ""
        return f"Timepix3 raw packets, {self.sync_options.mode} sync, scan {sy}×{sx}{listed}"

    def _recv(self, mv, end: int) -> int | None:
        """Bytes read into ``mv[end:]``; None when nothing came within the poll time, 0 at the end."""
        try:
            return self.sock.recv_into(mv[end:])
        except (TimeoutError, BlockingIOError):
            return None
        except OSError:  # reset: the same as the end of the stream
            return 0

    def _blocks(self, sync):
        self.sock.settimeout(POLL_S)
        buf, mv = self._buf, memoryview(self._buf)
        end, synced, last_yield, last_data = 0, False, time.perf_counter(), time.monotonic()
        while True:
            if self.stop is not None and self.stop.is_set():
                self._stopped = True
                break
            k = self._recv(mv, end)
            if k == 0:
                break
            now = time.perf_counter()
            if k:
                end += k
                self.bytes_received += k
                self._received_s, last_data = now, time.monotonic()
            elif self.timeout is not None and self.bytes_received and time.monotonic() - last_data > self.timeout:
                raise InputError(f"no data from {self._label} for {self.timeout:g} s; the scan is cut short (raise ",
                                 Param("timeout"), ")")
            if not synced:
                end, synced = self._find_header(mv, end)
            if synced and end >= 8 and (now - last_yield >= self.yield_s or end > len(buf) - 4096):
                end = yield from self._decode(mv, end, sync)
                last_yield = now
        if synced and end >= 8:
            end = yield from self._decode(mv, end, sync)
        self._tail = end if synced else 0

    def _find_header(self, mv, end: int) -> tuple[int, bool]:
        """Drop the bytes before the first chunk header (the stream may start mid-chunk)."""
        i = bytes(mv[:end]).find(MAGIC)
        cut = i if i >= 0 else max(end - 3, 0)
        if cut:
            mv[:end - cut] = bytes(mv[cut:end])
            self.skipped_bytes += cut
        return end - cut, i >= 0

    def _decode(self, mv, end: int, sync):
        """Decode the whole packets in ``mv[:end]``; the partial packet left moves to the front."""
        n = end // 8
        words = np.frombuffer(mv, "<i8", count=n)
        yield self._decoder.decode(words, sync)
        del words
        rest = end - 8 * n
        mv[:rest] = bytes(mv[8 * n:end])
        return rest

    def _extra_warnings(self) -> list[str]:
        out = self._decoder.report()
        if self.skipped_bytes:
            out.append(f"{self.skipped_bytes} bytes before the first chunk header were skipped")
        return out

    def _check_end(self) -> None:
        """A scan that ended early: say why (the events so far were yielded and are kept)."""
        if self._stopped:
            return
        sync, dec = self._sync, self._decoder
        done = sync.counts["points_done"]
        progress = f"after {done} of {self.n_frames} positions"
        if dec.state[1] > 0 or self._tail:
            if self.connection is not None:
                self.connection.lost = True
            raise InputError(f"{self._label} broke off mid-chunk {progress} "
                             f"({int(dec.state[1])} packets of the chunk and {self._tail} bytes of a packet "
                             f"missing); the events before are kept")
        if done >= self.n_frames:
            return
        mode, sy = self.sync_options.mode, self.sync_options.slots_per_pass // sync.line_len
        if mode == "line":
            why = (f"{sync.n_segments} of {sy} line triggers arrived ({sync.counts['missing_end']} without an end "
                   f"trigger): a line trigger is missing, or the scan was cancelled")
        elif mode == "pixel":
            why = f"{sync.n_segments} pixel triggers arrived: triggers are missing, or the scan was cancelled"
        else:
            why = "the scan was cancelled"
        raise InputError(f"{self._label} ended {progress}: {why}; the partial result is kept")

    def describe(self) -> dict:
        keys = ("hits", "tdc", "unknown", "global_time", "control", "outside_chunks", "unplaced_hits",
                "chunks", "cut_chunks")
        return {**super().describe(), "chip_layout": self.chip_layout.tolist(), "trigger": self.trigger,
                "bytes_received": self.bytes_received, "skipped_bytes": self.skipped_bytes,
                "packets": dict(zip(keys, self._decoder.counters.tolist(), strict=True))}

    def close(self) -> None:
        pass  # the connection owns the socket


def open(spec: str, scan_shape=None, stop=None, **options) -> Tpx3StreamSource:
    """``tpx3://HOST:PORT``: connect to a raw stream (Serval's ``tcp://listen@…``); one scan."""
    host, _, port = spec[len("tpx3://"):].rpartition(":")
    if not host or not port.isdigit():
        raise InputError(f"{spec!r}: give the raw stream as tpx3://HOST:PORT")
    conn = Tpx3Connection(host, int(port), stop=stop)
    source = Tpx3StreamSource(conn.next_socket(), scan_shape, stop=stop, where=conn.where, connection=conn, **options)
    source.close = conn.close
    return source
