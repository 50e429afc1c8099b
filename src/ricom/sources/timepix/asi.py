"""ASI's sparse Timepix3 stream (the CheeTah camera software's TCP server) as a `Source`.

Protocol (``../shared/FORMATS.md`` §6, as received by LiberTEM-rs ``libertem_asi_tpx3``;
the client connects, default port 8283): 32-byte little-endian headers, byte 0 the tag.
AcquisitionStart (0) gives the scan (``nav_shape``), the detector (``sig_shape``) and the
dtypes of the CSR arrays; each scan is ScanStart (1), ArrayChunks (2) and ScanEnd (3);
AcquisitionEnd (4) ends the acquisition (in the middle of a scan: the scan was
cancelled).  An ArrayChunk header is followed by its payload: ``indptr`` (``nframes + 1``
values, from 0), ``indices`` (flat pixel indices ``y·W + x``) and ``values`` (counts, or
ToT in format 1) at the byte offsets the header gives.  CSR frame i of a scan is probe
position i in scan order; ``nav_shape`` is taken as (rows, columns), the NumPy order
LiberTEM uses (the Rust client only multiplies the two).

`AsiConnection` owns the socket and what the current AcquisitionStart said;
`AsiScanSource` reads one scan from it as `EventChunk`s (a pixel that counted v
electrons gives v events; ToT frames give one event per pixel with its ToT), so a live
session can read scan after scan from one connection.
"""
from __future__ import annotations

import socket
import struct
import threading
import time
from dataclasses import dataclass

import numpy as np

from ricom.core.chunks import ScanLayout
from ricom.core.errors import InputError, Param, SettingsError
from ricom.core.scan_positions import scan_positions_from
from ricom.sources.base import Source
from ricom.sources.merlin.stream import StreamBuffer
from ricom.sources.timepix.csr import CsrBatch

PORT = 8283
"""The camera software's default port for the sparse stream."""

HEADER_BYTES = 32
TAG_ACQ_START, TAG_SCAN_START, TAG_CHUNK, TAG_SCAN_END, TAG_ACQ_END = range(5)
DTYPES = {0: None, 1: None, 2: np.dtype("<u1"), 3: np.dtype("<u2"), 4: np.dtype("<u4"), 5: np.dtype("<u8")}
"""Wire dtype codes (0 U1 and 1 U4, bit-packed, are not sent in practice and not read here)."""
DTYPE_NAMES = {0: "U1", 1: "U4", 2: "U8", 3: "U16", 4: "U32", 5: "U64"}
BATCH_S = 0.015
"""ArrayChunks already received are joined into one event chunk for at most this long (latency)."""
BATCH_EVENTS = 1 << 22
"""… and up to this many events."""
MAX_COUNT = 4095
"""Most electrons one pixel can count in one frame (a Timepix3 pixel's dead time allows far fewer in a
4D-STEM dwell): larger counts are a corrupt stream, not one event each (which would allocate without bound)."""
_NAMES = {TAG_ACQ_START: "AcquisitionStart", TAG_SCAN_START: "ScanStart", TAG_CHUNK: "ArrayChunk",
          TAG_SCAN_END: "ScanEnd", TAG_ACQ_END: "AcquisitionEnd"}


@dataclass(frozen=True)
class AcquisitionStart:
    """The AcquisitionStart header: what every scan of the acquisition looks like."""

    version: int
    format: int
    """0: CSR counts; 1: CSR with ToT as values."""
    nav_shape: tuple[int, int]
    indptr_dtype: int
    sig_shape: tuple[int, int]
    indices_dtype: int
    sequence: int

    def summary(self) -> str:
        kind = "ToT" if self.format == 1 else "counts"
        return (f"ASI sparse stream v{self.version} ({kind}), scan {self.nav_shape[0]}×{self.nav_shape[1]}, "
                f"detector {self.sig_shape[0]}×{self.sig_shape[1]}")


def _connect(host: str, port: int, timeout: float) -> socket.socket:
    try:
        sock = socket.create_connection((host, int(port)), timeout=timeout)
    except OSError as exc:
        raise InputError(f"cannot connect to the ASI sparse stream {host}:{port} ({exc.strerror or exc}); "
                         "is the camera software (or the ASI simulator) running there?") from None
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def dtype_of(code: int, what: str) -> np.dtype:
    """The NumPy dtype of a wire dtype code; a one-line error for codes not read here."""
    dt = DTYPES.get(int(code))
    if dt is None:
        name = DTYPE_NAMES.get(int(code), f"unknown code {code}")
        raise InputError(f"the ASI stream sends {what} as {name}; only U8, U16, U32 and U64 are read")
    return dt


def parse_header(raw: bytes) -> tuple[int, object]:
    """``(tag, fields)`` of one 32-byte header (fields: `AcquisitionStart`, or a tuple)."""
    tag = raw[0]
    if tag == TAG_ACQ_START:
        version, fmt, ny, nx, ip, sy, sx, ix, seq = struct.unpack_from("<BBHHBHHBI", raw, 1)
        return tag, AcquisitionStart(version, fmt, (ny, nx), ip, (sy, sx), ix, seq)
    if tag == TAG_SCAN_START:
        return tag, struct.unpack_from("<IQ", raw, 1)  # sequence, metadata_length
    if tag == TAG_CHUNK:
        return tag, struct.unpack_from("<BIIII", raw, 1)  # value dtype, nframes, nnz, indices/values offsets
    if tag in (TAG_SCAN_END, TAG_ACQ_END):
        return tag, struct.unpack_from("<I", raw, 1)
    raise InputError(f"unknown ASI header tag {tag} (bytes {raw[:8].hex()}…); this is not an ASI sparse stream")


class AsiConnection:
    """An open connection to the camera software's sparse stream, read scan after scan.

    Parameters
    ----------
    host, port : str, int
        The camera PC and its port (default 8283).
    stop : threading.Event, optional
        Ends any wait on this connection.
    timeout : float, optional
        Seconds without data that end a scan being received (`InputError`); None waits.
    connect_timeout : float
        Seconds to wait for the connection itself.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = PORT, *, stop: threading.Event | None = None,
                 timeout: float | None = None, connect_timeout: float = 5.0) -> None:
        self.host, self.port = host, int(port)
        self.sock = _connect(host, self.port, connect_timeout)
        self.stream = StreamBuffer(self.sock, stop, timeout)
        self.acquisition: AcquisitionStart | None = None
        self.scan_sequence: int | None = None
        self.lost = False
        self.scans = 0

    def read_header(self) -> tuple[int, object] | None:
        """The next header, or None at the end of the stream or on a stop request."""
        s = self.stream
        if not s.fill(HEADER_BYTES):
            return None
        raw = s.peek(HEADER_BYTES)
        s.consume(HEADER_BYTES)
        return parse_header(raw)

    def read_bytes(self, n: int) -> np.ndarray | None:
        """The next ``n`` bytes as a uint8 array (a copy), or None (end of stream, stop)."""
        s = self.stream
        if not s.fill(n):
            return None
        out = np.frombuffer(s.buf, np.uint8, n, s.start).copy()
        s.consume(n)
        return out

    def wait_for_scan(self) -> int:
        """Read headers until a ScanStart (after an AcquisitionStart); its sequence number.

        Raises
        ------
        KeyboardInterrupt
            On a stop request.
        InputError
            If the connection closes or the stream is not in order.
        """
        while True:
            got = self.read_header()
            if got is None:
                if self.stream.stopped():
                    raise KeyboardInterrupt
                self.lost = True
                raise InputError(f"the ASI stream {self.host}:{self.port} closed while waiting for a scan")
            tag, fields = got
            if tag == TAG_ACQ_START:
                self.acquisition = fields
            elif tag == TAG_ACQ_END:
                self.acquisition = None
            elif tag == TAG_SCAN_START and self.acquisition is not None:
                seq, meta = fields
                if meta and self.read_bytes(meta) is None:
                    continue  # the stream ended: said on the next read
                self.scan_sequence = seq
                return seq
            else:
                self.lost = True  # without an AcquisitionStart the chunk sizes are unknown: no way back in step
                raise InputError(f"the ASI stream sent {_NAMES[tag]} where an AcquisitionStart or ScanStart "
                                 f"was expected")

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    def __enter__(self) -> AsiConnection:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class AsiScanSource(Source):
    """One scan of an ASI sparse stream, as events, read while it arrives.

    Create it after `AsiConnection.wait_for_scan` (or with ``host``/``port`` to connect
    and wait for the next scan).  CSR frame i is scan position i; the scan ends with
    ScanEnd.  An AcquisitionEnd before it (a cancelled scan), a closed connection or
    ``timeout`` seconds without data first yield every frame that arrived, then raise
    `InputError`, so that the partial result is kept.

    Parameters
    ----------
    connection : AsiConnection, optional
        An open connection that has just read a ScanStart; the source does not close it.
    host, port : str, int
        Used when no connection is given: connect (the source owns the connection).
    scan_shape : (int, int), optional
        (rows, columns); default the AcquisitionStart's ``nav_shape``.
    stop : threading.Event, optional
        Ends the scan early (what arrived is kept).
    timeout : float, optional
        Seconds without data that end the scan; None waits.
    scan_positions : ScanPositions, str or array, optional
        The scan order (`ricom.core.scan_positions`): CSR frame k is at the k-th listed
        position (frames past the list belong nowhere).  The header's ``nav_shape`` then
        only counts the frames (``header_scan_shape`` is None; ``nav_shape`` in `describe`).
    """

    kind = "events"

    def __init__(self, connection: AsiConnection | None = None, *, host: str = "127.0.0.1", port: int = PORT,
                 scan_shape=None, stop: threading.Event | None = None, timeout: float | None = None,
                 scan_positions=None, **_ignored) -> None:
        self._owns = connection is None
        if connection is None:
            connection = AsiConnection(host, port, stop=stop, timeout=timeout)
            try:
                connection.wait_for_scan()
            except BaseException:
                connection.close()
                raise
        if connection.acquisition is None or connection.scan_sequence is None:
            raise InputError("an ASI scan source needs a connection that has just read a ScanStart")
        self.connection, self.header = connection, connection.acquisition
        self.name = f"asi://{connection.host}:{connection.port}"
        self.sequence = connection.scan_sequence
        connection.scan_sequence = None  # a scan is read once
        self.nav_shape = tuple(int(v) for v in self.header.nav_shape)
        self.detector_shape = tuple(int(v) for v in self.header.sig_shape)
        shape = self.nav_shape if scan_shape is None else tuple(int(v) for v in scan_shape)
        if len(shape) != 2 or min(shape) < 1:
            raise SettingsError(Param("scan_shape"), f" must be two positive integers, got {shape}")
        self.scan_shape = shape
        self.layout = ScanLayout(shape, order=scan_positions_from(scan_positions))
        self.header_scan_shape = self.nav_shape if self.layout.order is None else None  # (a list places the frames)
        self.n_frames = self.nav_shape[0] * self.nav_shape[1]
        self.acquisition_header = self.header.summary()
        self._received = self._events = 0
        self._indptr_dt = dtype_of(self.header.indptr_dtype, "indptr")
        self._indices_dt = dtype_of(self.header.indices_dtype, "indices")

    @property
    def frames_received(self) -> int:
        """CSR frames (probe positions) of this scan received so far."""
        return self._received

    def summary(self) -> str:
        """One line: the stream, its scan and detector, the scan number."""
        return f"{self.acquisition_header}, scan #{self.sequence}"

    def chunks(self, chunk_size: int = 256):
        """Yield `EventChunk`s until ScanEnd (see the class docstring): the ArrayChunks already
        in the receive buffer are joined into one (for at most `BATCH_S`), the rest one by one."""
        conn = self.connection
        batch = CsrBatch(self.detector_shape[1], self.header.format == 1)
        done: list[np.ndarray] = []
        first_s = 0.0
        while True:
            if len(batch) and not self._next_chunk_waiting(batch, first_s):
                yield batch.chunk(np.concatenate(done), first_s)
                done = []
            got = conn.read_header()
            tag, fields = got if got is not None else (None, None)
            if tag != TAG_CHUNK and len(batch):  # the end, or an error: the frames so far first
                yield batch.chunk(np.concatenate(done), first_s)
                done = []
            if got is None:
                if conn.stream.stopped():
                    return
                conn.lost = True
                raise InputError(f"the ASI stream {conn.host}:{conn.port} closed after {self._received} of "
                                 f"{self.n_frames} frames of scan #{self.sequence}")
            if tag == TAG_CHUNK:
                try:
                    read = self._read_chunk(batch, *fields)
                except InputError:  # a broken chunk: the frames before it first
                    if len(batch):
                        yield batch.chunk(np.concatenate(done), first_s)
                    raise
                if read is not None:  # (None: the stream ended inside the payload: said on the next read)
                    first_s = read[1] if len(batch) == 1 else first_s
                    done.append(read[0])
            elif tag == TAG_SCAN_END:
                if self._received < self.n_frames:  # the stream stays in step: the next scan can follow
                    raise InputError(f"scan #{self.sequence} ended (ScanEnd) after {self._received} of "
                                     f"{self.n_frames} frames; the partial result is kept")
                return
            elif tag == TAG_ACQ_END:
                conn.acquisition = None
                raise InputError(f"scan #{self.sequence} was cancelled (AcquisitionEnd) after {self._received} "
                                 f"of {self.n_frames} frames")
            else:
                conn.lost = True
                raise InputError(f"the ASI stream sent {_NAMES[tag]} inside scan #{self.sequence} "
                                 f"after {self._received} frames")

    def _next_chunk_waiting(self, batch: CsrBatch, first_s: float) -> bool:
        """True if a whole ArrayChunk is already received and the batch may grow."""
        s = self.connection.stream
        if s.available < HEADER_BYTES or batch.n_events >= BATCH_EVENTS or \
                time.perf_counter() - first_s >= BATCH_S:
            return False
        raw = s.peek(HEADER_BYTES)
        if raw[0] != TAG_CHUNK:
            return False
        return s.available >= HEADER_BYTES + self._payload_layout(*parse_header(raw)[1])[-1]

    def _payload_layout(self, value_code: int, nframes: int, nnz: int, indices_offset: int, values_offset: int):
        """(values dtype, indptr bytes, indices offset, values offset, payload bytes) of an ArrayChunk."""
        values_dt = dtype_of(value_code, "values")
        ip_bytes = (nframes + 1) * self._indptr_dt.itemsize
        if indices_offset == 0 and values_offset == 0:  # an older sender: the three arrays back to back
            indices_offset = ip_bytes
            values_offset = indices_offset + nnz * self._indices_dt.itemsize
        end = max(ip_bytes, indices_offset + nnz * self._indices_dt.itemsize, values_offset + nnz * values_dt.itemsize)
        return values_dt, ip_bytes, indices_offset, values_offset, end

    def _read_chunk(self, batch: CsrBatch, value_code: int, nframes: int, nnz: int, indices_offset: int,
                    values_offset: int):
        """Add one ArrayChunk's frames to ``batch``; (its positions, when it arrived), or None if
        the stream ended inside it."""
        values_dt, ip_bytes, indices_offset, values_offset, end = self._payload_layout(
            value_code, nframes, nnz, indices_offset, values_offset)
        payload = self.connection.read_bytes(end)
        if payload is None:
            return None
        received = time.perf_counter()
        indptr = payload[:ip_bytes].view(self._indptr_dt)
        if int(indptr[0]) != 0 or int(indptr[-1]) != nnz or np.any(indptr[1:] < indptr[:-1]):  # unsigned: no diff
            self.connection.lost = True
            raise InputError(f"ArrayChunk at frame {self._received} of scan #{self.sequence}: indptr does not run "
                             f"from 0 to its {nnz} entries")
        indices = payload[indices_offset:indices_offset + nnz * self._indices_dt.itemsize].view(self._indices_dt)
        values = payload[values_offset:values_offset + nnz * values_dt.itemsize].view(values_dt)
        n_pix = self.detector_shape[0] * self.detector_shape[1]
        if nnz and int(indices.max()) >= n_pix:
            raise InputError(f"ArrayChunk at frame {self._received}: pixel index {int(indices.max())} outside the "
                             f"{self.detector_shape[0]}×{self.detector_shape[1]} detector")
        if nnz and self.header.format != 1 and int(values.max()) > MAX_COUNT:
            raise InputError(f"ArrayChunk at frame {self._received}: a pixel counted {int(values.max())} electrons "
                             f"in one frame (at most {MAX_COUNT} are plausible); the stream is corrupt")
        frames = self.layout.positions(self._received, nframes) if nframes else np.zeros(0, np.int64)
        frames = np.asarray(frames, np.int64)
        if self._received + nframes > self.layout.frames_per_pass:  # frames past the scan belong nowhere
            frames = frames.copy()
            frames[np.arange(self._received, self._received + nframes) >= self.layout.frames_per_pass] = -1
        n_before = batch.n_events
        top = batch.add(indptr, indices, values, frames, self.detector_shape[0] * self.detector_shape[1])
        if top >= self.detector_shape[0] * self.detector_shape[1]:
            raise InputError(f"ArrayChunk at frame {self._received}: pixel index {top} outside the "
                             f"{self.detector_shape[0]}×{self.detector_shape[1]} detector")
        self._received += nframes
        self._events += batch.n_events - n_before
        return frames[frames >= 0], received

    def describe(self) -> dict:
        return {**super().describe(), "name": self.name, "header_scan_shape": self.nav_shape,
                "scan_sequence": self.sequence, "frames_received": self._received, "events": self._events,
                "format": "ToT" if self.header.format == 1 else "counts"}

    def close(self) -> None:
        if self._owns:
            self.connection.close()


def open(spec: str, **options) -> AsiScanSource:
    """The next scan of ``asi://HOST[:PORT]`` (default port 8283); options as `AsiScanSource`."""
    if not spec.startswith("asi://"):
        raise InputError(f"an ASI sparse stream is given as asi://HOST[:PORT], not {spec!r}")
    host, _, port = spec[len("asi://"):].rstrip("/").partition(":")
    if port and not port.isdigit():
        raise InputError(f"{spec!r}: the port must be a number")
    return AsiScanSource(host=host or "127.0.0.1", port=int(port) if port else PORT, **options)
