"""The source abstraction: what every input (file, stream, simulator) is.

A `Source` produces chunks (`ricom.core.chunks`: `FrameChunk` whole diffraction
patterns, `EventChunk` single-electron events, each with flat scan positions).

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
import os
import stat
import sys
import threading
from collections.abc import Iterator

import numpy as np

from ricom.core.chunks import EventChunk, FrameChunk
from ricom.core.errors import InputError, Message, Param


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

    @property
    def scan_positions(self):
        """The scan order in use (`ricom.core.scan_positions.ScanPositions`), None for a raster."""
        return getattr(getattr(self, "layout", None), "order", None)

    def describe_order(self) -> dict:
        """The scan order for ``describe``/saved attributes: the positions file and how many
        scan positions it never visits (empty when the scan is a raster)."""
        order, shape = self.scan_positions, self.scan_shape
        if order is None or shape is None:
            return {}
        return {**order.describe(), "n_unvisited_positions": order.n_unvisited(shape)}

    def hints(self) -> dict:
        """Calibration the input carries, used where the user gives none.

        Keys (all optional): ``step_A``, ``pixel_size_mrad``, ``energy_keV``,
        ``center_yx``, ``rotation_deg``, ``flip``.  Readers store them in ``_hints``.
        """
        return dict(getattr(self, "_hints", None) or {})

    def describe(self) -> dict:
        """What was detected about the input (for ``ricom info``)."""
        return {"kind": self.kind, "scan_shape": self.scan_shape,
                "detector_shape": self.detector_shape, "n_frames": self.n_frames, **self.describe_order()}

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release files or connections."""

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class BufferPool:
    """Output arrays ``(k, *frame_shape)`` reused once no chunk holds them any more.

    Decoding into fresh memory costs a page fault per 4 KiB, often more than the decoding;
    a source hands `take` to the code that decodes its chunks (possibly on several worker
    threads at once).
    """

    def __init__(self, frame_shape: tuple[int, ...], dtype, chunk: int = 1, size: int = 6) -> None:
        self.frame_shape, self.dtype, self.size = tuple(frame_shape), np.dtype(dtype), int(size)
        self.chunk = int(chunk)
        """Rows of a new buffer at least (the source's chunk size), so that one fits any chunk."""
        self._pool: list[np.ndarray] = []
        self._lock = threading.Lock()

    def take(self, n: int) -> np.ndarray:
        """A ``(n, *frame_shape)`` array no one else uses."""
        with self._lock:
            for buf in self._pool:
                if len(buf) >= n and sys.getrefcount(buf) <= 3:  # the pool, `buf` and the call: free
                    return buf[:n]
            buf = np.empty((max(n, self.chunk), *self.frame_shape), self.dtype)
            if len(self._pool) < self.size:
                self._pool.append(buf)
            return buf[:n]


def check_file(path: str, directory_ok: bool = False) -> None:
    """A one-line `InputError` unless ``path`` is a regular file (or, with ``directory_ok``, a directory).

    Run before opening: reading a FIFO blocks until a writer appears, a device never ends,
    and a directory where a file is expected is not "missing".
    """
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise InputError(f"input {path!r} does not exist") from None
    except OSError as exc:
        raise InputError(f"input {path!r} cannot be read ({exc.strerror or exc})") from None
    if stat.S_ISREG(mode) or (directory_ok and stat.S_ISDIR(mode)):
        return
    if stat.S_ISDIR(mode):
        raise InputError(f"input {path!r} is a directory, not a data file; give a file inside it (or a .zarr store)")
    kind = ("a FIFO (named pipe)" if stat.S_ISFIFO(mode) else "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode)
            else "a socket" if stat.S_ISSOCK(mode) else "not a regular file")
    raise InputError(f"input {path!r} is {kind}, not a regular file; copy the data into a file and give that")


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


__all__ = ["BufferPool", "Source", "check_file", "populate", "populate_mapped"]
