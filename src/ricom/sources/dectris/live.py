"""One DECTRIS series (acquisition) received from the stream as a `Source`.

`DectrisLiveSource` waits on an open `ricom.sources.dectris.connection.StreamConnection`
for the header of its series (the armed sequence id, or in passive mode the next header
of any series), skipping every message of other series before it; then it yields the
series' images as `ricom.core.chunks.EncodedFrames` chunks — still compressed, decoded by
the pipeline's worker threads, with the detector's masked pixels left out
(`ricom.sources.dectris.mask.PixelMask`) — until the series' end message, its frame count,
a stop request, or a stall.  Frame k of the series goes to ``ScanLayout.positions(k)``, so
a lost image leaves a hole (counted in ``frames_lost``).  A series that ends early, a next
header before the end, a stall or a corrupt message first yields every complete frame,
then raises `InputError`, so that the pipeline keeps the partial result.
"""
from __future__ import annotations

import math
import threading
import time
import warnings
from collections.abc import Callable, Iterator

import numpy as np

from ricom.core.chunks import EncodedFrames, FrameChunk, ScanLayout
from ricom.core.errors import InputError, Param, SettingsError
from ricom.core.params import check_scan_memory, shape2
from ricom.core.scan_positions import scan_positions_from
from ricom.sources.base import BufferPool, Source
from ricom.sources.dectris.codec import Encoding, decode_blobs
from ricom.sources.dectris.connection import StreamConnection
from ricom.sources.dectris.mask import PixelMask
from ricom.sources.dectris.series import SeriesHeader
from ricom.sources.frame_order import FrameOrder

CHUNK_BYTES = 8 << 20
"""Largest decoded chunk (bytes)."""
FIRST_IMAGE_S = None
"""How long a V1 source waits for its first image (which tells the frame shape); None: no limit."""


class SeriesEndedEarly(InputError):
    """A series ended (end message or next header) before its frame count."""


class DectrisLiveSource(Source):
    """Images of one DECTRIS series, read while they arrive (see the module docstring).

    Parameters
    ----------
    connection : StreamConnection
        The open stream (stays open when the source closes).
    protocol : V1Protocol or V2Protocol
        The stream version.
    series : int, optional
        The sequence id ``arm`` returned; None takes the next header (passive mode).
    scan_shape : (int, int), optional
        Default: √n × √n when the series' frame count n is a square.
    skip_frames, flyback_frames, frames_per_position : int
        See `ScanLayout`.
    scan_positions : ScanPositions, str or array, optional
        The scan order (`ricom.core.scan_positions`); default: a raster.
    n_frames : int, optional
        Frames to read; default the series' ``nimages × ntrigger``.
    header_timeout : float, optional
        Seconds to wait for the header (None: no limit, as when the microscope arms).
    timeout : float, optional
        Seconds without data, once images flow, that end the series with an error.
    stop : threading.Event, optional
        Ends waiting; the frames received so far are kept.
    max_latency : float
        Yield a partial chunk when frames have waited this long (seconds).
    pixel_mask : ndarray, optional
        The detector's mask read over REST, used when the header carries none.
    crop : bool
        Frames beyond one pass of the scan are not added.
    on_close : callable, optional
        ``on_close(finished)`` when the source closes (active mode: disarm or abort).
    """

    kind = "frames"
    range_note = "a live stream can only be read as it arrives; record it to reconstruct it on a cluster"

    def __init__(self, connection: StreamConnection, protocol, *, series: int | None = None, scan_shape=None,
                 skip_frames: int = 0, flyback_frames: int = 0, frames_per_position: int = 1,
                 n_frames: int | None = None, header_timeout: float | None = None, timeout: float | None = None,
                 stop: threading.Event | None = None, max_latency: float = 0.005, pixel_mask=None,
                 crop: bool = False, on_close: Callable[[bool], None] | None = None, scan_positions=None,
                 **_ignored) -> None:
        self.connection, self.protocol, self.timeout = connection, protocol, timeout
        self.max_latency, self.crop, self.on_close = float(max_latency), bool(crop), on_close
        if stop is not None:
            connection.stop = stop
        self.host, self.port = connection.host, connection.port
        self._done = self._used = False
        self._last, self.skipped_messages, self._unused = -1, 0, 0
        self._order = FrameOrder("DECTRIS image numbers", "image number")
        try:
            self.header = self._wait_header(series, header_timeout)
            if self.header.detector_shape is None:
                self._first_image()
            self.detector_shape = tuple(self.header.detector_shape)
            self.dtype = np.dtype(self.header.dtype).newbyteorder("=")
            bit_depth = self.header.bit_depth or 8 * self.dtype.itemsize
            mask = self.header.pixel_mask if self.header.pixel_mask is not None else pixel_mask
            try:
                self.mask = PixelMask.from_detector_mask(mask, bit_depth, self.detector_shape)
            except InputError as exc:
                if mask is self.header.pixel_mask:
                    raise
                warnings.warn(f"{exc.message}; the pixel mask read before this series is not used",
                              RuntimeWarning, stacklevel=2)
                mask = None
                self.mask = PixelMask.from_detector_mask(None, bit_depth, self.detector_shape)
            self._detector_mask = mask
            self.n_frames = int(n_frames) if n_frames else self.header.n_frames
            self.header_scan_shape = _square(self.header.n_frames)
            origin = "given"
            if scan_shape is None:
                scan_shape, origin = _square(self.n_frames), "square of the frame count"
            if scan_shape is None:
                raise SettingsError(f"DECTRIS series {self.header.series} has {self.n_frames or 'an open number of'} "
                                    f"frames, not a square scan; give ", Param("scan_shape", form=True))
            self.scan_shape = shape2("scan shape", scan_shape)
            sy, sx = self.scan_shape
            check_scan_memory(sy * sx, f"DECTRIS series {self.header.series}: scan shape {sy}×{sx} ({origin})",
                              from_file=origin != "given")
            self.layout = ScanLayout(self.scan_shape, skip_frames, flyback_frames, frames_per_position,
                                     scan_positions_from(scan_positions))
            one_pass = self.layout.skip_frames + self.layout.frames_per_pass
            if self.n_frames is not None and self.n_frames < one_pass:  # the scan would stay partly empty
                warnings.warn(f"DECTRIS series {self.header.series} holds {self.n_frames} frames but one pass of the "
                              f"{self.scan_shape[0]}×{self.scan_shape[1]} scan needs {one_pass}; check scan_shape",
                              RuntimeWarning, stacklevel=2)
            self.acquisition_header = self.header.text()
            PixelMask.warm_up(self.dtype)
        except BaseException:
            self.close()
            raise

    # ------------------------------------------------------------------ header

    def _wait_header(self, series: int | None, timeout: float | None) -> SeriesHeader:
        t_end = None if timeout is None else time.monotonic() + timeout
        skipped = 0
        while True:
            left = None if t_end is None else t_end - time.monotonic()
            msg = self.connection.recv(left) if left is None or left > 0 else None
            if msg is None:
                self._not_started(series, timeout, skipped)
            kind, got = self.protocol.classify(msg)
            if kind == "end":  # the end of a series read up to its frame count: expected
                continue
            if kind == "header" and (series is None or got == series):
                if skipped:
                    self.skipped_messages = skipped
                    warnings.warn(f"skipped {skipped} DECTRIS stream messages of other series before the header "
                                  f"of series {got}", RuntimeWarning, stacklevel=4)
                return self.protocol.read_header(msg, self.connection)
            skipped += 1

    def _not_started(self, series, timeout, skipped: int) -> None:
        if self.connection.stopped():
            raise KeyboardInterrupt
        which = f"series {series}" if series is not None else "a series"
        extra = f" ({skipped} messages of other series arrived)" if skipped else ""
        raise InputError(f"the DECTRIS stream {self.connection.where} sent no header of {which} within "
                         f"{timeout:g} s{extra}; is the stream enabled, in the stream version asked for, "
                         f"and is this its port?")

    def _first_image(self) -> None:
        """V1: the first image tells the frame shape and type (it is read again later)."""
        held = []
        while True:
            msg = self.connection.recv(FIRST_IMAGE_S)
            if msg is None:
                for m in reversed(held):
                    self.connection.push_back(m)
                if self.connection.stopped():
                    raise KeyboardInterrupt
                raise InputError(f"the DECTRIS stream {self.connection.where} sent no image of series "
                                 f"{self.header.series}")
            held.append(msg)
            batch = self.protocol.images([msg], self.header)
            if batch.error is not None:
                raise batch.error
            if batch.frames or batch.stop is not None:
                break
        for m in reversed(held):
            self.connection.push_back(m)
        if not batch.frames:
            raise SeriesEndedEarly(f"DECTRIS series {self.header.series} ended before its first image")
        self.header.dtype = batch.encoding.dtype
        if self.header.bit_depth is None:
            self.header.bit_depth = 8 * batch.encoding.dtype.itemsize

    # ------------------------------------------------------------------ images

    def chunks(self, chunk_size: int = 256) -> Iterator[FrameChunk]:
        """Yield chunks of up to ``chunk_size`` frames as they arrive (see the module docstring)."""
        if self._used:
            raise InputError("a live DECTRIS series can be read only once; arm again for the next one")
        self._used = True
        frame_bytes = int(np.prod(self.detector_shape)) * self.dtype.itemsize
        chunk_size = max(1, min(int(chunk_size), CHUNK_BYTES // max(1, frame_bytes)))
        self._buffers = BufferPool(self.detector_shape, self.dtype, chunk_size)
        frames: list = []
        blobs: list = []
        encoding, t_first = None, None
        t_progress = time.monotonic()  # an image or a control message last arrived
        while True:
            want = chunk_size - len(frames)
            if self.n_frames is not None:
                want = min(want, self.n_frames - (self._last + 1) - len(frames))
            ended = None
            if want > 0:
                wait = None if t_first is None else max(0.0, self.max_latency - (time.perf_counter() - t_first))
                wait = self.timeout if wait is None else wait
                msgs = self.connection.recv_batch(want, wait)
                batch = self.protocol.images(msgs, self.header)
                if batch.frames and t_first is None:  # (other messages start no chunk: no busy wait)
                    t_first = time.perf_counter()
                self.skipped_messages += batch.skipped
                if batch.frames:
                    if encoding is None:
                        encoding = batch.encoding
                    elif batch.encoding != encoding:
                        raise InputError(f"DECTRIS series {self.header.series} changed its encoding mid-series")
                    frames += batch.frames
                    blobs += batch.blobs
                if batch.frames or batch.stop is not None:
                    t_progress, self._unused = time.monotonic(), 0
                else:
                    self._unused += len(msgs)
                if batch.error is not None:
                    ended = batch.error
                elif batch.stop is not None:
                    ended = self._control(msgs, batch.stop)
                elif not msgs:
                    ended = self._idle(t_first)
                elif self.timeout is not None and time.monotonic() - t_progress >= self.timeout:
                    ended = "junk"  # messages keep coming, none of them an image of this series
            else:
                ended = "count"
            late = t_first is not None and time.perf_counter() - t_first >= self.max_latency
            if frames and (ended or late or len(frames) >= chunk_size):
                yield self._chunk(frames, blobs, encoding, t_first)
                frames, blobs, t_first = [], [], None
            if ended:
                self._finish(ended)
                return

    def _control(self, msgs: list, k: int) -> str:
        """A header or end message at ``msgs[k]``: why the series ended."""
        kind, series = self.protocol.classify(msgs[k])
        rest = msgs[k + 1:] if kind == "end" and series == self.header.series else msgs[k:]
        for m in reversed(rest):
            self.connection.push_back(m)
        if kind == "end" and series == self.header.series:
            return "end"
        if kind == "end":  # the end of another series: skip it and go on
            self.connection.recv(0)
            return ""
        return "next header"

    def _idle(self, t_first) -> str:
        """Nothing arrived: a stop request, a stall, or just a pause."""
        if self.connection.stopped():
            return "stopped"
        if t_first is None and self.timeout is not None and self.connection.idle_s() >= self.timeout:
            return "stall"
        return ""

    def _finish(self, why) -> None:
        if isinstance(why, Exception):
            self._done = True
            raise why
        got, n = self._last + 1, self.n_frames
        of = f" of {n}" if n else ""
        one_pass = self.layout.skip_frames + self.layout.frames_per_pass
        if why == "end" and n is None and got < one_pass:  # no frame count in the header: the scan tells
            n, of = one_pass, f" of the {one_pass} of one scan pass"
        if why in ("count", "stopped") or (why == "end" and (n is None or got >= n)):
            self._done = why != "stopped"
            return
        self._done = True
        series = self.header.series
        if why == "end":
            raise SeriesEndedEarly(f"DECTRIS series {series} ended after {got}{of} frames "
                                   f"(the acquisition was stopped early)")
        if why == "next header":
            raise SeriesEndedEarly(f"a new DECTRIS series started after {got}{of} frames of series {series} "
                                   f"(the scan was aborted, or the detector re-armed)")
        self.connection.lost = True
        if why == "junk":
            raise InputError(f"the DECTRIS stream {self.connection.where} sent {self._unused} other messages "
                             f"but no image for {self.timeout:g} s after {got}{of} frames of series {series}; "
                             f"is this the detector's image stream?")
        raise InputError(f"the DECTRIS stream {self.connection.where} sent nothing for {self.timeout:g} s "
                         f"after {got}{of} frames of series {series}")

    def _chunk(self, frames: list, blobs: list, encoding: Encoding, t_first) -> FrameChunk:
        idx = np.asarray(frames, np.int64)
        keep, notes = self._order.accept(idx)
        for note in notes:
            warnings.warn(note, RuntimeWarning, stacklevel=3)
        if keep is None:
            positions = self.layout.positions(int(idx[0]), len(idx))
        else:
            positions = np.where(keep, self.layout.positions_at(np.maximum(idx, 0)), -1)
        if self.crop:
            positions = np.where(idx < self.layout.skip_frames + self.layout.frames_per_pass, positions, -1)
        self._last = self._order.next - 1
        mask, start = self.mask, int(idx[0])

        def decode(b, out, enc=encoding):
            decode_blobs(b, enc, out, start, mask)

        encoded = EncodedFrames(blobs, encoding.codec, self.dtype, self.detector_shape, decode,
                                encoding.dtype.itemsize, self._buffers.take)
        return FrameChunk(encoded=encoded, positions=positions, received_s=t_first)

    # ------------------------------------------------------------------ reporting

    @property
    def frames_received(self) -> int:
        """Index + 1 of the last frame yielded (frames of this series so far)."""
        return self._last + 1

    @property
    def frames_lost(self) -> int:
        """Images whose numbers never arrived."""
        return self._order.lost

    @property
    def frames_duplicated(self) -> int:
        """Images that arrived a second time (dropped, not added twice)."""
        return self._order.duplicates

    def recording_datasets(self) -> dict:
        """What a recording stores beside the frames: the pixel mask (NXmx bits) and bit depth,
        so that a reader leaves out the same pixels (the frames are stored as received)."""
        raw = self._detector_mask
        if raw is None or np.shape(raw) != self.detector_shape:
            raw = self.mask.bad.astype(np.uint32)  # binned (merge2x2) or no mask: bit 0 where left out
        return {"pixel_mask": (np.asarray(raw, np.uint32), {"bit_depth": int(self.mask.saturation).bit_length()
                                                            if self.mask.saturation else 0})}

    def sample_frames(self) -> np.ndarray:
        return np.zeros((2, *self.detector_shape), self.dtype)

    def summary(self) -> str:
        sy, sx = self.scan_shape
        return (f"{self.n_frames or 'continuous'} frames, {self.header.summary()}, scan {sy}×{sx}; "
                f"{self.mask.summary()}")

    def describe(self) -> dict:
        return {**super().describe(), "name": f"DECTRIS live {self.host}:{self.port} (stream {self.protocol.name})",
                "series": self.header.series, "dtype": str(self.dtype), "bit_depth": self.header.bit_depth,
                "frames_in_series": self.header.n_frames, "skipped_messages": self.skipped_messages,
                **self.mask.describe(), "config": self.header.config}

    def close(self) -> None:
        on_close, self.on_close = self.on_close, None
        if on_close is not None:
            on_close(self._done)
        if getattr(self, "own_connection", False):
            self.connection.close()


def open(spec: str, **options) -> DectrisLiveSource:
    """Reader entry point for ``dectris://HOST[:PORT][/v1|/v2]``: the next series on that
    stream (passive; the default port follows the version: 9999 for v1, 31001 for v2).

    The source opens its own connection and closes it with itself.
    """
    import re

    from ricom.sources.dectris.stream_v1 import V1Protocol
    from ricom.sources.dectris.stream_v2 import V2Protocol

    m = re.fullmatch(r"dectris://([^:/]+)(?::(\d+))?(?:/(v1|v2))?/?", spec.strip())
    if m is None:
        raise InputError(f"a DECTRIS stream is given as dectris://HOST[:PORT][/v1|/v2], not {spec!r}")
    protocol = V2Protocol() if m.group(3) == "v2" else V1Protocol()
    connection = StreamConnection(m.group(1), int(m.group(2) or protocol.port), stop=options.get("stop"))
    try:
        source = DectrisLiveSource(connection, protocol, **options)
    except BaseException:
        connection.close()
        raise
    source.own_connection = True
    return source


def _square(n: int | None) -> tuple[int, int] | None:
    if not n:
        return None
    r = math.isqrt(int(n))
    return (r, r) if r * r == int(n) else None


__all__ = ["DectrisLiveSource", "SeriesEndedEarly", "StreamConnection"]
