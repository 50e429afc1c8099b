"""Recording every received pattern to HDF5 while reconstructing: `FrameRecorder`.

A `FrameRecorder` is a reducer (`ricom.engine.reducer.Reducer`): attached to a
reconstruction (`ricom.io.attach.attach_recorder`), it sees every frame chunk and writes its patterns
into the 4D dataset ``/data`` ``(scan_y, scan_x, det_y, det_x)`` of one HDF5 file, one
pattern per HDF5 chunk, compressed with Bitshuffle-LZ4 or Zstd (``hdf5plugin``).  The
result reads back with ``ricom reconstruct FILE.h5:/data`` or plain h5py.

Patterns that arrive still compressed (`ricom.core.chunks.EncodedFrames`, codec
``"bslz4"``: a DECTRIS detector's bitshuffle-LZ4 blobs, each exactly one HDF5 filter-32008
chunk) are written as they are with ``write_direct_chunk`` when the recording is
Bitshuffle-LZ4 of the same pixel type: nothing is compressed again and only the blobs are
queued (a tenth of the bytes of the patterns at a typical 4D-STEM dose).  ``/data`` then
holds the detector's values — masked pixels read 2^bit_depth − 1, not 0 as in the
patterns the reconstruction saw — and the source's ``pixel_mask`` (``recording_datasets``)
is stored beside it, which `ricom.sources.hdf5` applies when reading the recording back.

What it owns: the file (written under a temporary name, renamed when `close` finishes,
as every output of `ricom.io.outputs`), a byte-bounded queue of pattern copies and the
one writer thread that empties it (``ricom-recorder``, started with the first patterns,
ended by `close`).  `process` never waits for the disk: when the queue is full the
patterns are counted as not recorded (``n_not_recorded``, positions kept) — never
dropped silently — and the reconstruction still gets them all.
"""
from __future__ import annotations

import contextlib
import itertools
import json
import os
import queue
import sys
import threading
import time

import h5py
import numpy as np

from ricom.core.chunks import PackedFrames
from ricom.core.errors import SettingsError
from ricom.engine.reducer import ReducedChunk, Reducer
from ricom.io.outputs import atomic_path

try:
    import hdf5plugin
except ImportError:  # the optional extra ``hdf5``
    hdf5plugin = None

COMPRESSIONS = ("bitshuffle-lz4", "zstd", None)
_CAL_KEYS = ("step_A", "pixel_size_mrad", "energy_keV", "rotation_deg")
"""Calibration stored on ``/data`` as numbers (what `ricom.sources.hdf5` reads back as hints)."""


def _filter_options(compression: str | None) -> dict:
    """`h5py.Group.create_dataset` keywords for ``compression``."""
    if compression not in COMPRESSIONS:
        raise SettingsError(f"unknown recording compression {compression!r}; use 'bitshuffle-lz4', 'zstd' or None")
    if compression is None:
        return {}
    if hdf5plugin is None:
        raise SettingsError(f"recording with {compression} compression needs hdf5plugin "
                            f"(pip install 'ricom[hdf5]'); or record uncompressed (compression=None)")
    if compression == "zstd":
        return dict(hdf5plugin.Zstd(clevel=1))
    return dict(hdf5plugin.Bitshuffle(cname="lz4"))


def _attr_value(value):
    """An HDF5-friendly attribute value (None → "none", dicts as JSON)."""
    if value is None:
        return "none"
    if isinstance(value, dict):
        return json.dumps(value, default=str)
    if isinstance(value, (list, tuple)) and any(v is None or isinstance(v, (dict, list, tuple)) for v in value):
        return json.dumps(value, default=str)
    return value


def _runs(positions: np.ndarray, scan_x: int) -> list[tuple[int, int, int, int]]:
    """Split positions into runs ``(a, b, iy, ix)`` of consecutive positions within one scan row.

    Examples
    --------
    >>> _runs(np.array([0, 1, 2, 3, 7, 8]), 3)
    [(0, 3, 0, 0), (3, 4, 1, 0), (4, 6, 2, 1)]
    """
    iy, ix = np.divmod(positions, scan_x)
    cut = np.flatnonzero((np.diff(positions) != 1) | (np.diff(iy) != 0)) + 1
    bounds = [0, *cut.tolist(), len(positions)]
    return [(a, b, int(iy[a]), int(ix[a])) for a, b in itertools.pairwise(bounds)]


class _Blobs:
    """Compressed patterns queued for ``write_direct_chunk`` (references, not copies)."""

    __slots__ = ("blobs",)

    def __init__(self, blobs: list) -> None:
        self.blobs = blobs


def _copy(frames, take: np.ndarray):
    """Copies of the patterns ``take`` (packed patterns stay packed: the writer unpacks them)."""
    if isinstance(frames, PackedFrames):
        return PackedFrames(frames.rows[take], frames.offset, frames.frame_shape, frames.big_endian, frames.bits)
    return np.asarray(frames)[take]


class FrameRecorder(Reducer):
    """Write every pattern seen into ``/data`` of an HDF5 file, without ever blocking.

    Parameters
    ----------
    path : str
        The ``.h5`` / ``.hdf5`` file; it appears (atomically) when `close` has finished.
    scan_shape, detector_shape : (int, int)
        Shape of ``/data``: ``(*scan_shape, *detector_shape)``.
    dtype : dtype
        Stored pattern type (e.g. ``uint16`` for 12-bit Merlin counts).
    compression : {"bitshuffle-lz4", "zstd", None}
        HDF5 filter of every pattern (the first two need ``hdf5plugin``).
    attrs : dict, optional
        Stored as file attributes (acquisition header text, calibration …); numeric
        ``step_A``, ``pixel_size_mrad``, ``energy_keV``, ``rotation_deg`` and ``center_yx``
        also go on ``/data``, where `ricom.sources.hdf5` takes them as calibration hints.
    max_queue_bytes : int
        Pattern bytes waiting for the writer at most; beyond it patterns are not recorded.
    writer_nice : int
        Raise the writer thread's nice value by this much (Linux; that thread alone), so
        that where cores are short the reconstruction keeps its pace and latency and more
        patterns go unrecorded instead (10 here: run 1.3× instead of 1.6× the time without
        recording, half instead of a quarter of the patterns not recorded).
    datasets : dict, optional
        More datasets for the file's root, ``name → array`` or ``name → (array, attrs)``
        (a DECTRIS ``pixel_mask`` with its ``bit_depth``; see the module docstring).

    Attributes
    ----------
    n_recorded, n_not_recorded, n_skipped : int
        Patterns written; patterns at a scan position that were not (queue full or a
        write failed); patterns without a scan position (−1, never recorded).
    n_direct : int
        Patterns of ``n_recorded`` written as the detector compressed them.
    write_delay_s : float
        Seconds the writer waits before each chunk (0; tests use it to play a slow disk).

    Notes
    -----
    A later pass of the scan overwrites a position: the newest pattern is kept.  The
    caller must `close` the recorder (or use it as a context manager): until then the
    file exists only under a temporary name and the writer thread waits for patterns.

    Examples
    --------
    >>> import os, tempfile, h5py
    >>> folder = tempfile.TemporaryDirectory()
    >>> path = os.path.join(folder.name, "rec.h5")
    >>> frames = np.arange(2 * 4 * 4, dtype=np.uint16).reshape(2, 4, 4)
    >>> with FrameRecorder(path, (1, 3), (4, 4), np.uint16, compression=None) as rec:
    ...     rec.process(ReducedChunk(np.array([2, -1]), np.zeros((3, 2)), np.ones(2, bool), frames=frames))
    >>> rec.get_results()["n_recorded"], rec.get_results()["n_skipped"]
    (1, 1)
    >>> with h5py.File(path) as f:
    ...     bool((f["data"][0, 2] == frames[0]).all()), bool(f.attrs["complete"])
    (True, False)
    >>> folder.cleanup()
    """

    def __init__(self, path: str, scan_shape, detector_shape, dtype, *, compression: str | None = "bitshuffle-lz4",
                 attrs: dict | None = None, max_queue_bytes: int = 256 * 2**20, writer_nice: int = 0,
                 datasets: dict | None = None) -> None:
        if os.path.splitext(path)[1].lower() not in (".h5", ".hdf5"):
            raise SettingsError(f"recording {path!r}: give a .h5 or .hdf5 file name")
        self.path, self.compression = str(path), compression
        self.scan_shape = (int(scan_shape[0]), int(scan_shape[1]))
        self.detector_shape = (int(detector_shape[0]), int(detector_shape[1]))
        self.dtype, self.attrs = np.dtype(dtype), dict(attrs or {})
        self.max_queue_bytes = int(max_queue_bytes)
        self.n_recorded = self.n_not_recorded = self.n_skipped = 0
        self.n_direct = 0
        self.datasets = dict(datasets or {})
        self.write_delay_s = 0.0
        self.writer_nice = int(writer_nice)
        self._not_recorded: list[np.ndarray] = []
        self._recorded = np.zeros(self.scan_shape, bool)
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._queued_bytes, self._lock = 0, threading.Lock()
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self._closed = False
        options = _filter_options(compression)
        self._atomic = atomic_path(self.path)
        tmp = self._atomic.__enter__()
        try:
            self._file = h5py.File(tmp, "w")
            self._data = self._file.create_dataset("data", shape=(*self.scan_shape, *self.detector_shape),
                                                   dtype=self.dtype, chunks=(1, 1, *self.detector_shape),
                                                   **options)
        except BaseException:
            self._atomic.__exit__(*sys.exc_info())
            raise

    # ------------------------------------------------------------------ the reducer contract

    def process(self, chunk: ReducedChunk) -> None:
        """Queue copies of the chunk's patterns — or its compressed blobs, when they can be
        stored as they are — for the writer (or count them as not recorded)."""
        if self._closed:
            raise RuntimeError(f"recording {self.path!r} is closed")
        blobs = self._direct_blobs(getattr(chunk, "encoded", None))
        if chunk.frames is None and blobs is None:
            return
        positions = np.asarray(chunk.positions, np.int64).ravel()
        take = np.flatnonzero(positions >= 0)
        if blobs is not None:
            sizes = np.fromiter((len(blobs[i]) for i in take), np.int64, len(take))
        else:
            sizes = np.full(len(take), self._frame_bytes(chunk.frames), np.int64)
        with self._lock:
            self.n_skipped += len(positions) - len(take)
            free = -1 if self._error is not None else self.max_queue_bytes - self._queued_bytes
            room = int(np.searchsorted(np.cumsum(sizes), free, side="right"))
            take, missed = take[:room], take[room:]
            nbytes = int(sizes[:room].sum())
            self._queued_bytes += nbytes
            self._count_missed(positions[missed])
        if len(take):
            self._start()
            payload = _Blobs([blobs[i] for i in take]) if blobs is not None else _copy(chunk.frames, take)
            self._queue.put((positions[take], payload, nbytes))

    def _direct_blobs(self, encoded) -> list | None:
        """The blobs of ``encoded`` if they can become this file's HDF5 chunks unchanged:
        bitshuffle-LZ4 in the filter's framing, this recording's filter, pixel type and
        pattern shape, and every blob's header giving the pattern's byte count."""
        if encoded is None or encoded.codec != "bslz4" or self.compression != "bitshuffle-lz4":
            return None
        if np.dtype(encoded.dtype) != self.dtype or tuple(encoded.frame_shape) != self.detector_shape:
            return None
        if encoded.elem_size and int(encoded.elem_size) != self.dtype.itemsize:
            return None
        total = int(np.prod(self.detector_shape)) * self.dtype.itemsize
        blobs = list(encoded.blobs)
        if not all(len(b) >= 12 and int.from_bytes(bytes(b[:8]), "big") == total for b in blobs):
            return None
        return blobs

    def merge(self, other) -> None:
        raise NotImplementedError("a recording is one stream of patterns into one file; it cannot merge "
                                  "another: record each part to its own file")

    def get_results(self) -> dict:
        """Counts so far: ``n_recorded``, ``n_not_recorded``, ``n_skipped``, the positions not
        recorded (``not_recorded_positions``, one entry per pattern) and the ``recorded`` mask."""
        with self._lock:
            missed = np.concatenate(self._not_recorded) if self._not_recorded else np.zeros(0, np.int64)
            return {"n_recorded": self.n_recorded, "n_not_recorded": self.n_not_recorded,
                    "n_skipped": self.n_skipped, "not_recorded_positions": missed,
                    "recorded": self._recorded.copy()}

    # ------------------------------------------------------------------ writer thread

    def _frame_bytes(self, frames) -> int:
        if isinstance(frames, PackedFrames):
            return max(1, frames.rows[:1].nbytes)
        return max(1, int(np.prod(self.detector_shape)) * np.asarray(frames).dtype.itemsize)

    def _count_missed(self, positions: np.ndarray) -> None:
        """Count patterns as not recorded (call with the lock held)."""
        if len(positions):
            self.n_not_recorded += len(positions)
            self._not_recorded.append(np.array(positions, np.int64))

    def _start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._writer, name=f"ricom-recorder {os.path.basename(self.path)}",
                                            daemon=True)
            self._thread.start()

    def _writer(self) -> None:
        if self.writer_nice:  # Linux: the priority of this thread alone
            with contextlib.suppress(OSError, AttributeError):
                os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), self.writer_nice)
        while True:
            item = self._queue.get()
            if item is None:
                return
            positions, frames, nbytes = item
            ok = False
            try:
                if self._error is None:
                    if self.write_delay_s:
                        time.sleep(self.write_delay_s)
                    self._write(positions, frames)
                    ok = True
            except BaseException as exc:  # reported by close(); later patterns are counted as not recorded
                self._error = exc
            with self._lock:
                self._queued_bytes -= nbytes
                if ok:
                    self.n_recorded += len(positions)
                    self._recorded.flat[positions] = True
                else:
                    self._count_missed(positions)

    def _write(self, positions: np.ndarray, frames) -> None:
        if isinstance(frames, _Blobs):
            iy, ix = np.divmod(positions, self.scan_shape[1])
            write = self._data.id.write_direct_chunk
            for y, x, blob in zip(iy.tolist(), ix.tolist(), frames.blobs, strict=True):
                write((y, x, 0, 0), blob)
            self.n_direct += len(positions)
            return
        if isinstance(frames, PackedFrames):
            frames = frames.unpack()
        frames = np.asarray(frames).reshape(-1, *self.detector_shape)
        if frames.dtype != self.dtype:
            frames = frames.astype(self.dtype)
        for a, b, iy, ix in _runs(positions, self.scan_shape[1]):
            self._data[iy, ix:ix + b - a] = frames[a:b]

    # ------------------------------------------------------------------ closing

    def close(self) -> dict:
        """Write what is queued, the attributes and the counts; rename the file to its name.

        Returns the counts (`get_results`).  Raises the writer's error (``OSError`` …)
        if a write failed; the file is then removed.  Closing twice does nothing.
        """
        if self._closed:
            return self.get_results()
        self._closed = True
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join()
        try:
            if self._error is None:
                self._finish_file()
            self._file.close()
        except BaseException:
            self._atomic.__exit__(*sys.exc_info())
            raise
        if self._error is not None:
            with contextlib.suppress(BaseException):
                self._atomic.__exit__(type(self._error), self._error, self._error.__traceback__)
            raise self._error
        self._atomic.__exit__(None, None, None)
        return self.get_results()

    def _finish_file(self) -> None:
        res = self.get_results()
        f, data = self._file, self._data
        f.create_dataset("recorded", data=res["recorded"])
        f.create_dataset("not_recorded_positions", data=res["not_recorded_positions"])
        for name, value in self.datasets.items():
            array, attrs = value if isinstance(value, tuple) else (value, {})
            ds = f.create_dataset(name, data=np.asarray(array))
            for key, v in attrs.items():
                ds.attrs[key] = _attr_value(v)
        for key, value in self.attrs.items():
            f.attrs[key] = _attr_value(value)
            if (key in _CAL_KEYS and isinstance(value, (int, float, np.integer, np.floating))
                    and not isinstance(value, bool)) or \
                    (key == "center_yx" and isinstance(value, (list, tuple)) and len(value) == 2):
                data.attrs[key] = value
        complete = bool(res["recorded"].all() and not self.n_not_recorded)
        f.attrs.update({"n_recorded": self.n_recorded, "n_not_recorded": self.n_not_recorded,
                        "n_skipped": self.n_skipped, "n_stored_as_received": self.n_direct, "complete": complete,
                        "scan_shape": list(self.scan_shape), "detector_shape": list(self.detector_shape),
                        "compression": str(self.compression), "software": "ricom"})
        data.attrs["scan_shape"] = list(self.scan_shape)

    def __enter__(self) -> FrameRecorder:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
