"""Placing timed hits at scan positions, once the time segments are known.

A *segment* is a time window of consecutive slots (a scan line, one pixel-trigger
period, a dwell line); `ricom.sources.timepix.sync.Synchroniser` builds them from the
trigger edges.  Owns the segment table's dtype (`SEGMENT`), slot → flat scan position
(`slots_to_positions`: skipped slots and flyback give −1) and the compiled pass that gives
every hit of a block its position (`assign_hits`).

A slot is a *scan point*: after the skipped slots, point k of a raster is line
k // (SX + flyback), column k % (SX + flyback) (flyback columns are no point).  With a scan
order (``order``: the flat position of every point of a pass, from
`ricom.core.scan_positions.ScanPositions.flat`; −1 for none) the k-th slot after the
skipped ones — the k-th pixel trigger, the k-th dwell slot, or in line sync column
k % SX of line k // SX — is at ``order[k % len(order)]`` (repeated passes wrap round).
"""
from __future__ import annotations

import numba
import numpy as np


# Long on purpose: one compiled pass over a block of hits with the segment look-up inline (the hot loop).
@numba.njit(nogil=True, cache=True)
def assign_hits(t, x, y, tot, horizon, late_before, seg_start, seg_end, seg_dwell, seg_ncols, seg_slot0, scan,
                order, acceptance, tick_ns, keep_times, out_pos, out_x, out_y, out_t, out_tot, counters):
    """Scan position of every hit older than ``horizon``; younger hits are compacted to
    the front of the input arrays (the carry).  Returns (kept, carried).

    Segment ``s`` (sorted by start) spans ``[seg_start, seg_end)`` in ``seg_ncols``
    slots of ``seg_dwell`` ticks; its column ``c`` is slot ``seg_slot0[s] + c``, at the
    position `slot_position` gives with ``scan`` = (skip, line length, SY, SX) and the
    scan ``order`` (empty: a raster) (−1: skipped).  Arrival times (ns after the
    position's start) and ToT are written only with ``keep_times``.  ``counters`` +=
    [outside segments, beyond acceptance, skipped or flyback, late, late and outside].  The
    ticks of the last hit's slot are kept, so the hits after it in the same slot (nearly
    all) skip the look-up.
    """
    nseg = seg_start.shape[0]
    n_out = n_carry = 0
    outside = rejected = skipped = late = late_lost = 0
    s = -1
    lo_t = hi_t = end = np.int64(0)
    dwell = inv = 1.0
    ncols = slot0 = np.int64(0)
    exact = keep_times or acceptance < np.inf
    slot_lo, slot_hi, col, p = np.int64(1), np.int64(0), np.int64(0), np.int64(-1)  # the last hit's slot
    for i in range(t.shape[0]):
        ti = t[i]
        if ti >= horizon:
            t[n_carry], x[n_carry], y[n_carry], tot[n_carry] = ti, x[i], y[i], tot[i]
            n_carry += 1
            continue
        is_late = ti < late_before
        late += is_late
        if ti < slot_lo or ti >= slot_hi:
            if s < 0 or ti < lo_t or ti >= hi_t:
                slot_lo, slot_hi = np.int64(1), np.int64(0)  # a new segment: no slot until one is found
                a, b = 0, nseg
                while a < b:
                    mid = (a + b) // 2
                    if seg_start[mid] <= ti:
                        a = mid + 1
                    else:
                        b = mid
                s = a - 1
                if s < 0:
                    outside += 1
                    late_lost += is_late
                    continue
                lo_t, end, dwell, ncols, slot0 = seg_start[s], seg_end[s], seg_dwell[s], seg_ncols[s], seg_slot0[s]
                hi_t = seg_start[s + 1] if s + 1 < nseg else horizon
                inv = 1.0 / dwell
            rel = ti - lo_t
            c = np.int64(rel * inv)
            if c * dwell > rel:  # exact at slot boundaries despite the rounded inverse
                c -= 1
            elif (c + 1) * dwell <= rel:
                c += 1
            if ti >= end or c >= ncols:
                outside += 1
                late_lost += is_late
                continue
            # the slot's ticks: fl(c·dwell) ≤ rel < fl((c + 1)·dwell), inside the segment
            slot_lo = lo_t + np.int64(np.ceil(c * dwell))
            slot_hi = min(lo_t + np.int64(np.ceil((c + 1) * dwell)), end, hi_t)
            col, p = c, slot_position(slot0 + c, scan[0], scan[1], scan[2], scan[3], order)
        t_rel = 0.0
        if exact:
            t_rel = (ti - lo_t) - col * dwell
            if t_rel >= acceptance:
                rejected += 1
                continue
        if p < 0:
            skipped += 1
            continue
        out_pos[n_out], out_x[n_out], out_y[n_out] = p, x[i], y[i]
        if keep_times:
            out_t[n_out], out_tot[n_out] = t_rel * tick_ns, tot[i]
        n_out += 1
    counters[0] += outside
    counters[1] += rejected
    counters[2] += skipped
    counters[3] += late
    counters[4] += late_lost
    return n_out, n_carry


@numba.njit(nogil=True, cache=True, inline="always")
def slot_position(slot, skip, line_len, sy, sx, order):
    """Flat scan position of one slot (−1 for skipped and flyback slots, and for points the
    ``order`` lists as −1); ``order`` empty: a raster.  As `slots_to_positions`."""
    s = slot - skip
    if order.shape[0]:
        if s < 0:
            return np.int64(-1)
        return order[s % order.shape[0]]
    line = s // line_len
    col = s - line * line_len
    if s < 0 or col >= sx:
        return np.int64(-1)
    return (line % sy) * sx + col


def slots_to_positions(slots: np.ndarray, skip: int, line_len: int, scan_shape,
                       order: np.ndarray | None = None) -> np.ndarray:
    """Flat scan positions of slots (``-1`` for skipped and flyback slots).

    ``order`` : the flat position of every scan point of a pass (``-1``: none), or None
    for a raster.

    Examples
    --------
    >>> slots_to_positions(np.arange(6), 1, 2, (2, 2)).tolist()
    [-1, 0, 1, 2, 3, 0]
    >>> slots_to_positions(np.arange(6), 1, 2, (2, 2), np.array([3, -1, 0])).tolist()
    [-1, 3, -1, 0, 3, -1]
    """
    s = np.asarray(slots, np.int64) - skip
    if order is not None and len(order):
        order = np.asarray(order, np.int64)
        return np.where(s >= 0, order[np.maximum(s, 0) % order.shape[0]], -1)
    sy, sx = scan_shape
    line, col = np.divmod(s, line_len)
    pos = (line % sy) * sx + col
    pos[(s < 0) | (col >= sx)] = -1
    return pos


def points_done(slots: np.ndarray, skip: int, line_len: int, sx: int, ordered: bool) -> int:
    """How many of these slots are scan points (not skipped, not flyback): with a scan order every slot
    after the skipped ones is one (even one the list places nowhere), as every frame is for frame inputs."""
    s = np.asarray(slots, np.int64) - skip
    if ordered:
        return int(np.count_nonzero(s >= 0))
    return int(np.count_nonzero((s >= 0) & (s % line_len < sx)))


SEGMENT = np.dtype([("start", "i8"), ("end", "i8"), ("dwell", "f8"), ("slot0", "i8"), ("ncols", "i8")])
"""A time window of consecutive slots: a scan line, one pixel-trigger period, a dwell line."""
