"""Direct Electron 4D-STEM movies: ``<name>_movie.mrc`` with ``<name>_info.txt`` and, for a
scan in any order, ``<name>_scan_coordinates.csv``.

DE-Server saves one diffraction pattern per scan point as the frames of an MRC file, in
acquisition order.  Format facts used here:

- MRC: a 1024-byte header of 32-bit words; NX, NY, NZ at bytes 0, 4, 8 (pattern columns,
  rows, frames), MODE at 12 (0 int8, 1 int16, 2 float32, 6 uint16, 12 float16), the size
  of the extended header NEXT at 92, the machine stamp at 212 (``0x44 0x44``: little
  endian, ``0x11 0x11``: big).  Frames start at byte 1024 + NEXT, x fastest.
- ``_info.txt``: ``key = value`` lines; ``Scan - Size X`` / ``Scan - Size Y`` give the scan
  shape, ``Scan - Type`` is ``Raster`` for a raster scan, ``Specimen Pixel Size X
  (nanometers)`` the step.
- ``_scan_coordinates.csv``: one ``x, y`` line (column, row of the scan) per frame, in
  acquisition order; positions may repeat.

The frames are memory-mapped (`ricom.sources.raw.LazyArraySource`) and placed by the
coordinates (`ricom.core.scan_positions.ScanPositions`); without a coordinates file the
scan is a raster.  A scan shape or scan positions given by the user take precedence.
"""
from __future__ import annotations

import builtins
import glob
import os
import warnings

import numpy as np

from ricom.core.errors import InputError, Param, SettingsError
from ricom.core.scan_positions import ScanPositions
from ricom.sources.base import check_file
from ricom.sources.raw import LazyArraySource

HEADER_BYTES = 1024
MRC_MODES = {0: "i1", 1: "i2", 2: "f4", 6: "u2", 12: "f2"}
"""MRC MODE → NumPy type (without byte order)."""


def is_de_movie(spec: str) -> bool:
    """True for a ``*_movie.mrc`` file name."""
    return os.path.basename(spec).lower().endswith("_movie.mrc")


def read_mrc_header(path: str) -> dict:
    """``nx``, ``ny``, ``nz``, ``dtype`` (with byte order) and ``offset`` of an MRC file."""
    with builtins.open(path, "rb") as fh:
        head = fh.read(HEADER_BYTES)
    if len(head) < HEADER_BYTES:
        raise InputError(f"{path}: shorter than the 1024-byte MRC header; not an MRC file")
    stamp = head[212:214]
    order = ">" if stamp[:1] == b"\x11" else "<"
    words = np.frombuffer(head[:96], dtype=f"{order}i4")
    if stamp[:1] not in (b"\x11", b"\x44") and not 0 < words[0] < 1 << 16:  # no stamp: the plausible order
        order = ">"
        words = np.frombuffer(head[:96], dtype=">i4")
    nx, ny, nz, mode = (int(v) for v in words[:4])
    extended = int(words[23])
    if mode not in MRC_MODES:
        raise InputError(f"{path}: MRC mode {mode} is not a pattern type ricom reads (modes 0, 1, 2, 6, 12)")
    if min(nx, ny, nz) < 1 or extended < 0:
        raise InputError(f"{path}: the MRC header gives {nx}×{ny}×{nz} pixels and {extended} extended header "
                         f"bytes; not a readable MRC file")
    return {"nx": nx, "ny": ny, "nz": nz, "dtype": np.dtype(order + MRC_MODES[mode]),
            "offset": HEADER_BYTES + extended}


def read_info(path: str) -> dict[str, str]:
    """The ``key = value`` lines of a DE ``_info.txt`` file."""
    out: dict[str, str] = {}
    with builtins.open(path, encoding="utf-8", errors="replace") as fh:
        for line in fh:
            key, sep, value = line.partition("=")
            if sep:
                out[key.strip()] = value.strip()
    return out


def _companion(movie: str, suffix: str) -> str | None:
    """``<stem><suffix>`` beside ``<stem>_movie.mrc``, else the one file ``<stem>*<suffix>``."""
    stem = movie[: -len("_movie.mrc")]
    if os.path.isfile(stem + suffix):
        return stem + suffix
    found = sorted(glob.glob(glob.escape(stem) + "*" + suffix))
    return found[0] if len(found) == 1 else None


def _number(info: dict, key: str) -> float | None:
    try:
        value = float(info[key])
    except (KeyError, ValueError):
        return None
    return value if value > 0 else None


def _scan_shape(info: dict, order: ScanPositions | None):
    """(rows, cols) from the info file, else the bounding box of the coordinates, else None."""
    sx, sy = _number(info, "Scan - Size X"), _number(info, "Scan - Size Y")
    if sx and sy:
        return (int(sy), int(sx)), "DE info file"
    if order is not None and order.values.ndim == 2:
        rows, cols = order.values[:, 0], order.values[:, 1]
        return (int(rows.max()) + 1, int(cols.max()) + 1), "extent of the DE scan coordinates"
    return None, None


def open(spec: str, scan_shape=None, scan_positions=None, **options) -> LazyArraySource:
    """Open a DE ``*_movie.mrc`` with its info and scan-coordinates files (see the module docstring)."""
    check_file(spec)
    head = read_mrc_header(spec)
    nx, ny, nz, dtype = head["nx"], head["ny"], head["nz"], head["dtype"]
    frame_bytes = nx * ny * dtype.itemsize
    available = (os.path.getsize(spec) - head["offset"]) // frame_bytes
    if available < 1:
        raise InputError(f"{spec}: holds no complete {ny}×{nx} frame after its headers")
    if available < nz:
        warnings.warn(f"{spec}: the MRC header announces {nz} frames but the file holds {available}; "
                      f"the file is cut short, the rest of the scan stays empty", stacklevel=2)
        options.setdefault("pad", True)
    n = min(nz, available)
    info_path, coords_path = _companion(spec, "_info.txt"), _companion(spec, "_scan_coordinates.csv")
    info = read_info(info_path) if info_path else {}
    order = None
    if scan_positions is None and coords_path is not None:
        order = ScanPositions.load(coords_path, x_first=True)
    origin = "given" if scan_shape is not None else None
    if scan_shape is None:
        scan_shape, origin = _scan_shape(info, order)
    if scan_shape is None:
        raise SettingsError(f"{spec}: no _info.txt with the scan size beside it; give ", Param("scan_shape", form=True))
    frames = np.memmap(spec, dtype=dtype, mode="r", offset=head["offset"], shape=(n, ny, nx))
    source = LazyArraySource(frames, name=spec, scan_shape=scan_shape, scan_shape_from=origin,
                             scan_positions=scan_positions if scan_positions is not None else order, **options)
    step_nm = _number(info, "Specimen Pixel Size X (nanometers)")
    source._hints = {"step_A": 10.0 * step_nm} if step_nm else {}
    source.de_files = {"info": info_path, "scan_coordinates": coords_path}
    return source


__all__ = ["is_de_movie", "open", "read_info", "read_mrc_header"]
