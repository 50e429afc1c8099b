"""The moments reducer: per scan position, the sums every image is made from.

`Moments` keeps, per position, the total counts, Σ I·x, Σ I·y (detector pixels from the
top-left pixel) and the virtual-detector ring sums, and the number of patterns (`hits`)
— never a pattern.  It takes reduced chunks (`process`), single-electron events
(`process_events`), and partial results made elsewhere (`merge`: Dask workers, reference
scans, calibration passes), and counts what it saw (`MomentCounters`).  Merging the
partial moments of any split of the data gives the single pass's moments exactly for
integer patterns (sums of integers in float64).

The riCOM image and the COM maps are made from these sums by
`ricom.engine.ricom_update.RicomImage`; the compiled loops are in
`ricom.engine.compiled.moments`.
"""
from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np

from ricom.core.errors import InputError, SettingsError
from ricom.core.params import check_scan_memory
from ricom.engine import compiled as C
from ricom.engine.reducer import ReducedChunk, Reducer

_NO_PASS = np.zeros(0, np.int64)


@dataclass
class MomentCounters:
    """What a reducer saw: patterns (counted, empty, non-finite, outside the scan) and events."""

    n_patterns: int = 0
    n_empty: int = 0
    n_invalid: int = 0
    n_outside: int = 0
    n_events: int = 0
    n_invalid_events: int = 0

    def add(self, other: MomentCounters) -> None:
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))

    def as_dict(self) -> dict[str, int]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass
class MomentsPart:
    """A partial result in compact form: the sums of the positions it touched.

    ``moments[:, i]`` is the sum over ``hits[i]`` patterns at flat position
    ``positions[i]``; ``last_pass`` (replace mode) their scan pass.  This is what a Dask
    task sends back (a few numbers per position, not the patterns).
    """

    positions: np.ndarray
    moments: np.ndarray
    hits: np.ndarray
    counters: MomentCounters
    last_pass: np.ndarray | None = None


class Moments(Reducer):
    """Per-position moments of one scan (the moments reducer).

    Parameters
    ----------
    n_positions : int
        Scan positions (flat index ``iy * scan_x + ix``).
    n_rings : int
        Ring sums per position besides total, Σ I·x and Σ I·y.
    repeats : {"sum", "replace"}
        What a later scan pass does at a position already seen: add, or replace.

    Examples
    --------
    >>> a, b = Moments(4), Moments(4)
    >>> m = np.array([[2.0, 1.0], [2.0, 0.0], [4.0, 1.0]])  # rows: total, Σ I·x, Σ I·y
    >>> a.process(ReducedChunk(np.array([0, 3]), m, np.array([True, True])))
    2
    >>> b.merge(a.part()), b.merge(a)
    (2, 2)
    >>> b.get_results()["state"][:, 0].tolist(), b.counters.n_patterns
    ([4.0, 4.0, 8.0], 4)
    """

    def __init__(self, n_positions: int, n_rings: int = 0, repeats: str = "sum") -> None:
        if repeats not in ("sum", "replace"):
            raise SettingsError(f"repeats must be 'sum' or 'replace', got {repeats!r}")
        check_scan_memory(n_positions, "the scan", n_rings=n_rings)
        self.repeats = repeats
        self.state = np.zeros((C.FIRST_RING + n_rings, n_positions))
        self.hits = np.zeros(n_positions, np.int64)
        self.last_pass = np.full(n_positions if repeats == "replace" else 0, -1, np.int64)
        self.counters = MomentCounters()
        self.centre_sums = np.zeros(3)
        self._stamp = np.zeros(n_positions, np.int64)
        self._touched = np.zeros(n_positions, np.int64)
        self._generation = 0

    # ------------------------------------------------------------------ shape
    @property
    def n_positions(self) -> int:
        return self.hits.shape[0]

    @property
    def n_rows(self) -> int:
        return self.state.shape[0]

    def set_rings(self, n_rings: int) -> None:
        """Keep total and first moments, and start ``n_rings`` ring sums at zero."""
        extra = np.zeros((n_rings, self.n_positions))
        self.state = np.ascontiguousarray(np.vstack([self.state[:C.FIRST_RING], extra]))

    def _next_generation(self) -> C.MomentBuffers:
        """The buffers for one more call of the compiled loops (its positions are listed afresh)."""
        self._generation += 1
        return C.MomentBuffers(self.state, self.hits, self._stamp, self._touched, self.centre_sums)

    @property
    def touched(self) -> np.ndarray:
        """Buffer whose first entries list the positions the last call changed."""
        return self._touched

    # ------------------------------------------------------------------ input
    def process(self, chunk: ReducedChunk) -> int:
        """Add a reduced chunk; returns how many positions it changed (listed in `touched`)."""
        positions, moments, valid = chunk.positions, chunk.moments, chunk.valid
        if moments.shape[0] != self.n_rows:
            raise InputError(f"expected {self.n_rows} moment rows, got {moments.shape[0]}")
        inside = positions >= 0
        n_inside = int(np.count_nonzero(inside))
        counted = valid if n_inside == positions.shape[0] else inside & valid
        n_counted = int(np.count_nonzero(counted))
        c = self.counters
        c.n_outside += positions.shape[0] - n_inside
        c.n_invalid += n_inside - n_counted
        c.n_patterns += n_counted
        c.n_empty += int(np.count_nonzero(counted & ~(moments[C.TOTAL] > 0)))
        frame_pass = _NO_PASS
        if self.repeats == "replace":
            scan_pass = 0 if chunk.scan_pass is None else chunk.scan_pass
            frame_pass = np.broadcast_to(np.asarray(scan_pass, np.int64), positions.shape).copy()
        buffers = self._next_generation()
        return C.accumulate(positions, moments, valid, buffers, self._generation, frame_pass, self.last_pass)

    def process_events(self, positions, x, y, lookups: C.EventLookups, done, count_visits: bool) -> int:
        """Add single-electron events (see `ricom.engine.compiled.accumulate_events`);
        returns how many positions they changed."""
        counters = np.zeros(4, np.int64)
        buffers = self._next_generation()
        n_t = C.accumulate_events(positions, x, y, lookups, buffers, self._generation, done, count_visits, counters)
        c = self.counters
        c.n_invalid_events += int(counters[0])
        c.n_patterns += int(counters[1])
        c.n_empty += int(counters[2])
        c.n_events += int(counters[3])
        return n_t

    # ------------------------------------------------------------------ merge
    def part(self) -> MomentsPart:
        """The touched positions' sums, hits and the counters: what `merge` takes."""
        used = np.flatnonzero((self.hits > 0) | np.any(self.state != 0, axis=0))
        last = self.last_pass[used].copy() if self.repeats == "replace" else None
        return MomentsPart(used, self.state[:, used].copy(), self.hits[used].copy(),
                           MomentCounters(**self.counters.as_dict()), last)

    def merge(self, other: Moments | MomentsPart) -> int:
        """Add a partial result of other chunks of the same scan; returns how many positions
        it changed (listed in `touched`).

        Sums add; in replace mode a position takes the part's sums where the part holds a
        newer scan pass.  The result equals processing both parts' chunks in one pass.
        """
        part = other.part() if isinstance(other, Moments) else other
        if part.moments.shape[0] != self.n_rows:
            raise InputError(f"cannot merge moments with {part.moments.shape[0]} rows into {self.n_rows}")
        p = np.asarray(part.positions, np.int64)
        self.counters.add(part.counters)
        if self.repeats == "replace" and part.last_pass is not None:
            newer = part.last_pass > self.last_pass[p]
            self.state[:, p[newer]] = 0.0
            self.hits[p[newer]] = 0
            self.last_pass[p[newer]] = part.last_pass[newer]
            keep = part.last_pass >= self.last_pass[p]
            p, moments, hits = p[keep], part.moments[:, keep], part.hits[keep]
        else:
            moments, hits = part.moments, part.hits
        self.state[:, p] += moments
        self.hits[p] += hits
        self._touched[:p.shape[0]] = p
        self.centre_sums[:] = running_centre_sums(self.state)
        return p.shape[0]

    # ------------------------------------------------------------------ output
    def get_results(self) -> dict[str, np.ndarray]:
        """``state`` (rows: total, Σ I·x, Σ I·y, ring sums) and ``hits``, as copies."""
        return {"state": self.state.copy(), "hits": self.hits.copy()}

    def running_centre(self) -> tuple[float, float] | None:
        """Mean uncentred COM (row, column) over the non-empty positions, or None."""
        sx, sy, n = self.centre_sums
        return None if n <= 0 else (float(sy / n), float(sx / n))

    def uncentred_com(self, scan_shape) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per-position COM (row, column) in detector pixels, NaN where empty, and the counts."""
        t = self.state[C.TOTAL].reshape(scan_shape).copy()
        with np.errstate(invalid="ignore", divide="ignore"):
            cy = np.where(t > 0, self.state[C.SUM_Y].reshape(scan_shape) / t, np.nan)
            cx = np.where(t > 0, self.state[C.SUM_X].reshape(scan_shape) / t, np.nan)
        return cy, cx, t


def running_centre_sums(state: np.ndarray) -> np.ndarray:
    """[Σ COM_x, Σ COM_y, n] of the uncentred COM over positions with counts."""
    t = state[C.TOTAL]
    ok = t > 0
    return np.array([(state[C.SUM_X, ok] / t[ok]).sum(), (state[C.SUM_Y, ok] / t[ok]).sum(), float(ok.sum())])
