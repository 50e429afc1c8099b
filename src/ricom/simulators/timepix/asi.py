"""A simulator of ASI's sparse Timepix3 stream: the camera software's TCP server, on loopback.

`AsiServer` serves event data as CSR frames exactly as ``../shared/FORMATS.md`` §6 says
(written here with `struct`, independently of the reader `ricom.sources.timepix.asi`):
to each client that connects, per acquisition an AcquisitionStart, per scan a ScanStart
(no metadata), ArrayChunks of ``frames_per_chunk`` frames (header, then indptr from 0,
indices and values back to back) and a ScanEnd, then an AcquisitionEnd.  The data: an
event file any ricom reader opens (events HDF5, ``.tpx3``, …), integer counts
``(n, H, W)`` or ``(sy, sx, H, W)``, or the built-in specimen (`SimulationParams` with a
dose).  Fault modes: a cancelled scan (AcquisitionEnd after ``cancel_after`` frames of the
first scan), bytes sent in small random pieces (``max_piece``), a frame rate.
"""
from __future__ import annotations

import os
import socket
import struct
import threading
import time

import numpy as np

from ricom.core.errors import SettingsError
from ricom.simulators.specimen import SimulationParams, frame_stack, simulate_chunks

_SEND_PIECE = 1 << 20
"""Bytes per send of a pre-encoded scan."""
CODES = {np.dtype("u1"): 2, np.dtype("u2"): 3, np.dtype("u4"): 4, np.dtype("u8"): 5}
"""Wire dtype code of each unsigned dtype."""


def _code(dtype) -> tuple[np.dtype, int]:
    dt = np.dtype(dtype)
    if dt.newbyteorder("=") not in CODES:
        raise SettingsError(f"the ASI stream sends u1, u2, u4 or u8 arrays, not {dt}")
    return dt.newbyteorder("<"), CODES[dt.newbyteorder("=")]


def _pad32(b: bytes) -> bytes:
    return b + bytes(32 - len(b))


def acquisition_start(nav_shape, sig_shape, indptr_code: int, indices_code: int, fmt: int = 0,
                      sequence: int = 1, version: int = 1) -> bytes:
    """The 32-byte AcquisitionStart header."""
    return _pad32(struct.pack("<BBBHHBHHBI", 0, version, fmt, nav_shape[0], nav_shape[1], indptr_code,
                              sig_shape[0], sig_shape[1], indices_code, sequence))


def scan_start(sequence: int) -> bytes:
    return _pad32(struct.pack("<BIQ", 1, sequence, 0))


def array_chunk(value_code: int, nframes: int, nnz: int, indices_offset: int, values_offset: int) -> bytes:
    return _pad32(struct.pack("<BBIIII", 2, value_code, nframes, nnz, indices_offset, values_offset))


def scan_end(sequence: int) -> bytes:
    return _pad32(struct.pack("<BI", 3, sequence))


def acquisition_end(sequence: int) -> bytes:
    return _pad32(struct.pack("<BI", 4, sequence))


def dense_to_csr(frames: np.ndarray):
    """``(indptr, indices, values)`` (int64) of integer frames ``(n, H, W)``."""
    flat = frames.reshape(len(frames), -1)
    rows, cols = np.nonzero(flat)
    indptr = np.concatenate([[0], np.cumsum(np.bincount(rows, minlength=len(frames)))]).astype(np.int64)
    return indptr, cols.astype(np.int64), flat[rows, cols].astype(np.int64)


def events_to_csr(path: str, scan_shape=None):
    """CSR counts of an event file: ``(indptr, indices, values, scan_shape, detector_shape)``."""
    from ricom.sources import open_source

    with open_source(path, **({"scan_shape": tuple(scan_shape)} if scan_shape else {})) as src:
        if src.kind != "events":
            raise SettingsError(f"the ASI simulator serves events or integer frames; {path!r} holds frames "
                                f"(give them as an array)")
        if src.scan_shape is None:
            raise SettingsError(f"{path!r} does not say its scan shape; give scan_shape")
        dy, dx = src.detector_shape
        keys = []
        for chunk in src.chunks(4096):
            pos = np.asarray(chunk.positions, np.int64)
            x = np.clip(np.rint(chunk.x).astype(np.int64), 0, dx - 1)
            y = np.clip(np.rint(chunk.y).astype(np.int64), 0, dy - 1)
            keep = pos >= 0
            keys.append(pos[keep] * (dy * dx) + y[keep] * dx + x[keep])
        scan, det = tuple(src.scan_shape), (dy, dx)
    key, counts = np.unique(np.concatenate(keys) if keys else np.zeros(0, np.int64), return_counts=True)
    n = scan[0] * scan[1]
    frame, pix = np.divmod(key, dy * dx)
    indptr = np.concatenate([[0], np.cumsum(np.bincount(frame, minlength=n))]).astype(np.int64)
    return indptr, pix, counts.astype(np.int64), scan, det


def _specimen_frames(params: SimulationParams) -> np.ndarray:
    if params.dose_e_per_probe is None:
        raise SettingsError("the ASI simulator sends electron counts: give the specimen a dose (dose_e_per_probe)")
    return np.concatenate([frames for frames, _ in simulate_chunks(params)])


class AsiServer:
    """The camera software's sparse-stream server, serving ``data`` (see the module docstring).

    Parameters
    ----------
    data : ndarray, str or SimulationParams
        Integer counts ``(n, H, W)`` / ``(sy, sx, H, W)``, an event file, or the specimen.
    scan_shape : (int, int), optional
        The ``nav_shape`` sent; default that of the data.
    host, port : str, int
        Where to listen (port 0: any free port, see `port`).
    scans, acquisitions : int
        Scans per acquisition, acquisitions per connection (each scan sends all the data).
    rate_hz : float
        Frames per second (0: as fast as the client reads).
    cancel_after : int, optional
        Send AcquisitionEnd after this many frames of the first scan (a cancelled scan),
        then close the connection.
    with_tot : bool
        Format 1: one entry per electron, its value a ToT (instead of counts per pixel).
    frames_per_chunk : int
        Frames per ArrayChunk.
    indptr_dtype, indices_dtype, values_dtype : dtype
        Unsigned wire dtypes of the three arrays.
    max_piece : int, optional
        Send the bytes in random pieces of 1 … ``max_piece`` bytes (chunk boundaries
        anywhere); None sends each message whole.
    seed : int
        Seed for the piece sizes and the ToT values.
    """

    def __init__(self, data, *, scan_shape=None, host: str = "127.0.0.1", port: int = 0, scans: int = 1,
                 rate_hz: float = 0, cancel_after: int | None = None, with_tot: bool = False,
                 frames_per_chunk: int = 64, indptr_dtype="u4", indices_dtype="u4", values_dtype="u4",
                 acquisitions: int = 1, max_piece: int | None = None, seed: int = 0) -> None:
        if isinstance(data, (str, os.PathLike)):
            self.indptr, self.indices, self.values, shape, self.sig_shape = events_to_csr(os.fspath(data), scan_shape)
        else:
            if isinstance(data, SimulationParams):
                scan_shape = scan_shape or data.scan_shape
                data = _specimen_frames(data)
            frames, shape = frame_stack(data, scan_shape, "the ASI simulator")
            self.sig_shape = tuple(frames.shape[1:])
            self.indptr, self.indices, self.values = dense_to_csr(frames)
            shape = shape or (1, len(frames))
        self.nav_shape = tuple(int(v) for v in (scan_shape or shape))
        self.n_frames = len(self.indptr) - 1
        self.dtypes = [_code(d) for d in (indptr_dtype, indices_dtype, values_dtype)]
        self.with_tot, self.rng = bool(with_tot), np.random.default_rng(seed)
        if with_tot:
            self._to_tot()
        self._check_fits(int(frames_per_chunk))
        self.scans, self.acquisitions, self.rate_hz = int(scans), int(acquisitions), float(rate_hz)
        self.cancel_after, self.frames_per_chunk, self.max_piece = cancel_after, int(frames_per_chunk), max_piece
        self._listen = socket.create_server((host, int(port)))
        self.host, self.port = host, self._listen.getsockname()[1]
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.connections = 0
        self.errors: list[str] = []
        self._encoded: dict[int, bytes] = {}
        if self.rate_hz <= 0 and not max_piece:  # encoded before any client waits for it
            self._encoded[self.n_frames] = self._scan_bytes(self.n_frames)

    def _to_tot(self) -> None:
        """One entry per electron (repeated pixel indices), values a ToT of 5 … 60."""
        counts = self.values
        frame = np.repeat(np.arange(self.n_frames), np.diff(self.indptr))
        per_frame = np.bincount(frame, weights=counts, minlength=self.n_frames).astype(np.int64)
        self.indices = np.repeat(self.indices, counts)
        self.values = self.rng.integers(5, 61, len(self.indices))
        self.indptr = np.concatenate([[0], np.cumsum(per_frame)]).astype(np.int64)

    def _check_fits(self, k: int) -> None:
        (ip, _), (ix, _), (vt, _) = self.dtypes
        per_chunk = max((int(self.indptr[min(s + k, self.n_frames)] - self.indptr[s])
                         for s in range(0, self.n_frames, k)), default=0)
        checks = ((ip, per_chunk, "indptr"), (ix, self.sig_shape[0] * self.sig_shape[1] - 1, "indices"),
                  (vt, int(self.values.max(initial=0)), "values"))
        for dt, need, what in checks:
            if need > np.iinfo(dt).max:
                raise SettingsError(f"{what} as {dt.name} cannot hold {need}")
        if max(self.nav_shape) > 65535 or max(self.sig_shape) > 65535:
            raise SettingsError("the ASI stream's scan and detector sides are at most 65535")

    def start(self) -> AsiServer:
        """Serve in a background thread; returns self."""
        self._thread = threading.Thread(target=self._serve, name="asi-sim", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._listen.close()
        if self._thread is not None:
            self._thread.join(5)

    def __enter__(self) -> AsiServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def _serve(self) -> None:
        self._listen.settimeout(0.1)
        while not self._stop.is_set():
            try:
                conn, _ = self._listen.accept()
            except (TimeoutError, OSError):
                continue
            self.connections += 1
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            try:
                self.serve_connection(conn)
            except OSError as exc:  # the client went away
                self.errors.append(str(exc))
            finally:
                conn.close()

    def serve_connection(self, conn: socket.socket) -> None:
        """Everything one client receives: the acquisitions, then the server closes."""
        (_, ip_code), (_, ix_code), _ = self.dtypes
        for acq in range(1, self.acquisitions + 1):
            self._send(conn, acquisition_start(self.nav_shape, self.sig_shape, ip_code, ix_code,
                                               int(self.with_tot), acq))
            for scan in range(1, self.scans + 1):
                self._send(conn, scan_start(scan))
                cancel = self.cancel_after if acq == 1 and scan == 1 else None
                if not self._send_scan(conn, cancel):
                    self._send(conn, acquisition_end(acq))
                    return
                self._send(conn, scan_end(scan))
            self._send(conn, acquisition_end(acq))
        self._stop.wait(0.2)  # let the client read before the close

    def _send_scan(self, conn: socket.socket, cancel: int | None) -> bool:
        """The ArrayChunks of one scan; False if it was cut short (cancelled or stopped).

        Unpaced and unsplit, the scan's messages are encoded once and sent in large pieces
        (the same bytes, cheaper for the simulator's process)."""
        end = self.n_frames if cancel is None else min(int(cancel), self.n_frames)
        if self.rate_hz <= 0 and not self.max_piece:
            if end not in self._encoded:
                self._encoded[end] = self._scan_bytes(end)
            view = memoryview(self._encoded[end])
            for i in range(0, len(view), _SEND_PIECE):
                if self._stop.is_set():
                    return False
                conn.sendall(view[i:i + _SEND_PIECE])
            return cancel is None or cancel >= self.n_frames
        t0 = time.monotonic()
        for a in range(0, end, self.frames_per_chunk):
            if self._stop.is_set():
                return False
            self._send(conn, self._chunk_message(a, end))
            if self.rate_hz > 0:
                delay = t0 + min(a + self.frames_per_chunk, end) / self.rate_hz - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
        return cancel is None or cancel >= self.n_frames

    def _scan_bytes(self, end: int) -> bytes:
        """The ArrayChunks of frames 0 … ``end`` as sent."""
        return b"".join(self._chunk_message(a, end) for a in range(0, end, self.frames_per_chunk))

    def _chunk_message(self, a: int, end: int) -> bytes:
        """The ArrayChunk (header and payload) of frames ``a`` … up to ``end``."""
        (ip, _), (ix, _), (vt, v_code) = self.dtypes
        b = min(a + self.frames_per_chunk, end)
        lo, hi = int(self.indptr[a]), int(self.indptr[b])
        parts = [(self.indptr[a:b + 1] - lo).astype(ip).tobytes(), self.indices[lo:hi].astype(ix).tobytes(),
                 self.values[lo:hi].astype(vt).tobytes()]
        head = array_chunk(v_code, b - a, hi - lo, len(parts[0]), len(parts[0]) + len(parts[1]))
        return head + b"".join(parts)

    def _send(self, conn: socket.socket, data: bytes) -> None:
        if not self.max_piece:
            conn.sendall(data)
            return
        view, i = memoryview(data), 0
        while i < len(data):
            k = int(self.rng.integers(1, self.max_piece + 1))
            conn.sendall(view[i:i + k])
            i += k
