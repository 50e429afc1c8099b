"""In-memory and `.npy` arrays as sources (memory-mapped, never loaded whole).

Accepts 4D ``(scan_y, scan_x, det_y, det_x)`` arrays, or 3D ``(frames, det_y, det_x)``
stacks with a scan shape given.
"""
from __future__ import annotations

import json
import os

import numpy as np

from ricom.core.errors import InputError, Param, SettingsError
from ricom.sources.raw import LazyArraySource


class ArraySource(LazyArraySource):
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
        if data.dtype.kind not in "uif":
            raise InputError(f"{name}: pattern data must be integer or float, got dtype {data.dtype}")
        super().__init__(data, name, scan_shape, skip_frames, flyback_frames, frames_per_position, pad, crop)
        if self.scan_shape is None:
            raise SettingsError(f"{name}: a 3D stack of {self.n_frames} frames needs ", Param("scan_shape", form=True))
        self._hints: dict = {}


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
