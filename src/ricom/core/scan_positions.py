"""Scan positions in any order: the position of every scan point, read from a file.

A `ScanPositions` lists where the probe was for each point of the scan, in acquisition
order: either flat indices (``iy * scan_x + ix``) or ``(row, col)`` pairs, ``-1`` for a
point that belongs to no position (a flyback or settling frame).  Positions may repeat
(their patterns are summed) and need not cover the scan (the rest stay empty and are
reported).  `ricom.core.chunks.ScanLayout` applies it: the k-th scan point of a pass
goes to ``flat(scan_shape)[k]``.

Files: ``.npy`` (1D flat indices or an ``(n, 2)`` array of row, col) or text/CSV (one
point a line, one column of flat indices or two columns, comma, semicolon, tab or space
separated; a first line that is not numbers is a header and skipped; ``#`` starts a
comment).  A CSV header naming ``x`` before ``y`` (Direct Electron's
``scan_coordinates.csv``) swaps the columns into (row, col).
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field

import numpy as np

from ricom.core.errors import InputError, Param, SettingsError

__all__ = ["ScanPositions", "scan_positions_from"]


@dataclass(frozen=True, eq=False)
class ScanPositions:
    """Where each scan point of a pass lies.

    Parameters
    ----------
    values : ndarray of int
        ``(n,)`` flat indices or ``(n, 2)`` (row, col) pairs, in acquisition order; ``-1``
        (in either column) marks a point at no position.
    name : str
        Where they came from (a file name), for messages.

    Examples
    --------
    >>> order = ScanPositions(np.array([[0, 1], [1, 0], [0, 0], [1, 1]]))
    >>> order.flat((2, 2)).tolist(), order.n_unvisited((2, 3))
    ([1, 2, 0, 3], 2)
    """

    values: np.ndarray
    name: str = "scan positions"
    _cache: dict = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        v = np.asarray(self.values)
        if v.dtype.kind == "f":
            if not np.all(np.isfinite(v)) or np.any(v != np.round(v)):
                raise InputError(f"{self.name}: scan positions must be whole numbers (indices), "
                                 f"not fractions or NaN")
            v = v.astype(np.int64)
        elif v.dtype.kind not in "iu":
            raise InputError(f"{self.name}: scan positions must be integers, got dtype {v.dtype}")
        if not (v.ndim == 1 or (v.ndim == 2 and v.shape[1] == 2)) or v.shape[0] == 0:
            raise InputError(f"{self.name}: expected one flat index or one (row, col) pair per scan point, "
                             f"got an array of shape {v.shape}")
        object.__setattr__(self, "values", np.ascontiguousarray(v, dtype=np.int64))

    def __len__(self) -> int:
        return int(self.values.shape[0])

    @classmethod
    def load(cls, path: str, x_first: bool = False) -> ScanPositions:
        """Read a ``.npy`` or text/CSV file (see the module docstring); ``x_first``: its two
        columns are (x, y) = (col, row), as in Direct Electron's ``scan_coordinates.csv``."""
        path = os.fspath(path)
        if not os.path.isfile(path):
            raise InputError(f"scan positions file {path!r} does not exist")
        if path.lower().endswith(".npy"):
            try:
                values = np.load(path, allow_pickle=False)
            except (ValueError, OSError, EOFError) as exc:
                raise InputError(f"{path}: not a readable .npy file ({exc})") from None
        else:
            values = _read_text(path, x_first)
        values = np.asarray(values)
        if x_first and values.ndim == 2 and values.shape[1:] == (2,):
            values = values[:, ::-1]
        return cls(values, path)

    def flat(self, scan_shape) -> np.ndarray:
        """Flat indices on a ``scan_shape`` scan (``-1`` kept), or a one-line error if a
        position lies outside it."""
        sy, sx = (int(v) for v in scan_shape)
        key = (sy, sx)
        if key not in self._cache:
            v = self.values
            if v.ndim == 2:
                off = (v[:, 0] < 0) | (v[:, 1] < 0)
                bad = ~off & ((v[:, 0] >= sy) | (v[:, 1] >= sx))
                flat = np.where(off, -1, v[:, 0] * sx + v[:, 1])
            else:
                bad = v >= sy * sx
                flat = np.where(v < 0, -1, v)
            if bad.any():
                k = int(np.flatnonzero(bad)[0])
                shown = tuple(int(x) for x in v[k]) if v.ndim == 2 else int(v[k])
                form = "(row, col)" if v.ndim == 2 else "flat index"
                raise SettingsError(f"{self.name}: scan point {k} at {form} {shown} lies outside the {sy}×{sx} "
                                    f"scan ({int(bad.sum())} points do); check ", Param("scan_shape"),
                                    " or the positions file")
            self._cache[key] = flat
        return self._cache[key]

    def visited(self, scan_shape) -> np.ndarray:
        """Boolean ``(scan_y * scan_x,)``: the positions the list visits at least once."""
        sy, sx = (int(v) for v in scan_shape)
        seen = np.zeros(sy * sx, bool)
        flat = self.flat(scan_shape)
        seen[flat[flat >= 0]] = True
        return seen

    def n_unvisited(self, scan_shape) -> int:
        """Scan positions the list never visits (they stay empty)."""
        return int(np.count_nonzero(~self.visited(scan_shape)))

    def describe(self) -> dict:
        """For ``ricom info`` and saved attributes."""
        return {"scan_positions": self.name, "n_scan_points": len(self)}


def _read_text(path: str, x_first: bool = False) -> np.ndarray:
    """Integer columns of a text/CSV file: ``(n,)``, or ``(n, 2)`` as (row, col) — as in the
    file unless its header says x, y (then swapped; ``x_first`` callers swap themselves)."""
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            lines = fh.read().splitlines()
    except OSError as exc:
        raise InputError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    rows, header, first = [], None, True
    for number, line in enumerate(lines, 1):
        text = line.split("#", 1)[0].strip()
        if not text:
            continue
        cells = [c for c in re.split(r"[,;\s]+", text) if c]
        try:
            rows.append([float(c) for c in cells])
        except ValueError:
            if first:
                header = [c.strip().strip("\"'").lower() for c in cells]
                first = False
                continue
            raise InputError(f"{path}: line {number} is not numbers ({text[:40]!r}); give one flat index or "
                             f"'row, col' per line") from None
        first = False
    if not rows:
        raise InputError(f"{path}: holds no scan positions")
    widths = {len(r) for r in rows}
    if len(widths) != 1 or widths.pop() not in (1, 2):
        raise InputError(f"{path}: every line must hold one flat index or two numbers (row, col)")
    values = np.asarray(rows, dtype=np.float64)
    values = values[:, 0] if values.shape[1] == 1 else values
    if not x_first and header is not None and values.ndim == 2 and _x_first(header):
        values = values[:, ::-1]
    return values


def _x_first(header: list[str]) -> bool:
    """True if a two-column header names x (the column) before y (the row)."""
    if len(header) != 2:
        return False
    a, b = header
    return (a.startswith("x") and b.startswith("y")) or (a in ("col", "column") and b == "row")


def scan_positions_from(value) -> ScanPositions | None:
    """A `ScanPositions` from what a user gives: None, a file name, an array or one already made."""
    if value is None or isinstance(value, ScanPositions):
        return value
    if isinstance(value, (str, os.PathLike)):
        return ScanPositions.load(value)
    return ScanPositions(np.asarray(value), "scan positions array")
