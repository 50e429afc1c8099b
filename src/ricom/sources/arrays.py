"""In-memory and `.npy` arrays as sources (memory-mapped, never loaded whole).

Accepts 4D ``(scan_y, scan_x, det_y, det_x)`` arrays, or 3D ``(frames, det_y, det_x)``
stacks with a scan shape given.
"""
from __future__ import annotations

import json
import math
import warnings

import numpy as np

from ricom.core.errors import InputError, Param, SettingsError
from ricom.core.sidecar import find_sidecar
from ricom.sources.base import check_file
from ricom.sources.raw import LazyArraySource, check_pattern_dtype


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
    scan_positions : ScanPositions, str or array, optional
        The scan order (`ricom.core.scan_positions`); default: a raster.
    name : str
        Shown in messages.
    """

    def __init__(self, data: np.ndarray, scan_shape=None, skip_frames: int = 0,
                 flyback_frames: int = 0, frames_per_position: int = 1, name: str = "array",
                 pad: bool = False, crop: bool = False, scan_positions=None, **_ignored) -> None:
        if data.ndim not in (3, 4):
            raise InputError(f"{name}: expected a 4D (scan_y, scan_x, det_y, det_x) or 3D "
                             f"(frames, det_y, det_x) array, got {data.ndim}D shape {data.shape}")
        check_pattern_dtype(name, data.dtype)
        super().__init__(data, name, scan_shape, skip_frames, flyback_frames, frames_per_position, pad, crop,
                         scan_positions=scan_positions)
        if self.scan_shape is None:
            raise SettingsError(f"{name}: a 3D stack of {self.n_frames} frames needs ", Param("scan_shape", form=True))
        self._hints: dict = {}


def open_npy(path: str, **options) -> ArraySource:
    """Open a `.npy` file memory-mapped."""
    check_file(path)
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
    """Calibration from the ``.ricom.json`` sidecar of a data file (written by ``ricom simulate``;
    `ricom.core.sidecar`).

    A sidecar that cannot be read, or a value of the wrong type, is ignored with a warning
    naming the file and the key (the calibration can still be given by hand).
    """
    side = find_sidecar(path)
    if side is None:
        return {}
    try:
        with open(side) as fh:
            doc = json.load(fh)
    except (OSError, ValueError) as exc:
        warnings.warn(f"{side}: not readable as JSON ({exc}); its calibration is ignored", stacklevel=2)
        return {}
    cal = doc.get("calibration", {}) if isinstance(doc, dict) else None
    if not isinstance(cal, dict):
        warnings.warn(f"{side}: 'calibration' is not a JSON object; ignored", stacklevel=2)
        return {}
    out: dict = {}
    for key in ("step_A", "pixel_size_mrad", "energy_keV"):
        if cal.get(key) is not None:
            value = _positive(cal[key])
            if value is None:
                warnings.warn(f"{side}: calibration.{key} must be a positive number, got {cal[key]!r}; ignored",
                              stacklevel=2)
            else:
                out[key] = value
    if cal.get("center_yx") is not None:
        c = cal["center_yx"]
        pair = [_number(v) for v in c] if isinstance(c, (list, tuple)) and len(c) == 2 else [None]
        if None in pair:
            warnings.warn(f"{side}: calibration.center_yx must be two numbers [row, col], got {c!r}; ignored",
                          stacklevel=2)
        else:
            out["center_yx"] = tuple(pair)
    return out


def _number(value) -> float | None:
    """A finite JSON number as float; None for strings, booleans, lists, NaN and ±inf."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _positive(value) -> float | None:
    value = _number(value)
    return value if value is not None and value > 0 else None
