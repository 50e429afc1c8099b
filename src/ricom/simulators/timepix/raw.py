"""A Timepix3 camera server's raw TCP output (Serval's ``tcp://…`` raw destination), simulated.

`RawSimulator` sends the words of a ``.tpx3`` file — a recorded one, or the built-in
specimen written by `ricom.simulators.events` (`demo_tpx3`) — over TCP exactly as they
sit in the file (chunk headers, TDC triggers, out-of-order hits), as Serval does: either
it listens and each client that connects gets one scan (Serval's ``tcp://listen@…``), or
it connects out to a client that listens (``tcp://connect@…``), ``scans`` times.
``rate`` paces the packets (events/s; 0 = as fast as possible).  `RawFaults` breaks the
stream the ways a client must survive: bytes sent in pieces of 1…N bytes (every packet
and chunk header split at every byte boundary), a line's TDC1 rising edge left out (the
chunk holding it shortened, so the stream stays well formed), the connection closed
mid-chunk, and a cancelled scan (the stream ends cleanly at a chunk boundary, early).
"""
from __future__ import annotations

import os
import socket
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ricom.core.errors import InputError, SettingsError
from ricom.simulators.events import write_events

_MAGIC = 0x33585054
_SEND_BLOCK = 1 << 20
"""Bytes per send when not paced and not split (large pieces: less of the simulator's own CPU)."""


@dataclass(frozen=True)
class RawFaults:
    """Ways to break the stream (all off by default).

    ``split_bytes``: send in pieces of 1, 2, …, N bytes in turn (N ≥ 2).
    ``drop_line_trigger``: leave out the TDC1 rising edge of this line (0-based).
    ``disconnect_at``: close the connection mid-chunk after this fraction of the bytes.
    ``cancel_at``: end the stream cleanly after this fraction of the chunks.
    """

    split_bytes: int = 0
    drop_line_trigger: int | None = None
    disconnect_at: float | None = None
    cancel_at: float | None = None

    def __post_init__(self) -> None:
        for name in ("disconnect_at", "cancel_at"):
            v = getattr(self, name)
            if v is not None and not 0 <= v < 1:
                raise SettingsError(f"{name} is a fraction of the stream in [0, 1), got {v!r}")
        if self.split_bytes < 0 or self.split_bytes == 1:
            raise SettingsError(f"split_bytes must be 0 (off) or ≥ 2, got {self.split_bytes}")


def chunk_starts(words: np.ndarray) -> np.ndarray:
    """Indices of the chunk headers of well-formed raw data (each chunk follows the last)."""
    starts, i, n = [], 0, words.shape[0]
    sizes = (words >> 48) & 0xFFFF
    while i < n:
        if (int(words[i]) & 0xFFFFFFFF) != _MAGIC:
            raise InputError(f"word {i} of the raw data is not a TPX3 chunk header where one should be")
        starts.append(i)
        i += 1 + int(sizes[i]) // 8
    return np.array(starts, np.int64)


def drop_line_trigger(words: np.ndarray, line: int, tdc_kind: int = 0xF) -> np.ndarray:
    """The words without the ``line``-th TDC rising edge (0-based), its chunk header shortened."""
    is_rise = (((words >> 60) & 0xF) == 6) & (((words >> 56) & 0xF) == tdc_kind)
    starts = chunk_starts(words)
    is_rise[starts] = False
    idx = np.flatnonzero(is_rise)
    if line >= idx.shape[0]:
        raise SettingsError(f"the data have {idx.shape[0]} line triggers; cannot drop number {line}")
    k = int(idx[line])
    head = int(starts[np.searchsorted(starts, k, side="right") - 1])
    out = np.delete(words, k)
    size = (int(out[head]) >> 48) & 0xFFFF
    out[head] = (int(out[head]) & ((1 << 48) - 1)) | ((size - 8) << 48)
    return out


def demo_tpx3(path: str, scan_shape=(32, 32), detector_shape=(64, 64), dose: float = 100.0, sync: str = "line",
              dwell_ns: float = 1000.0, seed: int = 0) -> dict:
    """Write the built-in specimen as a ``.tpx3`` file (with its sidecar); returns the events info."""
    from dataclasses import asdict

    from ricom.simulators.specimen import SimulationParams, detector_calibration, simulate_chunks

    params = SimulationParams(scan_shape=tuple(scan_shape), detector_shape=tuple(detector_shape),
                              dose_e_per_probe=dose, seed=seed)
    pixel_mrad, centre = detector_calibration(params)
    cal = {"step_A": params.step_A, "pixel_size_mrad": pixel_mrad, "energy_keV": params.energy_keV,
           "center_yx": list(centre)}
    return write_events(path, simulate_chunks(params, 4), params.scan_shape, params.detector_shape, "tpx3",
                        dwell_ns=dwell_ns, seed=seed, calibration=cal, sync=sync,
                        extra={"simulation": {"params": asdict(params)}})


class RawSimulator:
    """Serve raw Timepix3 packets over TCP (see the module docstring).

    Parameters
    ----------
    words : str or ndarray
        A ``.tpx3`` file, or its words (int64).
    host, port : str, int
        Listen here (port 0: any free port, see ``port``) — or, with ``connect``, the
        client to connect to.
    connect : bool
        Connect out (Serval's ``tcp://connect@HOST:PORT``) instead of listening.
    rate : float
        Packets per second (≈ events/s); 0 sends as fast as the client reads.
    scans : int
        Scans to send (one per connection); 0: until closed.
    faults : RawFaults
    log : callable, optional
        Receives one line per scan sent.
    """

    def __init__(self, words, *, host: str = "127.0.0.1", port: int = 0, connect: bool = False, rate: float = 0.0,
                 scans: int = 0, faults: RawFaults | None = None, log: Callable[[str], None] | None = None) -> None:
        if isinstance(words, (str, os.PathLike)):
            words = np.fromfile(words, "<i8")
        self.faults = faults or RawFaults()
        words = np.asarray(words, np.int64)
        if self.faults.drop_line_trigger is not None:
            words = drop_line_trigger(words, self.faults.drop_line_trigger)
        self.data = words.astype("<i8").tobytes()
        self.n_words = words.shape[0]
        self.host, self.connect, self.rate, self.scans, self.log = host, connect, float(rate), int(scans), log
        self.sent = 0
        self._stop = threading.Event()
        self._server: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self.port = int(port)
        if not connect:
            self._server = socket.create_server((host, self.port), reuse_port=False)
            self._server.settimeout(0.1)
            self.port = self._server.getsockname()[1]

    def _end_byte(self) -> int:
        """Bytes of one scan: all, or up to the cancel / disconnect point."""
        f = self.faults
        if f.cancel_at is not None:
            words = np.frombuffer(self.data, "<i8")
            starts = chunk_starts(words)
            return 8 * int(starts[int(f.cancel_at * starts.shape[0])])
        if f.disconnect_at is not None:
            cut = int(f.disconnect_at * len(self.data))
            return min(len(self.data) - 1, cut - cut % 8 + 8 * 3 + 5)  # mid-packet, a few packets on
        return len(self.data)

    def send_scan(self, sock: socket.socket) -> int:
        """Send one scan on ``sock`` (then close it); returns the bytes sent."""
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        end, data, split = self._end_byte(), memoryview(self.data), self.faults.split_bytes
        per_s = self.rate * 8
        step = min(_SEND_BLOCK, max(8, int(per_s * 0.002) // 8 * 8)) if per_s else _SEND_BLOCK
        pos, piece, t0 = 0, 0, time.perf_counter()
        try:
            while pos < end and not self._stop.is_set():
                n = piece % split + 1 if split else step
                piece += 1
                sock.sendall(data[pos:min(end, pos + n)])
                pos = min(end, pos + n)
                if per_s:
                    wait = t0 + pos / per_s - time.perf_counter()
                    if wait > 0:
                        time.sleep(wait)
        except OSError:
            pass  # the client went away
        finally:
            sock.close()
        self.sent += 1
        if self.log is not None:
            self.log(f"scan {self.sent}: sent {pos} of {len(self.data)} bytes")
        return pos

    def serve_forever(self) -> None:
        """Send scans until ``scans`` are sent or `close` is called."""
        while not self._stop.is_set() and (not self.scans or self.sent < self.scans):
            if self.connect:
                try:
                    sock = socket.create_connection((self.host, self.port), timeout=5.0)
                except OSError:
                    self._stop.wait(0.2)  # the client is not listening yet
                    continue
            else:
                try:
                    sock, _ = self._server.accept()
                except TimeoutError:
                    continue
                except OSError:
                    break
            self.send_scan(sock)

    def start(self) -> RawSimulator:
        """Serve in a background thread."""
        self._thread = threading.Thread(target=self.serve_forever, name="ricom-tpx3-raw-sim", daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5.0)
        if self._server is not None:
            self._server.close()
            self._server = None

    def __enter__(self) -> RawSimulator:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()


def temporary_demo(**options) -> str:
    """`demo_tpx3` into a new temporary directory; the path of the ``.tpx3`` file."""
    path = os.path.join(tempfile.mkdtemp(prefix="ricom-tpx3-"), "demo.tpx3")
    demo_tpx3(path, **options)
    return path
