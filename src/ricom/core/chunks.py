"""The chunk types of the data stream: what sources yield and the engine takes.

A `FrameChunk` holds whole diffraction patterns (or `PackedFrames`: patterns still in a
file buffer, read in place; or `EncodedFrames`: patterns still compressed as a detector
sent them, decoded on the engine's worker threads), an `EventChunk` single-electron events.  Each carries flat
scan positions (``iy * scan_x + ix``), with ``-1`` for data that belongs to no scan
position (flyback, skipped frames, events outside a line).  `ScanLayout` maps a running
frame index to scan positions for sources that deliver frames in acquisition order, in
raster order or in any order a `ricom.core.scan_positions.ScanPositions` gives.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ricom.core.errors import Param, SettingsError
from ricom.core.scan_positions import ScanPositions


@dataclass(frozen=True)
class PackedFrames:
    """Patterns stored with a fixed gap between them (per-frame headers), read in place.

    ``rows (k, L)`` is a C-contiguous uint8 or uint16 array over the stored bytes (e.g. a
    memory-mapped Merlin file); pattern i is ``rows[i, offset:offset + ny*nx]`` in row
    order, big-endian when ``big_endian``.  The engine reads it without a copy;
    indexing or `unpack` gives ordinary native arrays.
    """

    rows: np.ndarray
    offset: int
    frame_shape: tuple[int, int]
    big_endian: bool = False
    bits: int = 0
    """1: one bit per pixel, packed in big-endian 64-bit words (``rows`` uint64, bit k of
    word j of a row is pixel 64·j + k; Merlin raw 1-bit).  0: one ``rows`` item per pixel."""
    max_value: int = 0
    """Largest value a pixel can hold, from the counter depth the source states (4095 for
    12-bit Merlin frames); 0: unknown (the dtype's).  The engine sizes its 16-bit sums
    with it (they stay exact for any values)."""

    @property
    def shape(self) -> tuple[int, int, int]:
        return (self.rows.shape[0], *self.frame_shape)

    @property
    def dtype(self) -> np.dtype:
        return self.rows.dtype

    def __len__(self) -> int:
        return self.rows.shape[0]

    def unpack(self, index=slice(None)) -> np.ndarray:
        """Native ``(k, ny, nx)`` copy of the patterns ``index`` (a slice or int array)."""
        ny, nx = self.frame_shape
        if self.bits == 1:
            words = np.ascontiguousarray(self.rows[index, self.offset:self.offset + ny * nx // 64])
            k = words.shape[0]
            octets = words.view(np.uint8).reshape(k, -1, 8)[:, :, ::-1]  # big-endian words, bit k = pixel k
            return np.unpackbits(octets, axis=-1, bitorder="little").reshape(k, ny, nx)
        block = self.rows[index, self.offset:self.offset + ny * nx]
        if self.big_endian:
            block = block.byteswap()
        return np.ascontiguousarray(block).reshape(-1, ny, nx)

    def __getitem__(self, index) -> np.ndarray:
        if isinstance(index, (int, np.integer)):
            i = int(index) % len(self)
            return self.unpack(slice(i, i + 1))[0]
        return self.unpack(index)


@dataclass(frozen=True)
class EncodedFrames:
    """Patterns still compressed as the detector sent them, one blob each.

    The engine decodes them where it reduces the chunk (on a worker thread of the
    pipeline), so decompression runs in parallel over chunks.  ``decoder(blobs, out)``,
    given by the source, fills ``out`` ``(k, ny, nx)`` of ``dtype`` from ``k`` blobs
    (and leaves out the pixels the source masks).  ``codec`` names the blobs' encoding;
    ``"bslz4"`` blobs are bitshuffle-LZ4 in the HDF5 filter-32008 chunk framing, which a
    recorder can store as HDF5 chunks unchanged.
    """

    blobs: list
    codec: str
    dtype: np.dtype
    frame_shape: tuple[int, int]
    decoder: Callable[[list, np.ndarray], None]
    elem_size: int = 0
    """Bytes per pixel of the blobs' data (for the recorder's filter options)."""
    allocate: Callable[[int], np.ndarray] | None = None
    """``allocate(k)`` gives a ``(k, ny, nx)`` output array (a source reuses its buffers:
    fresh pages cost more than decoding); None allocates a new one."""

    @property
    def shape(self) -> tuple[int, int, int]:
        return (len(self.blobs), *self.frame_shape)

    def __len__(self) -> int:
        return len(self.blobs)

    def unpack(self, index=slice(None)) -> np.ndarray:
        """Decoded native ``(k, ny, nx)`` patterns ``index`` (a slice)."""
        blobs = self.blobs[index]
        if self.allocate is not None:
            out = self.allocate(len(blobs))
        else:
            out = np.empty((len(blobs), *self.frame_shape), self.dtype)
        if len(blobs):
            self.decoder(blobs, out)
        return out


class FrameChunk:
    """Diffraction patterns ``frames[k, det_y, det_x]`` at ``positions[k]`` (flat, -1 = skip).

    ``scan_pass`` optionally gives the pass of the scan each frame belongs to (0, 1, …)
    for repeated scans.  Zero-copy readers give ``packed`` (`PackedFrames`) instead of
    ``frames``; the engine reads those in place, and ``frames`` unpacks them on first use.
    Live sources set ``received_s``, the `time.perf_counter` at which the chunk's first
    pattern arrived, so `ricom.engine.pipeline.run` can report how long patterns wait to be seen.
    Compressed live streams give ``encoded`` (`EncodedFrames`) instead of ``frames``.
    """

    __slots__ = ("_frames", "encoded", "packed", "positions", "received_s", "scan_pass")

    def __init__(self, frames: np.ndarray | None = None, positions: np.ndarray | None = None,
                 scan_pass: np.ndarray | None = None, packed: PackedFrames | None = None,
                 received_s: float | None = None, encoded: EncodedFrames | None = None) -> None:
        if sum(x is not None for x in (frames, packed, encoded)) != 1:
            raise ValueError("give one of frames, packed or encoded")
        self._frames = frames
        self.packed = packed
        self.encoded = encoded
        self.positions = positions
        self.scan_pass = scan_pass
        self.received_s = received_s

    @property
    def frames(self) -> np.ndarray:
        if self._frames is None:
            self._frames = (self.packed or self.encoded).unpack()
        return self._frames

    @property
    def data(self) -> np.ndarray | PackedFrames | EncodedFrames:
        """What the engine should read: the packed or encoded frames if any, else the array."""
        if self._frames is not None:
            return self._frames
        return self.packed if self.packed is not None else self.encoded

    def __len__(self) -> int:
        return len(self.positions)


@dataclass
class EventChunk:
    """Single-electron events.

    ``positions[i]`` is the flat scan index of event i (-1 = outside the scan);
    ``x``/``y`` the detector column/row (float allowed: sub-pixel positions);
    ``t_ns`` the arrival time after the probe reached the position (NaN if unknown);
    ``tot`` time over threshold (optional).  ``positions_done`` optionally lists the
    positions whose dwell ended in this chunk (they count as processed patterns).
    """

    positions: np.ndarray
    x: np.ndarray
    y: np.ndarray
    t_ns: np.ndarray | None = None
    tot: np.ndarray | None = None
    positions_done: np.ndarray | None = None


@dataclass(frozen=True)
class ScanLayout:
    """Order of frames in an acquisition.

    Parameters
    ----------
    scan_shape : (int, int)
        (scan_y, scan_x).
    skip_frames : int
        Frames to drop at the start.
    flyback_frames : int
        Extra frames at the end of each scan line, dropped.
    frames_per_position : int
        Consecutive frames recorded at each position (summed by the engine).
    order : ScanPositions, optional
        The position of every scan point in acquisition order (any order, repeats allowed,
        -1 for none); a pass then has ``len(order)`` points.  Without it the scan is a raster.
        Flyback frames do not combine with it: give them as -1 points in the list.

    Frames past the last position start a new pass of the scan (repeated scans).

    Examples
    --------
    >>> ScanLayout((2, 3), flyback_frames=1).positions(0, 8).tolist()
    [0, 1, 2, -1, 3, 4, 5, -1]
    >>> ScanLayout((2, 2), order=ScanPositions(np.array([3, 0, 0, 1]))).positions(0, 5).tolist()
    [3, 0, 0, 1, 3]
    """

    scan_shape: tuple[int, int]
    skip_frames: int = 0
    flyback_frames: int = 0
    frames_per_position: int = 1
    order: ScanPositions | None = None

    def __post_init__(self) -> None:
        sy, sx = self.scan_shape
        if sy < 1 or sx < 1:
            raise SettingsError(f"scan shape must be positive, got {self.scan_shape}")
        if self.skip_frames < 0 or self.flyback_frames < 0 or self.frames_per_position < 1:
            raise SettingsError("skip and flyback frames must be ≥ 0 and frames per position ≥ 1")
        if self.order is not None:
            if self.flyback_frames:
                raise SettingsError("flyback frames do not combine with a list of scan positions; leave out ",
                                    Param("flyback_frames"), " and give those frames as -1 in ",
                                    Param("scan_positions"))
            self.order.flat(self.scan_shape)  # a position outside the scan: a one-line error now

    @property
    def frames_per_pass(self) -> int:
        if self.order is not None:
            return len(self.order) * self.frames_per_position
        sy, sx = self.scan_shape
        return sy * (sx + self.flyback_frames) * self.frames_per_position

    def visited(self) -> np.ndarray | None:
        """Boolean ``(scan_y * scan_x,)`` of the positions a pass visits; None for a raster (all)."""
        return self.order.visited(self.scan_shape) if self.order is not None else None

    def passes(self, start: int, count: int) -> np.ndarray:
        """Scan pass (0, 1, …) of frames ``start … start+count-1``."""
        i = np.arange(start, start + count, dtype=np.int64) - self.skip_frames
        return np.maximum(i, 0) // self.frames_per_pass

    def positions(self, start: int, count: int) -> np.ndarray:
        """Flat scan positions of frames ``start … start+count-1`` (file order)."""
        return self.positions_at(np.arange(start, start + count, dtype=np.int64))

    def positions_at(self, frames: np.ndarray) -> np.ndarray:
        """Flat scan positions of the frames with these indices (in acquisition order, from
        0), e.g. those that arrived from a stream that lost some.

        Examples
        --------
        >>> ScanLayout((2, 3), flyback_frames=1).positions_at(np.array([0, 2, 3, 5])).tolist()
        [0, 2, -1, 4]
        """
        sy, sx = self.scan_shape
        i = np.asarray(frames, dtype=np.int64) - self.skip_frames
        k = i // self.frames_per_position
        if self.order is not None:
            flat = self.order.flat(self.scan_shape)
            pos = flat[k % len(flat)]
            pos[i < 0] = -1
            return pos
        line_len = sx + self.flyback_frames
        k = k % (sy * line_len)
        line, col = np.divmod(k, line_len)
        pos = line * sx + col
        pos[(col >= sx) | (i < 0)] = -1
        return pos
