"""Recording every received electron to ricom's event-list HDF5 while reconstructing: `EventRecorder`.

An `EventRecorder` is a reducer (`ricom.engine.reducer.Reducer`) that takes the event
chunks of a live Timepix3 stream as they arrive (`process_event_chunk`) and writes them
in ricom's event layout (``/events``: ``offsets``, ``x``, ``y`` and, when the source
sends them, ``t_ns`` and ``tot``; see `ricom.sources.events_h5`), which ``ricom
reconstruct FILE.h5`` reads back — with ``--acceptance-ns`` too, when arrival times were
recorded.

What it owns: a staging folder of flat binary files (events in arrival order, appended by
one writer thread, ``ricom-event-recorder``), a byte-bounded queue in front of it and the
final file.  `process_event_chunk` never waits for the disk: when the queue is full the
chunk's events are counted as not recorded (``n_not_recorded``) and the reconstruction
still gets them.  `close` groups the events by scan position (in a pass per block of
positions whose events fit ``memory_bytes``; a single copy when they arrived in scan
order) into the file, written under a temporary name and renamed when complete, and
removes the staging folder.
"""
from __future__ import annotations

import contextlib
import os
import queue
import shutil
import sys
import tempfile
import threading

import h5py
import numba
import numpy as np

from ricom.core.errors import SettingsError
from ricom.engine.reducer import ReducedChunk, Reducer
from ricom.io.outputs import atomic_path
from ricom.sources.events_h5 import CAL_KEYS, FORMAT, VERSION

_FIELDS = ("position", "x", "y", "t_ns", "tot")


@numba.njit(nogil=True, cache=True)
def _destinations(pos, p0, p1, cursor, dest):
    """``dest[i]``: where event i goes among the events of positions ``p0 … p1-1`` (−1:
    not one of them), in arrival order per position; ``cursor`` holds each position's next
    free slot and advances."""
    n = 0
    for i in range(pos.shape[0]):
        p = pos[i]
        if p0 <= p < p1:
            dest[i] = cursor[p - p0]
            cursor[p - p0] += 1
            n += 1
        else:
            dest[i] = -1
    return n


class EventRecorder(Reducer):
    """Write every event chunk seen into ``/events`` of an HDF5 file, without ever blocking.

    Parameters
    ----------
    path : str
        The ``.h5`` / ``.hdf5`` file; it appears (atomically) when `close` has finished.
    scan_shape, detector_shape : (int, int)
        Stored as the file's ``scan_shape`` and ``detector_shape``.
    attrs : dict, optional
        Stored on ``/events``; ``dwell_ns``, ``step_A``, ``pixel_size_mrad``,
        ``energy_keV`` and ``center_yx`` are what the reader takes as hints.
    max_queue_bytes : int
        Event bytes waiting for the writer at most; beyond it events are not recorded.
    memory_bytes : int
        Memory `close` may use to group the events by position (more passes if less).

    Examples
    --------
    >>> import os, tempfile
    >>> from ricom.core.chunks import EventChunk
    >>> folder = tempfile.TemporaryDirectory()
    >>> path = os.path.join(folder.name, "events.h5")
    >>> rec = EventRecorder(path, (1, 3), (8, 8))
    >>> rec.process_event_chunk(EventChunk(np.array([2, 0, -1]), np.array([1., 2., 3.], np.float32),
    ...                                    np.array([4., 5., 6.], np.float32)))
    >>> rec.close()["n_recorded"]
    2
    >>> with h5py.File(path) as f:
    ...     f["events/offsets"][:].tolist(), f["events/x"][:].tolist()
    ([0, 1, 1, 2], [2.0, 1.0])
    >>> folder.cleanup()
    """

    def __init__(self, path: str, scan_shape, detector_shape, *, attrs: dict | None = None,
                 max_queue_bytes: int = 256 * 2**20, memory_bytes: int = 512 * 2**20) -> None:
        if os.path.splitext(path)[1].lower() not in (".h5", ".hdf5"):
            raise SettingsError(f"recording {path!r}: give a .h5 or .hdf5 file name")
        self.path = str(path)
        self.scan_shape = (int(scan_shape[0]), int(scan_shape[1]))
        self.detector_shape = (int(detector_shape[0]), int(detector_shape[1]))
        self.attrs = dict(attrs or {})
        self.max_queue_bytes, self.memory_bytes = int(max_queue_bytes), int(memory_bytes)
        self.n_recorded = self.n_not_recorded = self.n_skipped = 0
        self._counts = np.zeros(self.scan_shape[0] * self.scan_shape[1], np.int64)
        self._in_order, self._last = True, -1
        self._dtypes: dict[str, np.dtype] = {}
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._queued_bytes, self._lock = 0, threading.Lock()
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self._closed = False
        folder, name = os.path.split(os.path.abspath(self.path))
        self._staging = tempfile.mkdtemp(prefix=f".{name}.", suffix=".staging", dir=folder)
        self._files: dict = {}

    # ------------------------------------------------------------------ the reducer contract

    def process(self, chunk: ReducedChunk) -> None:
        """Patterns are not events: nothing to record."""

    def process_event_chunk(self, chunk) -> None:
        """Queue copies of the chunk's events at scan positions (or count them as not recorded)."""
        if self._closed:
            raise RuntimeError(f"recording {self.path!r} is closed")
        positions = np.asarray(chunk.positions).ravel()
        keep = positions >= 0
        arrays = {"position": positions[keep].astype(np.int32)}
        for name in _FIELDS[1:]:
            value = getattr(chunk, name)
            if value is not None:
                arrays[name] = np.asarray(value).ravel()[keep]
        if not self._dtypes:
            self._dtypes = {k: _stored_dtype(v.dtype) for k, v in arrays.items()}
        arrays = {k: _as(arrays.get(k), dt, len(arrays["position"])) for k, dt in self._dtypes.items()}
        nbytes = sum(a.nbytes for a in arrays.values())
        with self._lock:
            self.n_skipped += int((~keep).sum())
            if self._error is not None or self._queued_bytes + nbytes > self.max_queue_bytes:
                self.n_not_recorded += len(arrays["position"])
                return
            self._queued_bytes += nbytes
        self._start()
        self._queue.put(arrays)

    def merge(self, other) -> None:
        raise NotImplementedError("a recording is one stream of events into one file; it cannot merge another")

    def get_results(self) -> dict:
        """Counts so far: ``n_recorded``, ``n_not_recorded`` (events), ``n_skipped``
        (events outside the scan, never recorded) and ``unit`` ("events")."""
        with self._lock:
            return {"n_recorded": self.n_recorded, "n_not_recorded": self.n_not_recorded,
                    "n_skipped": self.n_skipped, "unit": "events"}

    # ------------------------------------------------------------------ writer thread

    def _start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._writer, daemon=True,
                                            name=f"ricom-event-recorder {os.path.basename(self.path)}")
            self._thread.start()

    def _writer(self) -> None:
        while True:
            arrays = self._queue.get()
            if arrays is None:
                return
            nbytes, n, ok = sum(a.nbytes for a in arrays.values()), len(arrays["position"]), False
            try:
                if self._error is None:
                    self._append(arrays)
                    ok = True
            except BaseException as exc:  # reported by close(); later events count as not recorded
                self._error = exc
            with self._lock:
                self._queued_bytes -= nbytes
                if ok:
                    self.n_recorded += n
                else:
                    self.n_not_recorded += n

    def _append(self, arrays: dict) -> None:
        pos = arrays["position"]
        if pos.size:
            if pos[0] < self._last or np.any(pos[1:] < pos[:-1]):
                self._in_order = False
            self._last = int(pos[-1])
            self._counts += np.bincount(pos, minlength=self._counts.shape[0])
        for name, a in arrays.items():
            if name not in self._files:
                self._files[name] = open(os.path.join(self._staging, name), "wb")  # closed in close()
            a.tofile(self._files[name])

    # ------------------------------------------------------------------ closing

    def close(self) -> dict:
        """Write the queued events, group them by position into the file and rename it.

        Returns the counts (`get_results`).  Raises the writer's error (``OSError`` …) if
        a write failed; the file is then not written.  Closing twice does nothing.
        """
        if self._closed:
            return self.get_results()
        self._closed = True
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join()
        try:
            for f in self._files.values():
                f.close()
            if self._error is not None:
                raise self._error
            with atomic_path(self.path) as tmp:
                self._write_file(tmp)
        finally:
            shutil.rmtree(self._staging, ignore_errors=True)
        return self.get_results()

    def _staged(self, name: str) -> np.ndarray:
        path = os.path.join(self._staging, name)
        if name not in self._files or os.path.getsize(path) == 0:
            return np.zeros(0, self._dtypes.get(name, np.int32))
        return np.memmap(path, self._dtypes[name], "r")

    def _write_file(self, tmp: str) -> None:
        offsets = np.concatenate([[0], np.cumsum(self._counts)]).astype(np.int64)
        with h5py.File(tmp, "w") as f:
            g = f.create_group("events")
            g.create_dataset("offsets", data=offsets)
            names = [k for k in self._dtypes if k != "position"] or ["x", "y"]
            out = {k: g.create_dataset(k, shape=(int(offsets[-1]),), dtype=self._dtypes.get(k, np.float32),
                                       chunks=(min(1 << 20, int(offsets[-1])),) if offsets[-1] else None)
                   for k in names}
            staged = {k: self._staged(k) for k in ("position", *names)}
            if self._in_order:
                _copy_in_order(staged, out, int(offsets[-1]))
            else:
                self._group_by_position(staged, out, offsets)
            self._attributes(f, g)

    def _group_by_position(self, staged: dict, out: dict, offsets: np.ndarray) -> None:
        """Events in arrival order → grouped by position, one pass per block of positions."""
        n_pos = offsets.shape[0] - 1
        per_event = sum(np.dtype(a.dtype).itemsize for a in staged.values()) + 8
        budget = max(1, self.memory_bytes // per_event)
        pos = staged["position"]
        p0 = 0
        while p0 < n_pos:
            p1 = int(np.searchsorted(offsets, offsets[p0] + budget, side="right")) - 1
            p1 = min(n_pos, max(p1, p0 + 1))
            base, n = int(offsets[p0]), int(offsets[p1] - offsets[p0])
            cursor = offsets[p0:p1] - base
            blocks = {k: np.empty(n, a.dtype) for k, a in staged.items() if k != "position"}
            for a in range(0, pos.shape[0], 1 << 22):
                block = np.asarray(pos[a:a + (1 << 22)])
                dest = np.empty(block.shape[0], np.int64)
                _destinations(block, p0, p1, cursor, dest)
                take = dest >= 0
                for k, buf in blocks.items():
                    buf[dest[take]] = staged[k][a:a + block.shape[0]][take]
            for k, buf in blocks.items():
                out[k][base:base + n] = buf
            p0 = p1

    def _attributes(self, f, g) -> None:
        g.attrs.update({"format": FORMAT, "version": VERSION, "scan_shape": list(self.scan_shape),
                        "detector_shape": list(self.detector_shape)})
        for key in (*CAL_KEYS, "dwell_ns"):
            value = self.attrs.get(key)
            if isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool) \
                    and np.isfinite(value):
                g.attrs[key] = float(value)
        centre = self.attrs.get("center_yx")
        if isinstance(centre, (list, tuple)) and len(centre) == 2:
            g.attrs["center_yx"] = [float(v) for v in centre]
        for key, value in self.attrs.items():
            if key not in g.attrs and value is not None:
                with contextlib.suppress(TypeError, ValueError):
                    f.attrs[key] = value if not isinstance(value, dict) else str(value)
        f.attrs.update({"n_recorded": self.n_recorded, "n_not_recorded": self.n_not_recorded,
                        "complete": not self.n_not_recorded, "software": "ricom"})

    def __enter__(self) -> EventRecorder:
        return self

    def __exit__(self, *exc) -> None:
        try:
            self.close()
        except BaseException:
            if exc[0] is None:
                raise
            print(f"ricom: the recording {self.path} could not be finished", file=sys.stderr)


def _stored_dtype(dtype: np.dtype) -> np.dtype:
    """Whole-pixel coordinates stay integers; anything else is float32 (ToT uint16)."""
    dtype = np.dtype(dtype)
    if dtype.kind in "ui" and dtype.itemsize <= 2:
        return np.dtype(np.uint16) if dtype.kind == "u" else np.dtype(np.int16)
    return np.dtype(np.int32) if dtype.kind in "ui" else np.dtype(np.float32)


def _as(a, dtype: np.dtype, n: int) -> np.ndarray:
    """``a`` as ``dtype`` (missing: NaN or 0), contiguous."""
    if a is None:
        return np.full(n, np.nan if dtype.kind == "f" else 0, dtype)
    return np.ascontiguousarray(a, dtype)


def _copy_in_order(staged: dict, out: dict, n: int) -> None:
    """Events that arrived in scan order are already grouped: copy them block by block."""
    for a in range(0, n, 1 << 22):
        for k, ds in out.items():
            ds[a:a + (1 << 22)] = staged[k][a:a + (1 << 22)]


__all__ = ["EventRecorder"]
