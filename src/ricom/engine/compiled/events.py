"""Single-electron events into the per-position state (the event form of `ricom.engine.compiled.moments.accumulate`)."""
from __future__ import annotations

import numba
import numpy as np

from ricom.engine.compiled._common import FIRST_RING, JIT, SUM_X, SUM_Y, TOTAL
from ricom.engine.compiled.moments import centre_sums_add


@numba.njit(**JIT, inline="always")
def _touch(p, state, hits, stamp, touched, n_touched, centre_sums, generation, count_visits):
    """List position ``p`` in ``touched`` the first time this generation (taking its COM out of
    ``centre_sums``); returns (touched count, 1 if ``p`` is a pattern seen for the first time)."""
    if stamp[p] == generation:
        return n_touched, 0
    stamp[p] = generation
    touched[n_touched] = p
    centre_sums_add(state, p, centre_sums, -1.0)
    if count_visits and hits[p] == 0:
        hits[p] = 1
        return n_touched + 1, 1
    return n_touched + 1, 0


@numba.njit(**JIT)
def _touch_all(positions, state, hits, stamp, touched, centre_sums, generation, count_visits):
    """List every position of the chunk once in ``touched`` and take its current COM out of
    ``centre_sums`` (put back by `accumulate_events` after the update).

    Returns (touched count, new patterns: positions first seen, with ``count_visits``)."""
    n_touched = n_new = 0
    last = -1
    for i in range(positions.shape[0]):
        p = positions[i]
        if p == last or p < 0:
            continue
        last = p
        n_touched, new = _touch(p, state, hits, stamp, touched, n_touched, centre_sums, generation, count_visits)
        n_new += new
    return n_touched, n_new


# Long on purpose: one pass over the events with the run of one position in registers (the hot loop).
@numba.njit(**JIT)
def _events_lut(positions, x, y, ring_lut, mask_lut, use_mask, n_rings, buffers, generation, count_visits,
                counters):
    """Integer coordinates: ring and mask from per-pixel look-ups, in one pass with `_touch_all`'s
    listing (a position is listed when its first run starts, before its state changes).  The
    moments of a run of events at one position are summed in integer registers first (exact:
    integer weights and coordinates), then added to the state.  Returns (touched, new patterns)."""
    state = buffers.state
    ny, nx = ring_lut.shape
    n_invalid = n_added = n_touched = n_new = 0
    last = -1
    ct = sx = sy = np.int64(0)
    for i in range(positions.shape[0]):
        p = positions[i]
        if p != last:
            if last >= 0:
                state[TOTAL, last] += np.float64(ct)
                state[SUM_X, last] += np.float64(sx)
                state[SUM_Y, last] += np.float64(sy)
            ct = sx = sy = np.int64(0)
            last = p
            if p >= 0:
                n_touched, new = _touch(p, state, buffers.hits, buffers.stamp, buffers.touched, n_touched,
                                        buffers.centre_sums, generation, count_visits)
                n_new += new
        if p < 0:
            continue
        ix = np.int64(x[i])
        iy = np.int64(y[i])
        if ix < 0 or iy < 0 or ix >= nx or iy >= ny:
            n_invalid += 1
            continue
        n_added += 1
        w = np.int64(mask_lut[iy, ix]) if use_mask else np.int64(1)
        ct += w
        sx += w * ix
        sy += w * iy
        if n_rings > 0:
            k = np.int64(ring_lut[iy, ix])
            state[FIRST_RING + min(max(k, 0), n_rings - 1), p] += np.float64((k >= 0) & (k < n_rings))
    if last >= 0:
        state[TOTAL, last] += np.float64(ct)
        state[SUM_X, last] += np.float64(sx)
        state[SUM_Y, last] += np.float64(sy)
    counters[0], counters[3] = n_invalid, n_added
    return n_touched, n_new


@numba.njit(**JIT)
def _events_radius(positions, x, y, bounds2, cy, cx, mask_lo2, mask_hi2, use_mask, state, counters):
    """Any coordinates (sub-pixel floats): ring and mask from the radius of each event."""
    n_rings = bounds2.shape[0] - 1
    need_r = use_mask or n_rings > 0
    n_invalid = n_added = 0
    for i in range(positions.shape[0]):
        p = positions[i]
        if p < 0:
            continue
        xi = np.float64(x[i])
        yi = np.float64(y[i])
        if not (np.isfinite(xi) and np.isfinite(yi)):
            n_invalid += 1
            continue
        n_added += 1
        r2 = 0.0
        if need_r:
            r2 = (yi - cy) * (yi - cy) + (xi - cx) * (xi - cx)
        w = np.float64((r2 >= mask_lo2) & (r2 < mask_hi2)) if use_mask else 1.0
        state[TOTAL, p] += w
        state[SUM_X, p] += w * xi
        state[SUM_Y, p] += w * yi
        if n_rings > 0:  # ring k: bounds2[k] <= r2 < bounds2[k + 1], counted without branches
            k = -1
            for j in range(n_rings + 1):
                k += r2 >= bounds2[j]
            state[FIRST_RING + min(max(k, 0), n_rings - 1), p] += np.float64((k >= 0) & (k < n_rings))
    counters[0], counters[3] = n_invalid, n_added


@numba.njit(**JIT)
def accumulate_events(positions, x, y, lookups, buffers, generation, done, count_visits, counters):
    """Add single-electron events into the per-position state (the event form of `accumulate`).

    Event ``i`` at flat position ``positions[i]`` (``-1`` skips it) and detector column/row
    ``x[i]``, ``y[i]`` (any number type; sub-pixel positions are kept, never truncated) adds
    1 to TOTAL, ``x`` to SUM_X and ``y`` to SUM_Y, and 1 to its ring, with the ring and
    the COM mask from ``lookups`` (`EventLookups`: per-pixel look-ups for integer
    coordinates, else each event's radius — the same answer at pixel centres).  Events off
    the detector (look-up case) or not finite are skipped as invalid.

    Every position in ``done`` (its dwell ended) counts once in ``buffers.hits``; with
    ``count_visits`` a position counts the first time it receives events instead.
    ``buffers`` and ``generation`` work as in `accumulate`.  ``counters`` receives [events
    skipped as invalid, patterns counted, empty patterns, events added].  Returns the
    number of touched positions.
    """
    state, hits, touched, centre_sums = buffers.state, buffers.hits, buffers.touched, buffers.centre_sums
    bounds2 = lookups.ring_bounds2_px2
    if lookups.use_lut:
        n_touched, n_new = _events_lut(positions, x, y, lookups.ring_of_pixel, lookups.com_mask, lookups.use_mask,
                                       bounds2.shape[0] - 1, buffers, generation, count_visits, counters)
    else:
        n_touched, n_new = _touch_all(positions, state, hits, buffers.stamp, touched, centre_sums, generation,
                                      count_visits)
        _events_radius(positions, x, y, bounds2, lookups.centre_y_px, lookups.centre_x_px, lookups.mask_lo2_px2,
                       lookups.mask_hi2_px2, lookups.use_mask, state, counters)
    counters[1] = n_new
    for j in range(n_touched):
        centre_sums_add(state, touched[j], centre_sums, 1.0)
    n_empty = 0
    for j in range(done.shape[0]):
        p = done[j]
        if p < 0:
            continue
        hits[p] += 1
        counters[1] += 1
        if not state[TOTAL, p] > 0:
            n_empty += 1
    counters[2] = n_empty
    return n_touched
