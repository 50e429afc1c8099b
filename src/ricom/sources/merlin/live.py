"""The Merlin live TCP stream as a `Source`.

Protocol (``../shared/FORMATS.md`` §2): every message on the data port (default 6342)
is ``MPX,`` + 10 decimal digits + ``,`` + payload, the number being the payload length
**plus one**.  When the detector is armed it sends one acquisition header (payload
``HDR,…``, the text of a ``.hdr`` file), then one message per frame whose payload is one
MIB frame (header + pixels).  There is no end message: the acquisition ends after
``Frames in Acquisition`` frames (0 = until stopped).

`MerlinLiveSource` reads the socket into one preallocated buffer (``recv_into``,
`ricom.sources.merlin.stream.StreamBuffer`), skips stale bytes before the acquisition
header, checks every frame's framing, length and sequence number with array operations
and decodes whole chunks of frames at once with `ricom.sources.merlin.mib.decode_frames`.
It ends at the frame count, on a stop request (a `threading.Event`) or when the
connection drops; in the last case it first yields every complete frame, then raises
`InputError`, so that `ricom.engine.pipeline.run` keeps (and the command line saves) the
partial result.  The control-port client `MerlinControl`, the ``MPX`` framing helpers
(`mpx_prefix`, `connect`) and the port numbers live in `ricom.sources.merlin.control` and
are re-exported here.
"""
from __future__ import annotations

import dataclasses
import re
import threading
import time
import warnings
from collections.abc import Callable, Iterator

import numpy as np

from ricom.core.chunks import FrameChunk, PackedFrames, ScanLayout
from ricom.core.errors import InputError, Param, SettingsError
from ricom.core.params import check_scan_memory, shape2
from ricom.core.scan_positions import scan_positions_from
from ricom.sources.base import BufferPool, Source
from ricom.sources.frame_order import FrameOrder
from ricom.sources.merlin.connection import AcquisitionAborted, MerlinConnection
from ricom.sources.merlin.control import (
    CONTROL_PORT,
    DATA_PORT,
    PREFIX_BYTES,
    PREFIX_RE,
    MerlinControl,
    connect,
    mpx_prefix,
)
from ricom.sources.merlin.hdr import acquisition_scan_shape, header_int, parse_acquisition_header
from ricom.sources.merlin.mib import check_frames, decode_frames, parse_frame_header, unwrap_sequence

__all__ = ["CONTROL_PORT", "DATA_PORT", "PREFIX_BYTES", "AcquisitionAborted", "MerlinConnection", "MerlinControl",
           "MerlinLiveSource", "connect", "mpx_prefix"]

_HDR_RE = re.compile(rb"MPX,(\d{10}),HDR,")


CHUNK_BYTES = 8 << 20
"""Largest decoded chunk (bytes); a 256×256 16-bit detector gives 64 frames per chunk
(at 10 GbE rates that is a chunk every 7 ms: the engine's per-chunk cost stays small)."""


class MerlinLiveSource(Source):
    """Frames of one acquisition, read from the Merlin data port while they arrive.

    Creating it connects and blocks until the acquisition header and the first frame's
    header have arrived (the detector shape comes from the frame header).

    Parameters
    ----------
    host, port : str, int
        The data port (default 6342).
    scan_shape : (int, int), optional
        (scan_y, scan_x); default from the acquisition header (ScanY/ScanX, or frames per
        trigger for a line trigger).
    skip_frames, flyback_frames, frames_per_position : int
        See `ScanLayout`; frame k of the acquisition (sequence number k + 1) goes to
        ``ScanLayout.positions(k)``, so a lost frame leaves a hole instead of shifting.
    scan_positions : ScanPositions, str or array, optional
        The scan order (`ricom.core.scan_positions`); default: a raster.
    n_frames : int, optional
        Frames to read; default ``Frames in Acquisition`` (0 there = until stopped).
    timeout : float, optional
        Give up (`InputError`) when no byte arrives for this many seconds; None waits.
    stop : threading.Event, optional
        When set, waiting ends and `chunks` returns after the frames it has.
    trigger : callable, optional
        Called once the data connection is open and before waiting for the header:
        arm and trigger the detector here (e.g. ``MerlinControl(...).start``).
    max_latency : float
        Yield a partial chunk when frames have waited this long (seconds).
    control : MerlinControl, optional
        Closed with the source; sent ``STOPACQUISITION`` if the acquisition did not end.
    connection : MerlinConnection, optional
        Read this acquisition from an open data connection (a live session reads one
        acquisition after another on it); the connection stays open when the source
        closes.  Without it the source opens its own connection and closes it.
    crop : bool
        Frames beyond one pass of the scan are not added (default: they start a new pass).
    """

    range_note = "a live stream can only be read as it arrives; record it to a .mib file to reconstruct it on a cluster"
    kind = "frames"

    def __init__(self, host: str = "127.0.0.1", port: int = DATA_PORT, *, scan_shape=None,
                 skip_frames: int = 0, flyback_frames: int = 0, frames_per_position: int = 1,
                 n_frames: int | None = None, timeout: float | None = None,
                 stop: threading.Event | None = None, trigger: Callable[[], object] | None = None,
                 max_latency: float = 0.02, control: MerlinControl | None = None,
                 connect_timeout: float = 5.0, connection: MerlinConnection | None = None, crop: bool = False,
                 scan_positions=None, **_ignored) -> None:
        self.max_latency, self.control, self.crop = float(max_latency), control, bool(crop)
        self._done = self._used = False
        self._last_seq, self._buffers = 0, None
        self._order = FrameOrder("Merlin frame sequence numbers", "sequence number", wire_offset=1)
        self._own = connection is None
        self.connection = connection or MerlinConnection(host, port, stop=stop, timeout=timeout,
                                                         connect_timeout=connect_timeout)
        self.host, self.port = self.connection.host, self.connection.port
        try:
            self._stream = self.connection.stream
            if trigger is not None:
                trigger()
            self._read_acquisition_header()
            self._read_first_frame_header()
            total = header_int(self.header_fields, "Frames in Acquisition (Number)")
            self.n_frames = int(n_frames) if n_frames else (total or None)
            origin = "given"
            if scan_shape is None:
                scan_shape, origin = acquisition_scan_shape(self.header_fields, self.n_frames, flyback_frames,
                                                            frames_per_position)
            if scan_shape is None:
                raise SettingsError("the Merlin acquisition header carries no scan shape; give ",
                                    Param("scan_shape", form=True))
            self.scan_shape = shape2("scan shape", scan_shape)
            check_scan_memory(self.scan_shape[0] * self.scan_shape[1], f"the Merlin acquisition's scan shape "
                              f"{self.scan_shape[0]}×{self.scan_shape[1]} ({origin})", from_file=origin != "given")
            self.layout = ScanLayout(self.scan_shape, skip_frames, flyback_frames, frames_per_position,
                                     scan_positions_from(scan_positions))
            self.header_scan_shape, _ = acquisition_scan_shape(self.header_fields, total or None, flyback_frames,
                                                               frames_per_position)
        except BaseException:
            self.close()
            raise

    def _read_acquisition_header(self) -> None:
        s, skipped = self._stream, 0
        while True:
            m = _HDR_RE.search(s.buf, s.start, s.end)
            if m is not None:
                break
            drop = max(0, s.available - 18)  # a prefix may straddle two reads
            if s.buf.find(b"MPX,", s.start, s.start + drop) >= 0:
                s.progress()  # frames of an acquisition already running: Merlin data, not junk
            skipped += drop
            s.consume(drop)
            if not s.fill(s.available + 1):
                self._raise_not_started("an acquisition header")
        skipped += m.start() - s.start
        s.consume(m.start() - s.start)
        length = int(m.group(1)) - 1
        if length > 1 << 20:
            raise InputError(f"the acquisition header claims {length} bytes; this is not a Merlin data port")
        if not s.fill(PREFIX_BYTES + length):
            self._raise_not_started("the whole acquisition header")
        self.acquisition_header = s.peek(PREFIX_BYTES + length)[PREFIX_BYTES:].decode("latin-1")
        s.consume(PREFIX_BYTES + length)
        self.header_fields = parse_acquisition_header(self.acquisition_header)
        s.progress()
        self.skipped_bytes = skipped
        if skipped:
            warnings.warn(f"skipped {skipped} stale bytes before the Merlin acquisition header",
                          RuntimeWarning, stacklevel=3)

    def _read_first_frame_header(self) -> None:
        s = self._stream
        if not s.fill(PREFIX_BYTES + 16):
            self._raise_not_started("the first frame")
        m = PREFIX_RE.match(s.peek(PREFIX_BYTES))
        if m is None:
            raise InputError(f"expected a frame message after the acquisition header, got "
                             f"{s.peek(24)!r}; the stream is corrupt")
        length = int(m.group(1)) - 1
        if not s.fill(PREFIX_BYTES + min(length, 4096)):
            self._raise_not_started("the first frame header")
        head = s.peek(PREFIX_BYTES + min(length, 4096))[PREFIX_BYTES:]
        if head.startswith(b"HDR,"):
            raise InputError("the detector sent a second acquisition header before any frame; "
                             "it was re-armed — start the acquisition again")
        header = parse_frame_header(head, header_int(self.header_fields, "Counter Depth (number)"))
        if header.frame_bytes != length:
            raise InputError(f"the first frame message holds {length} bytes but its MIB header describes "
                             f"{header.frame_bytes} (header {header.header_bytes} + pixels "
                             f"{header.pixel_bytes}); the stream is corrupt")
        self.frame_header, self.detector_shape = header, tuple(int(v) for v in header.detector_shape)
        self._seq0 = header.sequence_number - 1  # 0 from a detector; frames are counted from the first
        if self._seq0:
            warnings.warn(f"the first Merlin frame has sequence number {header.sequence_number}, not 1; "
                          f"frames are counted from it", RuntimeWarning, stacklevel=3)
        self._message_bytes, self._reference = PREFIX_BYTES + length, header.reference_bytes(head)
        self._prefix = np.frombuffer(mpx_prefix(length), np.uint8)
        # The same frames seen from the MPX prefix (to decode) or from the MQ1 header (to check).
        self._wire_decode = dataclasses.replace(header, header_bytes=header.header_bytes + PREFIX_BYTES,
                                                frame_bytes=self._message_bytes)
        self._wire_check = dataclasses.replace(header, frame_bytes=self._message_bytes)
        # raw 1-bit single-chip frames go to the engine as packed words (1/8 of the bytes of decoded ones)
        self._packed_bits = header.packed_bits

    def _raise_not_started(self, what: str) -> None:
        if self._stream.stopped():
            raise KeyboardInterrupt
        raise InputError(f"the Merlin data connection to {self.host}:{self.port} closed before {what} "
                         f"arrived; was the acquisition started?")

    def chunks(self, chunk_size: int = 256) -> Iterator[FrameChunk]:
        """Yield chunks of up to ``chunk_size`` frames as they arrive (see the class notes)."""
        if self._used:
            raise InputError("a live Merlin acquisition can be read only once; connect again for the next one")
        self._used = True
        s, msg = self._stream, self._message_bytes
        # at most CHUNK_BYTES of decoded frames per chunk: memory stays small however large the scan
        frame_bytes = int(np.prod(self.detector_shape)) * np.dtype(self.frame_header.out_dtype).itemsize
        if self._packed_bits:
            frame_bytes //= 8 * np.dtype(self.frame_header.out_dtype).itemsize
        chunk_size = max(1, min(int(chunk_size), CHUNK_BYTES // max(1, frame_bytes)))
        if self._packed_bits:  # packed words, copied out of the stream buffer
            frame_shape, dtype = (int(np.prod(self.detector_shape)) // 8,), np.uint8
        else:
            frame_shape, dtype = self.detector_shape, self.frame_header.out_dtype
        # two chunks queued by the reader thread, one in the engine, one filling
        self._buffers = BufferPool(frame_shape, dtype, chunk_size, size=4)
        t_first = None  # perf_counter when the oldest complete frame waiting arrived
        t_recv = s.last_recv_s
        while True:
            want = chunk_size if self.n_frames is None else min(chunk_size, self.n_frames - self._last_seq)
            if want <= 0:
                self._done = True
                return
            n = min(s.available // msg, want)
            late = t_first is not None and time.perf_counter() - t_first >= self.max_latency
            if n and (n == want or s.eof or s.stopped() or late):
                yield from self._emit(n, t_first if t_first is not None else t_recv)
                t_first = t_recv if s.available >= msg else None  # frames left over came with the last recv
                if self._done:
                    return
                continue
            if s.eof:
                self._raise_disconnected()
            if s.stopped():
                return
            s.reserve(want * msg + PREFIX_BYTES + 1)
            self._recv()
            t_recv = s.last_recv_s
            if t_first is None and s.available >= msg:
                t_first = t_recv

    def _recv(self) -> None:
        """One read; a stall names the detector and what was received last."""
        try:
            self._stream.recv()
        except InputError as exc:
            of = f" of {self.n_frames}" if self.n_frames else ""
            raise InputError(f"{self.host}:{self.port}: ", exc.message,
                             f" (received {self._last_seq}{of} frames)") from None

    def _emit(self, n: int, received_s: float | None) -> Iterator[FrameChunk]:
        s, msg = self._stream, self._message_bytes
        s.reserve(n * msg + PREFIX_BYTES + 1)  # check_frames reads from the MQ1 header on
        a = np.frombuffer(s.buf, np.uint8, count=n * msg, offset=s.start).reshape(n, msg)
        ok = (a[:, :PREFIX_BYTES] == self._prefix).all(1)
        good = n if ok.all() else int(np.argmin(ok))
        if good:  # the MIB headers, read from a view that starts at the first one
            mq1 = np.frombuffer(s.buf, np.uint8, count=good * msg, offset=s.start + PREFIX_BYTES)
            good, seq = check_frames(mq1, self._wire_check, good, self._reference)
        if good:
            positions = self._positions(seq[:good])
            if self._packed_bits:  # copy the packed words out of the stream buffer (aligned), no decoding
                words = self._buffers.take(good)
                words[:] = a[:good, self._wire_decode.header_bytes:]
                chunk = FrameChunk(packed=PackedFrames(words.view(np.uint64), 0, self.detector_shape, bits=1),
                                   positions=positions, received_s=received_s)
            else:
                frames = decode_frames(a[:good], self._wire_decode, good, check=False,
                                       out=self._buffers.take(good))
                chunk = FrameChunk(frames, positions, received_s=received_s)
            s.consume(good * msg)
            s.progress()
            yield chunk
        if good < n:
            self._bad_message()

    def _positions(self, seq: np.ndarray) -> np.ndarray:
        seq = unwrap_sequence(seq - self._seq0, self._order.next + 1)
        keep, notes = self._order.accept(seq - 1)
        for note in notes:
            warnings.warn(note, RuntimeWarning, stacklevel=4)
        if keep is None:
            positions = self.layout.positions(int(seq[0]) - 1, len(seq))
        else:
            positions = np.where(keep, self.layout.positions_at(np.maximum(seq - 1, 0)), -1)
        if self.crop:  # frames past one pass of the scan go nowhere
            positions = np.where(seq - 1 < self.layout.skip_frames + self.layout.frames_per_pass, positions, -1)
        self._last_seq = self._order.next
        return positions

    @property
    def frames_lost(self) -> int:
        """Frames whose sequence numbers never arrived."""
        return self._order.lost

    @property
    def frames_duplicated(self) -> int:
        """Frames that arrived a second time (dropped, not added twice)."""
        return self._order.duplicates

    def _bad_message(self) -> None:
        s, frame = self._stream, self._last_seq + 1
        head = s.peek(64)
        m = PREFIX_RE.match(head)
        if m is None:
            raise InputError(f"lost the Merlin message framing at frame {frame}: expected "
                             f"'MPX,<10 digits>,' but got {head[:24]!r}; the stream is corrupt")
        length = int(m.group(1)) - 1
        if head[PREFIX_BYTES:PREFIX_BYTES + 4] == b"HDR,":
            if self.n_frames is None:  # continuous mode: the detector was re-armed
                self._done = True
                return
            raise AcquisitionAborted(f"a new acquisition started after {self._last_seq} of {self.n_frames} frames "
                                     f"(the scan was aborted, or the detector re-armed)")
        if length != self._message_bytes - PREFIX_BYTES:
            raise InputError(f"frame {frame} is {length} bytes but the first frame was "
                             f"{self._message_bytes - PREFIX_BYTES}; the detector settings changed "
                             f"mid-acquisition or a frame was truncated")
        try:
            change = f"its header changed to {parse_frame_header(s.peek(4096)[PREFIX_BYTES:]).summary()}"
        except InputError:
            change = f"no MIB header where one should be (found {head[15:27]!r})"
        raise InputError(f"frame {frame}: {change} (the first frame was {self.frame_header.summary()}); "
                         f"the stream is corrupt or the settings changed mid-acquisition")

    def _raise_disconnected(self) -> None:
        self.connection.lost = True
        of = f" of {self.n_frames}" if self.n_frames else ""
        partial = self._stream.available
        extra = f"; a partial frame ({partial} of {self._message_bytes} bytes) was dropped" if partial else ""
        raise InputError(f"the Merlin data connection closed after {self._last_seq}{of} frames{extra}")

    @property
    def frames_received(self) -> int:
        """Sequence number of the last frame yielded (frames of this acquisition so far)."""
        return self._last_seq

    def sample_frames(self) -> np.ndarray | PackedFrames:
        """Two empty patterns of the shape and type the chunks will have (`ricom.engine.pipeline.run`
        warms the engine up with them before the first frames arrive)."""
        if self._packed_bits:
            return PackedFrames(np.zeros((2, int(np.prod(self.detector_shape)) // 64), np.uint64), 0,
                                self.detector_shape, bits=1)
        return np.zeros((2, *self.detector_shape), self.frame_header.out_dtype)

    def summary(self) -> str:
        """One line: frames, detector mode and scan shape of this acquisition."""
        sy, sx = self.scan_shape
        return f"{self.n_frames or 'continuous'} frames, {self.frame_header.summary()}, scan {sy}×{sx}"

    def describe(self) -> dict:
        h = self.frame_header
        return {**super().describe(), "name": f"Merlin live {self.host}:{self.port}",
                "counter_depth": h.counter_depth, "raw": h.raw, "dtype": str(h.dtype),
                "frame_bytes": h.frame_bytes, "skipped_bytes": self.skipped_bytes,
                "frames_in_acquisition": self.n_frames}

    def close(self) -> None:
        if self.control is not None:
            if not self._done:
                try:
                    self.control.cmd("STOPACQUISITION")
                except (InputError, OSError):
                    pass
            self.control.close()
            self.control = None
        if self._own:
            self.connection.close()


def open(spec: str, **options) -> MerlinLiveSource:
    """Reader entry point for ``merlin://HOST[:DATA_PORT]`` (options as for `MerlinLiveSource`)."""
    m = re.fullmatch(r"merlin://([^:/]+)(?::(\d+))?/?", spec.strip())
    if m is None:
        raise InputError(f"a Merlin stream is given as merlin://HOST[:PORT], not {spec!r}")
    return MerlinLiveSource(m.group(1), int(m.group(2) or DATA_PORT), **options)
