"""Event lists in HDF5: ricom's own layout and stempy's ``electron_events``.

ricom layout (version 1), events grouped by scan position in scan order::

    /events                  group; attributes:
        format = "ricom-events", version = 1,
        scan_shape = [SY, SX], detector_shape = [DY, DX],
        dwell_ns (optional), step_A, pixel_size_mrad, energy_keV, center_yx (optional)
    /events/offsets  int64 (SY·SX + 1,)  events of flat position p = iy·SX + ix are
                                         rows offsets[p] … offsets[p+1]−1 of:
    /events/x        float32 (n,)  detector column (sub-pixel allowed; pixel centres at integers)
    /events/y        float32 (n,)  detector row
    /events/t_ns     float32 (n,)  optional: arrival time after the probe reached the position
    /events/tot      uint16 (n,)   optional: time over threshold

stempy layout: ``/electron_events/frames`` (variable-length uint32 arrays of flat
detector indices ``y·Nx + x``, one row per scan position, or rows × sub-frames),
``/electron_events/scan_positions`` (flat scan index per row; attributes ``Nx``, ``Ny``
= scan width, height) and the detector size in the ``frames`` attributes ``Nx``/``Ny``
(or ``frame_dimensions``; default 576×576, the 4D Camera).
"""
from __future__ import annotations

import os
import warnings

import numpy as np

from ricom.core.chunks import EventChunk
from ricom.core.errors import InputError, SettingsError
from ricom.core.params import check_scan_memory, shape2
from ricom.core.scan_positions import scan_positions_from
from ricom.sources.base import Source

FORMAT = "ricom-events"
VERSION = 1
CAL_KEYS = ("step_A", "pixel_size_mrad", "energy_keV")
"""Calibration stored as numeric attributes of ``/events`` (read back as hints)."""


def is_event_file(spec: str) -> bool:
    """True if ``spec`` names an HDF5 file in ricom's event layout or stempy's ``electron_events``."""
    path, _, dataset = spec.partition(":")
    if dataset.strip("/") not in ("", "events", "electron_events") or not os.path.isfile(path):
        return False
    try:
        import h5py
        with h5py.File(path, "r") as f:
            g = f.get("events")
            if isinstance(g, h5py.Group) and g.attrs.get("format") in (FORMAT, FORMAT.encode()):
                return True
            g = f.get("electron_events")
            return isinstance(g, h5py.Group) and "frames" in g
    except Exception:  # not HDF5, unreadable: not ours, another reader will say why
        return False


class EventsH5Source(Source):
    """Events from an HDF5 file (ricom or stempy layout, see the module docstring).

    Parameters
    ----------
    path : str
        The file.
    scan_shape : (int, int), optional
        Overrides the stored scan shape (same number of positions).
    acceptance_ns : float, optional
        Keep only events with ``t_ns`` below this (ricom layout with times only).
    scan_positions : ScanPositions, str or array, optional
        The scan order (`ricom.core.scan_positions`): the stored position index k (ricom
        layout: the k-th group of events; stempy: the row's scan position) is scan point
        k of the list, placed where the list says.  Default: as stored.
    events_per_chunk : int
        About this many events per chunk.
    """

    kind = "events"

    def __init__(self, path: str, scan_shape=None, acceptance_ns=None, events_per_chunk: int = 1 << 20,
                 scan_positions=None, **_ignored) -> None:
        import h5py
        self.name = path
        try:
            self._file = h5py.File(path, "r")
        except OSError as exc:
            raise InputError(f"{path}: not a readable HDF5 file ({exc})") from None
        self.acceptance_ns = acceptance_ns
        self.events_per_chunk = int(events_per_chunk)
        self._hints: dict = {}
        self._kept = self._done = 0
        try:
            self._open_layout(path)
        except (KeyError, ValueError, TypeError, IndexError, OSError) as exc:  # a damaged attribute or dataset
            self._file.close()
            raise InputError(f"{path}: damaged event file ({exc}); write it again") from None
        except BaseException:
            self._file.close()
            raise
        if scan_shape is not None:
            if int(scan_shape[0]) * int(scan_shape[1]) != self.scan_shape[0] * self.scan_shape[1]:
                raise SettingsError(f"{path}: scan shape {tuple(scan_shape)} does not hold the file's "
                                    f"{self.scan_shape[0]}×{self.scan_shape[1]} positions")
            self.scan_shape = (int(scan_shape[0]), int(scan_shape[1]))
        self._order = scan_positions_from(scan_positions)
        self._flat = self._order.flat(self.scan_shape) if self._order is not None else None
        if acceptance_ns is not None and not (self.layout == "ricom" and "t_ns" in self._g):
            raise SettingsError(f"{path}: acceptance_ns needs arrival times, and this file stores none")

    def _open_layout(self, path: str) -> None:
        """Read the layout's attributes; wrong types or sizes are one-line `InputError`s."""
        try:
            if "events" in self._file and self._file["events"].attrs.get("format") in (FORMAT, FORMAT.encode()):
                self._open_ricom(self._file["events"])
            elif "electron_events" in self._file:
                self._open_stempy(self._file["electron_events"])
            else:
                raise InputError(f"{path}: no /events (ricom) or /electron_events (stempy) group")
            shape2("scan shape", self.scan_shape)
            shape2("detector shape", self.detector_shape)
        except (TypeError, ValueError, KeyError, IndexError) as exc:  # (SettingsError is a ValueError)
            raise InputError(f"{path}: malformed event list: {exc}") from None
        sy, sx = self.scan_shape
        check_scan_memory(sy * sx, f"{path}: scan shape {sy}×{sx} (file attributes)", from_file=True)
        dy, dx = self.detector_shape
        if dy * dx > 2**26:  # 8192×8192: the engine builds look-up tables of this size
            raise InputError(f"{path}: detector shape {dy}×{dx} (file attributes) is implausibly large")

    def _open_ricom(self, g) -> None:
        self.layout, self._g = "ricom", g
        self.scan_shape = tuple(int(v) for v in g.attrs["scan_shape"])
        self.detector_shape = tuple(int(v) for v in g.attrs["detector_shape"])
        self._offsets = np.asarray(g["offsets"][:], np.int64)
        n_pos = self.scan_shape[0] * self.scan_shape[1]
        if self._offsets.shape[0] != n_pos + 1 or np.any(np.diff(self._offsets) < 0):
            raise InputError(f"{self.name}: /events/offsets must hold {n_pos + 1} non-decreasing entries")
        for key in ("x", "y", *(k for k in ("t_ns", "tot") if k in g)):  # a missing x or y: KeyError, said below
            if g[key].ndim != 1 or self._offsets[-1] > g[key].shape[0]:
                raise InputError(f"{self.name}: /events/offsets point past the {g[key].shape} stored /events/{key} "
                                 f"(truncated file?)")
        self.n_frames = int(self._offsets[-1])
        self.dwell_ns = float(g.attrs["dwell_ns"]) if "dwell_ns" in g.attrs else None
        self._hints = {k: float(g.attrs[k]) for k in CAL_KEYS if k in g.attrs}
        if "center_yx" in g.attrs:
            self._hints["center_yx"] = tuple(float(v) for v in g.attrs["center_yx"])

    def _open_stempy(self, g) -> None:
        self.layout, self._g = "stempy", g
        frames = g["frames"]
        sp = g["scan_positions"] if "scan_positions" in g else None
        n = frames.shape[0]
        self._scan_positions = np.asarray(sp[:], np.int64) if sp is not None else np.arange(n)
        if sp is not None and "Nx" in sp.attrs and "Ny" in sp.attrs:
            self.scan_shape = (int(sp.attrs["Ny"]), int(sp.attrs["Nx"]))
        else:
            self.scan_shape = (1, n)
        if "Nx" in frames.attrs and "Ny" in frames.attrs:
            self.detector_shape = (int(frames.attrs["Ny"]), int(frames.attrs["Nx"]))
        elif "frame_dimensions" in frames.attrs:
            w, h = (int(v) for v in frames.attrs["frame_dimensions"][:2])
            self.detector_shape = (h, w)
        else:
            self.detector_shape = (576, 576)
        n_pos, sp = self.scan_shape[0] * self.scan_shape[1], self._scan_positions
        inside = np.unique(sp[(sp >= 0) & (sp < n_pos)]).shape[0]
        if 0 < n_pos and inside < n_pos:
            warnings.warn(f"{self.name}: events of {inside} of the {self.scan_shape[0]}×{self.scan_shape[1]} scan "
                          f"positions are stored; the others stay empty (a truncated file?)", stacklevel=4)
        self.n_frames = None
        self.dwell_ns = None

    @property
    def scan_positions(self):
        """The scan order given (None: events are placed as stored)."""
        return self._order

    def _place(self, pos: np.ndarray) -> np.ndarray:
        """Stored position indices → scan positions by the scan order (-1 stays -1)."""
        if self._flat is None:
            return pos
        pos = np.asarray(pos, np.int64)
        return np.where(pos >= 0, self._flat[pos % len(self._flat)], -1)

    @property
    def splittable(self) -> bool:
        """Events are stored by scan position (ricom) or by row (stempy): any range can be read."""
        return True

    @property
    def n_units(self) -> int:
        """Scan positions (ricom layout) or rows of ``frames`` (stempy layout)."""
        if self.layout == "ricom":
            return int(self._offsets.shape[0] - 1)
        return int(self._g["frames"].shape[0])

    def read_range(self, start: int, stop: int, chunk_size: int = 256):
        """Events of positions (ricom) or rows (stempy) ``start … stop-1``, in chunks."""
        start, stop = self._check_range(start, stop)
        if self.layout == "ricom":
            return self._ricom_chunks(chunk_size, start, stop)
        return self._stempy_chunks(chunk_size, start, stop)

    def chunks(self, chunk_size: int = 256):
        yield from self.read_range(0, self.n_units, chunk_size)
        if self.acceptance_ns is not None:
            d = self.describe()
            warnings.warn(f"{self.name}: acceptance {self.acceptance_ns:g} ns kept {self._kept} events: mean dose "
                          f"{d['mean_dose_e_per_position']:.4g} e/position", stacklevel=2)

    def _ricom_chunks(self, chunk_size: int, p0: int, n_pos: int):
        g, off = self._g, self._offsets
        while p0 < n_pos:
            p1 = int(np.searchsorted(off, off[p0] + self.events_per_chunk, side="right")) - 1
            p1 = min(n_pos, max(p1, p0 + max(1, chunk_size)))
            a, b = int(off[p0]), int(off[p1])
            pos = np.repeat(np.arange(p0, p1, dtype=np.int64), np.diff(off[p0:p1 + 1]))
            x, y = g["x"][a:b], g["y"][a:b]
            t = g["t_ns"][a:b] if "t_ns" in g else None
            tot = g["tot"][a:b] if "tot" in g else None
            if self.acceptance_ns is not None:
                keep = t < self.acceptance_ns
                pos, x, y, t = pos[keep], x[keep], y[keep], t[keep]
                tot = tot[keep] if tot is not None else None
            self._kept += pos.shape[0]
            self._done += p1 - p0
            done = self._place(np.arange(p0, p1, dtype=np.int64))
            yield EventChunk(self._place(pos), x, y, t, tot, done[done >= 0])
            p0 = p1

    def _stempy_chunks(self, chunk_size: int, start: int, stop: int):
        frames, sp = self._g["frames"], self._scan_positions
        dx = self.detector_shape[1]
        rows = max(1, chunk_size)
        for r0 in range(start, stop, rows):
            block = frames[r0:min(stop, r0 + rows)]
            lists = [np.asarray(v, np.int64) for v in block.ravel()]
            lengths = np.array([v.shape[0] for v in lists], np.int64)
            per_row = int(np.prod(block.shape[1:])) if block.ndim > 1 else 1
            row_pos = np.repeat(sp[r0:r0 + block.shape[0]], per_row)
            idx = np.concatenate(lists) if lists else np.zeros(0, np.int64)
            pos = np.repeat(row_pos, lengths)
            y, x = np.divmod(idx, dx)
            self._kept += pos.shape[0]
            self._done += block.shape[0]
            done = self._place(np.asarray(sp[r0:r0 + block.shape[0]], np.int64))
            yield EventChunk(self._place(pos), x.astype(np.uint16), y.astype(np.uint16), None, None, done[done >= 0])

    def describe(self) -> dict:
        return {**super().describe(), "name": self.name, "layout": self.layout, "dwell_ns": self.dwell_ns,
                "acceptance_ns": self.acceptance_ns, "events_kept": self._kept, "positions_done": self._done,
                "mean_dose_e_per_position": self._kept / self._done if self._done else 0.0}

    def close(self) -> None:
        if self._file:
            self._file.close()


class EventsH5Writer:
    """Write ricom's HDF5 event layout, appending events in non-decreasing position order.

    Examples
    --------
    >>> import numpy as np, tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "ev.h5")
    >>> with EventsH5Writer(path, (2, 2), (8, 8)) as w:
    ...     w.append(np.array([0, 0, 3]), np.array([1.5, 2, 3]), np.array([4, 4, 5]))
    >>> EventsH5Source(path).n_frames
    3
    """

    def __init__(self, path: str, scan_shape, detector_shape, dwell_ns=None, with_times=False,
                 with_tot=False, attrs: dict | None = None) -> None:
        import h5py
        self.path = path
        self.scan_shape = tuple(int(v) for v in scan_shape)
        self._f = h5py.File(path, "w")
        g = self._g = self._f.create_group("events")
        g.attrs.update({"format": FORMAT, "version": VERSION, "scan_shape": list(self.scan_shape),
                        "detector_shape": [int(v) for v in detector_shape]})
        if dwell_ns is not None:
            g.attrs["dwell_ns"] = float(dwell_ns)
        for k, v in (attrs or {}).items():
            if v is not None:
                g.attrs[k] = v
        names = [("x", "f4"), ("y", "f4")] + [("t_ns", "f4")] * bool(with_times) + [("tot", "u2")] * bool(with_tot)
        for name, dtype in names:
            g.create_dataset(name, (0,), dtype=dtype, maxshape=(None,), chunks=(1 << 16,))
        self._counts = np.zeros(self.scan_shape[0] * self.scan_shape[1], np.int64)
        self._last = -1

    def append(self, positions, x, y, t_ns=None, tot=None) -> None:
        """Add events; ``positions`` must not go back before the last position written."""
        positions = np.asarray(positions, np.int64)
        if positions.size == 0:
            return
        order = np.argsort(positions, kind="stable")
        positions = positions[order]
        if positions[0] < self._last or positions[-1] >= self._counts.shape[0] or positions[0] < 0:
            raise InputError("events must be appended in scan order, at positions inside the scan")
        self._last = int(positions[-1])
        self._counts += np.bincount(positions, minlength=self._counts.shape[0])
        columns = (("x", x), ("y", y), ("t_ns", t_ns), ("tot", tot))
        if any(name in self._g and values is None for name, values in columns):
            raise InputError("this event file was opened with times/ToT: give t_ns/tot with every append")
        for name, values in columns:
            if name in self._g:
                ds = self._g[name]
                n = ds.shape[0]
                ds.resize((n + positions.shape[0],))
                ds[n:] = np.asarray(values)[order]

    def close(self) -> None:
        if self._f:
            self._g.create_dataset("offsets", data=np.concatenate([[0], np.cumsum(self._counts)]))
            self._f.close()
            self._f = None

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def open(spec: str, **options) -> EventsH5Source:
    """Open an HDF5 event file (``file.h5`` or ``file.h5:/events``); options as `EventsH5Source`."""
    path = spec.partition(":")[0]
    if not os.path.exists(path):
        raise InputError(f"input {spec!r} does not exist")
    return EventsH5Source(path, **options)
