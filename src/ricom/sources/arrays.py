"""In-memory and `.npy` arrays as sources (memory-mapped, never loaded whole).

Accepts 4D ``(scan_y, scan_x, det_y, det_x)`` arrays, or 3D ``(frames, det_y, det_x)``
stacks with a scan shape given.
"""
from __future__ import annotations

import json
import os
from collections.abc import Iterator

import numpy as np

from ..errors import InputError, SettingsError
from .base import FrameChunk, Source


class ArraySource(Source):
    """Frames from a NumPy array (or memory map) in scan order.

    Parameters
    ----------
    data : ndarray
        4D ``(sy, sx, dy, dx)`` or 3D ``(n, dy, dx)``.
    scan_shape : (int, int), optional
        Required for 3D data; for 4D data it may re-shape the scan (same frame count).
    skip_frames, flyback_frames, frames_per_position : int
        See `ScanLayout`.
    pad, crop : bool
        Accept a frame count that does not fill whole scans, see `ricom.sources.raw.resolve_scan`.
    name : str
        Shown in messages.
    """

    def __init__(self, data: np.ndarray, scan_shape=None, skip_frames: int = 0,
                 flyback_frames: int = 0, frames_per_position: int = 1, name: str = "array",
                 pad: bool = False, crop: bool = False, **_ignored) -> None:
        if data.ndim not in (3, 4):
            raise InputError(f"{name}: expected a 4D (scan_y, scan_x, det_y, det_x) or 3D "
                             f"(frames, det_y, det_x) array, got {data.ndim}D shape {data.shape}")
        if data.dtype.kind not in "uif" or data.dtype.kind == "c":
            raise InputError(f"{name}: pattern data must be integer or float, got dtype {data.dtype}")
        self.name = name
        self.detector_shape = tuple(int(v) for v in data.shape[-2:])
        if data.ndim == 4 and scan_shape is None and not (skip_frames or flyback_frames) \
                and frames_per_position == 1:
            scan_shape = tuple(int(v) for v in data.shape[:2])
        self._frames = data.reshape((-1, *self.detector_shape))
        if self._frames.shape[0] == 0 or 0 in self.detector_shape:
            raise InputError(f"{name}: the array holds no patterns (shape {data.shape})")
        if scan_shape is None:
            raise SettingsError(f"{name}: a 3D stack of {self._frames.shape[0]} frames needs --scan-shape SY SX")
        from .raw import resolve_scan
        self.layout, n_use = resolve_scan(name, self._frames.shape[0], scan_shape, skip_frames, flyback_frames,
                                          frames_per_position, pad, crop)
        self.scan_shape = self.layout.scan_shape
        self.n_frames = int(n_use)
        self._hints: dict = {}

    def chunks(self, chunk_size: int = 256) -> Iterator[FrameChunk]:
        return self.read_range(0, self.n_frames, chunk_size)

    @property
    def splittable(self) -> bool:
        """Frames of an array (or a memory-mapped ``.npy``) can be read from anywhere."""
        return True

    def read_range(self, start: int, stop: int, chunk_size: int = 256) -> Iterator[FrameChunk]:
        """Frames ``start … stop-1`` (acquisition order) in chunks of ``chunk_size``."""
        start, stop = self._check_range(start, stop)
        chunk_size = max(1, int(chunk_size))
        for a in range(start, stop, chunk_size):
            b = min(stop, a + chunk_size)
            yield FrameChunk(np.asarray(self._frames[a:b]), self.layout.positions(a, b - a),
                             self.layout.passes(a, b - a))

    def hints(self) -> dict:
        return dict(self._hints)

    def describe(self) -> dict:
        return {**super().describe(), "dtype": str(self._frames.dtype), "name": self.name}


def open_npy(path: str, **options) -> ArraySource:
    """Open a `.npy` file memory-mapped."""
    try:
        data = np.load(path, mmap_mode="r")
    except FileNotFoundError:
        raise InputError(f"input {path!r} does not exist") from None
    except (ValueError, OSError, EOFError) as exc:
        raise InputError(f"{path}: not a readable .npy file ({exc})") from None
    source = ArraySource(data, name=path, **options)
    source._hints = read_sidecar(path)
    return source


def read_sidecar(path: str) -> dict:
    """Calibration from ``<stem>.ricom.json`` beside a data file (written by ``ricom simulate``)."""
    side = os.path.splitext(path)[0] + ".ricom.json"
    if not os.path.exists(side):
        return {}
    try:
        with open(side) as fh:
            cal = json.load(fh).get("calibration", {})
    except (OSError, ValueError, AttributeError):
        return {}
    out = {k: float(cal[k]) for k in ("step_A", "pixel_size_mrad", "energy_keV") if cal.get(k) is not None}
    if cal.get("center_yx") is not None:
        out["center_yx"] = tuple(float(v) for v in cal["center_yx"])
    return out
