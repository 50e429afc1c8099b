"""The source abstraction: what every input (file, stream, simulator) yields.

A source produces chunks; a `FrameChunk` holds whole diffraction patterns, an
`EventChunk` single-electron events.  Each carries flat scan positions
(``iy * scan_x + ix``), with ``-1`` for data that belongs to no scan position
(flyback, skipped frames, events outside a line).  `ScanLayout` maps a running frame
index to scan positions for sources that deliver frames in acquisition order.

Sources whose data can be read from any point (files of whole frames, event lists
indexed by position) are *splittable*: `Source.read_range` reads units
``start … stop-1`` (frames in acquisition order, or positions/rows of an event list)
with their scan positions, so that separate processes can each read their own part of
one shared file (`ricom.dask.client`).
"""
from __future__ import annotations

import abc
import ctypes
import functools
import mmap
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from ricom.core.errors import InputError, Message, Param, SettingsError


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


class FrameChunk:
    """Diffraction patterns ``frames[k, det_y, det_x]`` at ``positions[k]`` (flat, -1 = skip).

    ``scan_pass`` optionally gives the pass of the scan each frame belongs to (0, 1, …)
    for repeated scans.  Zero-copy readers give ``packed`` (`PackedFrames`) instead of
    ``frames``; the engine reads those in place, and ``frames`` unpacks them on first use.
    Live sources set ``received_s``, the `time.perf_counter` at which the chunk's first
    pattern arrived, so `ricom.engine.pipeline.run` can report how long patterns wait to be seen.
    """

    __slots__ = ("_frames", "packed", "positions", "received_s", "scan_pass")

    def __init__(self, frames: np.ndarray | None = None, positions: np.ndarray | None = None,
                 scan_pass: np.ndarray | None = None, packed: PackedFrames | None = None,
                 received_s: float | None = None) -> None:
        if (frames is None) == (packed is None):
            raise ValueError("give frames or packed")
        self._frames = frames
        self.packed = packed
        self.positions = positions
        self.scan_pass = scan_pass
        self.received_s = received_s

    @property
    def frames(self) -> np.ndarray:
        if self._frames is None:
            self._frames = self.packed.unpack()
        return self._frames

    @property
    def data(self) -> np.ndarray | PackedFrames:
        """What the engine should read: the packed frames if any, else the array."""
        return self.packed if self.packed is not None else self._frames

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

    Frames past the last position start a new pass of the scan (repeated scans).

    Examples
    --------
    >>> ScanLayout((2, 3), flyback_frames=1).positions(0, 8).tolist()
    [0, 1, 2, -1, 3, 4, 5, -1]
    """

    scan_shape: tuple[int, int]
    skip_frames: int = 0
    flyback_frames: int = 0
    frames_per_position: int = 1

    def __post_init__(self) -> None:
        sy, sx = self.scan_shape
        if sy < 1 or sx < 1:
            raise SettingsError(f"scan shape must be positive, got {self.scan_shape}")
        if self.skip_frames < 0 or self.flyback_frames < 0 or self.frames_per_position < 1:
            raise SettingsError("skip and flyback frames must be ≥ 0 and frames per position ≥ 1")

    @property
    def frames_per_pass(self) -> int:
        sy, sx = self.scan_shape
        return sy * (sx + self.flyback_frames) * self.frames_per_position

    def passes(self, start: int, count: int) -> np.ndarray:
        """Scan pass (0, 1, …) of frames ``start … start+count-1``."""
        i = np.arange(start, start + count, dtype=np.int64) - self.skip_frames
        return np.maximum(i, 0) // self.frames_per_pass

    def positions(self, start: int, count: int) -> np.ndarray:
        """Flat scan positions of frames ``start … start+count-1`` (file order)."""
        sy, sx = self.scan_shape
        i = np.arange(start, start + count, dtype=np.int64) - self.skip_frames
        k = i // self.frames_per_position
        line_len = sx + self.flyback_frames
        k = k % (sy * line_len)
        line, col = np.divmod(k, line_len)
        pos = line * sx + col
        pos[(col >= sx) | (i < 0)] = -1
        return pos


class Source(abc.ABC):
    """Base of all inputs.  Subclasses set the attributes and implement `chunks`.

    Attributes
    ----------
    kind : str
        ``"frames"`` or ``"events"``.
    scan_shape : (int, int) or None
        Known scan shape, else None (the caller must give one).
    detector_shape : (int, int)
        Pattern shape (rows, columns).
    n_frames : int or None
        Frames (or positions, for events) the source will deliver, for progress.
    range_note : str
        Why the source cannot be read by range and what to do instead (shown by
        `read_range` when `splittable` is False); a `Message` to name parameters.
    """

    kind: str = "frames"
    scan_shape: tuple[int, int] | None = None
    detector_shape: tuple[int, int] = (0, 0)
    n_frames: int | None = None
    range_note: str = Message("it can only be read from its start; reconstruct it on one machine (without ",
                              Param("client"), ")")

    @abc.abstractmethod
    def chunks(self, chunk_size: int = 256) -> Iterator[FrameChunk | EventChunk]:
        """Yield chunks of at most ``chunk_size`` frames (or a comparable event count)."""

    @property
    def splittable(self) -> bool:
        """True if `read_range` can read any part of the input on its own."""
        return False

    @property
    def n_units(self) -> int | None:
        """Units `read_range` counts: frames in acquisition order (event lists: positions
        or rows); None if the source is not splittable."""
        return self.n_frames if self.splittable else None

    def read_range(self, start: int, stop: int, chunk_size: int = 256) -> Iterator[FrameChunk | EventChunk]:
        """Yield the chunks of units ``start … stop-1`` with their scan positions.

        ``read_range(0, n_units, k)`` yields exactly what ``chunks(k)`` does, and the
        chunks of consecutive ranges together are those of the whole input.  A frame
        chunk covers ``len(chunk.positions)`` units, an event chunk
        ``len(chunk.positions_done)``.

        Raises
        ------
        InputError
            If the source is not `splittable` (the message says why and what to do).
        """
        raise InputError(f"{self.format_name()} cannot be read by range; ", self.range_note)

    def format_name(self) -> str:
        """The input's name for messages (its path, ``"demo"``, …)."""
        return str(getattr(self, "name", None) or type(self).__name__)

    def _check_range(self, start: int, stop: int) -> tuple[int, int]:
        """``(start, stop)`` as ints inside ``0 … n_units``, or a one-line error."""
        n = self.n_units
        start, stop = int(start), int(stop)
        if n is None or not 0 <= start <= stop <= n:
            raise InputError(f"{self.format_name()}: range {start}…{stop} lies outside its {n} units")
        return start, stop

    def hints(self) -> dict:
        """Calibration the input carries, used where the user gives none.

        Keys (all optional): ``step_A``, ``pixel_size_mrad``, ``energy_keV``,
        ``center_yx``, ``rotation_deg``, ``flip``.  Readers store them in ``_hints``.
        """
        return dict(getattr(self, "_hints", None) or {})

    def describe(self) -> dict:
        """What was detected about the input (for ``ricom info``)."""
        return {"kind": self.kind, "scan_shape": self.scan_shape,
                "detector_shape": self.detector_shape, "n_frames": self.n_frames}

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release files or connections."""

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


MADV_POPULATE_READ = getattr(mmap, "MADV_POPULATE_READ", 22)  # Linux ≥ 5.14


@functools.cache
def _madvise():
    try:
        fn = ctypes.CDLL(None, use_errno=True).madvise
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    return fn


def populate(arr: np.ndarray) -> None:
    """Map the file pages under the contiguous, memory-mapped ``arr`` into the process now.

    One ``madvise(MADV_POPULATE_READ)`` in the reader thread instead of a page fault per
    4 KiB in the engine; called through ctypes, which lets other threads run meanwhile
    (Python's ``mmap.madvise`` holds the GIL).  A no-op where the system lacks it.
    """
    fn = _madvise()
    if fn is None or arr.size == 0:
        return
    addr = arr.__array_interface__["data"][0]
    first = addr - addr % mmap.PAGESIZE
    fn(first, addr + arr.nbytes - first, MADV_POPULATE_READ)  # failure only means page faults later


def populate_mapped(arr: np.ndarray) -> None:
    """`populate` for a view of a `numpy.memmap` (a no-op for other arrays)."""
    if getattr(arr, "_mmap", None) is not None and arr.flags.c_contiguous:
        populate(arr)
