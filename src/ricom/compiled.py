"""Every compiled hot loop of the project, in one place (numba, ``nogil``, cached).

The engine calls these on whole chunks: per-pattern reductions (total, first moments,
ring sums), accumulation of those moments into the per-position state, and the riCOM
kernel scatter.  Nothing here allocates per pattern or calls back into Python.

State layout shared with `ricom.engine`: ``state[m, p]`` holds moment ``m`` of scan
position ``p``: row 0 total counts, 1 Σ I·x, 2 Σ I·y (x, y in detector pixels from the
top-left pixel), rows 3… ring sums of the virtual-detector rings.
"""
from __future__ import annotations

import numba
import numpy as np

_JIT = {"nogil": True, "cache": True}

TOTAL, SUM_X, SUM_Y, FIRST_RING = 0, 1, 2, 3


@numba.njit(**_JIT)
def frame_moments_int(frames, mask, use_mask, out):
    """Total and first moments of integer patterns, exact int64 sums.

    ``frames (k, ny, nx)``; ``mask (ny, nx)`` int weights used when ``use_mask``;
    ``out (3 + r, k)`` receives rows TOTAL, SUM_X, SUM_Y.
    """
    k, ny, nx = frames.shape
    for i in range(k):
        t = 0
        my = 0
        mx = 0
        for y in range(ny):
            r = 0
            rx = 0
            if use_mask:
                for x in range(nx):
                    v = np.int64(frames[i, y, x]) * mask[y, x]
                    r += v
                    rx += v * x
            else:
                for x in range(nx):
                    v = np.int64(frames[i, y, x])
                    r += v
                    rx += v * x
            t += r
            mx += rx
            my += r * y
        out[TOTAL, i] = t
        out[SUM_X, i] = mx
        out[SUM_Y, i] = my


@numba.njit(fastmath=True, **_JIT)
def frame_moments_u16(rows, offset, ny, nx, swap_bytes, runs, n_rings, out):
    """Moments (and ring sums) of unmasked 8/16-bit unsigned patterns in one read.

    Pattern i is ``rows[i, offset:offset + ny*nx]`` (rows C-contiguous: a plain
    ``(k, ny*nx)`` view, or a file's frames with their headers).  ``swap_bytes`` reads
    big-endian 16-bit data in place.  Column sums in uint32 (exact while a column sums
    below 2³²) keep the inner loop vectorised.  ``runs (m, 4)`` = ``(y, x0, x1, ring)``
    covering every pixel row by row (see `ricom.detector.ring_runs`); with ``n_rings = 0``
    one run per row is enough.
    """
    k = rows.shape[0]
    col = np.zeros(nx, np.uint32)
    acc = np.zeros(max(n_rings, 1), np.int64)
    for i in range(k):
        img = rows[i, offset:offset + ny * nx].reshape((ny, nx))
        col[:] = 0
        acc[:] = 0
        t = 0
        my = 0
        for j in range(runs.shape[0]):
            y = runs[j, 0]
            x0 = runs[j, 1]
            x1 = runs[j, 2]
            seg = img[y, x0:x1]  # slices indexed from 0 keep the loop vectorised
            cseg = col[x0:x1]
            r = np.uint32(0)
            if swap_bytes:
                for x in range(seg.shape[0]):
                    u = np.uint32(seg[x])
                    v = ((u >> 8) | (u << 8)) & np.uint32(0xFFFF)
                    cseg[x] += v
                    r += v
            else:
                for x in range(seg.shape[0]):
                    v = np.uint32(seg[x])
                    cseg[x] += v
                    r += v
            ring = runs[j, 3]
            if ring >= 0:
                acc[ring] += np.int64(r)
            t += np.int64(r)
            my += np.int64(r) * y
        mx = 0
        for x in range(nx):
            mx += np.int64(col[x]) * x
        out[TOTAL, i] = t
        out[SUM_X, i] = mx
        out[SUM_Y, i] = my
        for ring in range(n_rings):
            out[FIRST_RING + ring, i] = acc[ring]


@numba.njit(inline="always")
def _popcount(x):
    x = x - ((x >> np.uint64(1)) & np.uint64(0x5555555555555555))
    x = (x & np.uint64(0x3333333333333333)) + ((x >> np.uint64(2)) & np.uint64(0x3333333333333333))
    x = (x + (x >> np.uint64(4))) & np.uint64(0x0F0F0F0F0F0F0F0F)
    return np.int64((x * np.uint64(0x0101010101010101)) >> np.uint64(56))


@numba.njit(inline="always")
def _bswap64(x):
    x = ((x & np.uint64(0x00FF00FF00FF00FF)) << np.uint64(8)) | ((x >> np.uint64(8)) & np.uint64(0x00FF00FF00FF00FF))
    x = ((x & np.uint64(0x0000FFFF0000FFFF)) << np.uint64(16)) | ((x >> np.uint64(16)) & np.uint64(0x0000FFFF0000FFFF))
    return (x << np.uint64(32)) | (x >> np.uint64(32))


@numba.njit(**_JIT)
def frame_moments_bits(words, offset, ny, nx, word_rings, ring_masks, out):
    """Moments (and ring sums) of 1-bit patterns straight from packed 64-bit words.

    Pattern i is ``words[i, offset:offset + ny*nx/64]``: big-endian words whose bit k is
    pixel ``64·j + k`` of the row (Merlin raw 1-bit), read without unpacking.  Σ x of the
    set bits of a word is ``64·j·popcount(w) + Σ_b 2^b·popcount(w & M_b)``.
    ``word_rings (n_words + 1)`` indexes ``ring_masks (m, 2)`` = (ring, mask) pairs: the
    pixels of word n in each ring (empty without virtual detectors).
    """
    wpr = nx // 64
    m = (np.uint64(0xAAAAAAAAAAAAAAAA), np.uint64(0xCCCCCCCCCCCCCCCC), np.uint64(0xF0F0F0F0F0F0F0F0),
         np.uint64(0xFF00FF00FF00FF00), np.uint64(0xFFFF0000FFFF0000), np.uint64(0xFFFFFFFF00000000))
    for i in range(words.shape[0]):
        t = 0
        sx = 0
        sy = 0
        for y in range(ny):
            r = 0
            for j in range(wpr):
                n = y * wpr + j
                w = _bswap64(words[i, offset + n])
                if w == 0:
                    continue
                c = _popcount(w)
                r += c
                sx += 64 * j * c + _popcount(w & m[0]) + 2 * _popcount(w & m[1]) + 4 * _popcount(w & m[2]) \
                    + 8 * _popcount(w & m[3]) + 16 * _popcount(w & m[4]) + 32 * _popcount(w & m[5])
                for q in range(word_rings[n], word_rings[n + 1]):
                    out[FIRST_RING + ring_masks[q, 0], i] += _popcount(w & np.uint64(ring_masks[q, 1]))
            t += r
            sy += r * y
        out[TOTAL, i] = t
        out[SUM_X, i] = sx
        out[SUM_Y, i] = sy


@numba.njit(fastmath={"reassoc", "contract"}, **_JIT)
def frame_moments_float(frames, mask, use_mask, out):
    """As `frame_moments_int` for float patterns (float64 sums; NaN/inf propagate)."""
    k, ny, nx = frames.shape
    for i in range(k):
        t = 0.0
        my = 0.0
        mx = 0.0
        for y in range(ny):
            r = 0.0
            rx = 0.0
            if use_mask:
                for x in range(nx):
                    v = np.float64(frames[i, y, x]) * mask[y, x]
                    r += v
                    rx += v * x
            else:
                for x in range(nx):
                    v = np.float64(frames[i, y, x])
                    r += v
                    rx += v * x
            t += r
            mx += rx
            my += r * y
        out[TOTAL, i] = t
        out[SUM_X, i] = mx
        out[SUM_Y, i] = my


@numba.njit(fastmath=True, **_JIT)
def frame_ring_sums(frames, runs, n_rings, out):
    """Ring sums ``out[FIRST_RING + ring, i]`` from runs of pixels of one ring.

    ``runs (m, 4)`` int64 rows ``(y, x0, x1, ring)``: pixels ``x0 ≤ x < x1`` of row y
    belong to ``ring`` (-1: to none).  Contiguous runs keep the inner loop vectorised.
    """
    acc = np.zeros(n_rings)
    for i in range(frames.shape[0]):
        acc[:] = 0.0
        for j in range(runs.shape[0]):
            ring = runs[j, 3]
            if ring < 0:
                continue
            row = frames[i, runs[j, 0]]
            s = 0.0
            for x in range(runs[j, 1], runs[j, 2]):
                s += row[x]
            acc[ring] += s
        for ring in range(n_rings):
            out[FIRST_RING + ring, i] = acc[ring]


@numba.njit(inline="always")
def _centre_sums_add(state, p, centre_sums, sign):
    """Add (sign 1) or remove (sign -1) position p's uncentred COM in the running mean."""
    t = state[TOTAL, p]
    if t > 0:
        centre_sums[0] += sign * state[SUM_X, p] / t
        centre_sums[1] += sign * state[SUM_Y, p] / t
        centre_sums[2] += sign


@numba.njit(**_JIT)
def accumulate(positions, moments, valid, state, hits, stamp, generation, touched, centre_sums,
               frame_pass, last_pass):
    """Add chunk moments into the per-position state.

    ``moments (m, k)`` are added to ``state[:, positions[i]]`` where ``positions[i] ≥ 0``
    and ``valid[i]``; ``hits`` counts frames per position.  Every touched position is
    listed once in ``touched`` (deduplicated with ``stamp``/``generation``); the count is
    returned.  ``centre_sums`` = [Σ COM_x, Σ COM_y, n] of the uncentred per-position COM
    over non-empty positions is kept current.  When ``frame_pass`` is not empty (replace
    mode), a frame from a newer scan pass than ``last_pass[p]`` first clears position p,
    so each position shows its latest pass only.
    """
    m = moments.shape[0]
    replace = frame_pass.shape[0] > 0
    n_touched = 0
    for i in range(positions.shape[0]):
        p = positions[i]
        if p < 0 or not valid[i]:
            continue
        if stamp[p] != generation:
            stamp[p] = generation
            touched[n_touched] = p
            n_touched += 1
        _centre_sums_add(state, p, centre_sums, -1.0)
        if replace and frame_pass[i] != last_pass[p]:
            last_pass[p] = frame_pass[i]
            hits[p] = 0
            for j in range(m):
                state[j, p] = 0.0
        for j in range(m):
            state[j, p] += moments[j, i]
        _centre_sums_add(state, p, centre_sums, 1.0)
        hits[p] += 1
    return n_touched


@numba.njit(**_JIT)
def com_at(state, p, cy, cx, descan, scale, m00, m01, m10, m11):
    """Calibrated scan-frame COM (x, y) of position ``p``; (0, 0) when empty.

    The centre of position ``p`` is ``(cy + descan[0, p], cx + descan[1, p])``.
    """
    t = state[TOTAL, p]
    if not t > 0:
        return 0.0, 0.0
    u = state[SUM_X, p] / t - cx - descan[1, p]
    w = state[SUM_Y, p] / t - cy - descan[0, p]
    return scale * (m00 * u + m01 * w), scale * (m10 * u + m11 * w)


@numba.njit(fastmath=True, **_JIT)
def scatter_touched(touched, n_touched, state, cy, cx, descan, scale, m00, m01, m10, m11,
                    scattered_x, scattered_y, image, sx_kernel, sy_kernel):
    """Bring the image up to date for the touched positions (the real-time riCOM update).

    For each position the change of its calibrated COM since it was last scattered is
    multiplied by the scatter kernels (n×n, centred) and added into ``image`` around the
    position, clipped at the scan edges (no wrap-around).
    """
    sy, sx = image.shape
    n = sx_kernel.shape[0]
    r = n // 2
    for j in range(n_touched):
        p = touched[j]
        vx, vy = com_at(state, p, cy, cx, descan, scale, m00, m01, m10, m11)
        dx = vx - scattered_x[p]
        dy = vy - scattered_y[p]
        scattered_x[p] = vx
        scattered_y[p] = vy
        if dx == 0.0 and dy == 0.0:
            continue
        iy = p // sx
        ix = p - iy * sx
        y0 = max(0, iy - r)
        y1 = min(sy, iy + r + 1)
        x0 = max(0, ix - r)
        x1 = min(sx, ix + r + 1)
        kx0 = x0 - (ix - r)
        w = x1 - x0
        for yy in range(y0, y1):
            ky = yy - (iy - r)
            row = image[yy, x0:x1]  # row slices let LLVM vectorise the update
            kxr = sx_kernel[ky, kx0:kx0 + w]
            kyr = sy_kernel[ky, kx0:kx0 + w]
            for t in range(w):
                row[t] += dx * kxr[t] + dy * kyr[t]


@numba.njit(**_JIT)
def com_maps(state, cy, cx, descan, scale, m00, m01, m10, m11, out_x, out_y):
    """Calibrated COM of every position into flat ``out_x``, ``out_y``."""
    for p in range(state.shape[1]):
        out_x[p], out_y[p] = com_at(state, p, cy, cx, descan, scale, m00, m01, m10, m11)


@numba.njit(**_JIT)
def _touch_all(positions, state, hits, stamp, generation, touched, centre_sums, count_visits):
    """List every position of the chunk once in ``touched`` and take its current COM out
    of ``centre_sums`` (put back by `accumulate_events` after the update).

    Returns (touched count, new patterns: positions first seen, with ``count_visits``)."""
    n_touched = n_new = 0
    last = -1
    for i in range(positions.shape[0]):
        p = positions[i]
        if p == last or p < 0:
            continue
        last = p
        if stamp[p] == generation:
            continue
        stamp[p] = generation
        touched[n_touched] = p
        n_touched += 1
        _centre_sums_add(state, p, centre_sums, -1.0)
        if count_visits and hits[p] == 0:
            hits[p] = 1
            n_new += 1
    return n_touched, n_new


@numba.njit(**_JIT)
def _events_lut(positions, x, y, ring_lut, mask_lut, use_mask, n_rings, state, counters):
    """Integer coordinates: ring and mask from per-pixel look-ups; the moments of a run
    of events at one position are summed in registers first."""
    ny, nx = ring_lut.shape
    n_invalid = n_added = 0
    last = -1
    ct = sx = sy = 0.0
    for i in range(positions.shape[0]):
        p = positions[i]
        if p != last:
            if last >= 0:
                state[TOTAL, last] += ct
                state[SUM_X, last] += sx
                state[SUM_Y, last] += sy
            ct = sx = sy = 0.0
            last = p
        if p < 0:
            continue
        ix = np.int64(x[i])
        iy = np.int64(y[i])
        if ix < 0 or iy < 0 or ix >= nx or iy >= ny:
            n_invalid += 1
            continue
        n_added += 1
        w = np.float64(mask_lut[iy, ix]) if use_mask else 1.0
        ct += w
        sx += w * ix
        sy += w * iy
        if n_rings > 0:
            k = np.int64(ring_lut[iy, ix])
            state[FIRST_RING + min(max(k, 0), n_rings - 1), p] += np.float64((k >= 0) & (k < n_rings))
    if last >= 0:
        state[TOTAL, last] += ct
        state[SUM_X, last] += sx
        state[SUM_Y, last] += sy
    counters[0], counters[3] = n_invalid, n_added


@numba.njit(**_JIT)
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


@numba.njit(**_JIT)
def accumulate_events(positions, x, y, ring_lut, mask_lut, use_lut, bounds2, cy, cx, mask_lo2, mask_hi2,
                      use_mask, state, hits, stamp, generation, touched, centre_sums, done, count_visits,
                      counters):
    """Add single-electron events into the per-position state (the event form of `accumulate`).

    Event ``i`` at flat position ``positions[i]`` (``-1`` skips it) and detector column/row
    ``x[i]``, ``y[i]`` (any number type; sub-pixel positions are kept, never truncated) adds
    1 to TOTAL, ``x`` to SUM_X and ``y`` to SUM_Y, and 1 to ring ``k`` where
    ``bounds2[k] ≤ r² < bounds2[k + 1]`` (``r`` from the centre ``(cy, cx)``; ``bounds2``
    are the squared ring boundaries, empty for no rings).  With ``use_mask`` only events
    with ``mask_lo2 ≤ r² < mask_hi2`` enter the moments (the rings take every event).
    With ``use_lut`` (integer coordinates) ring and mask come from the per-pixel look-ups
    ``ring_lut`` (−1: no ring) and ``mask_lut`` instead — the same answer at pixel centres;
    events off the detector are then skipped as invalid.

    Every position in ``done`` (its dwell ended) counts once in ``hits``; with
    ``count_visits`` a position counts the first time it receives events instead.
    ``touched``/``stamp``/``generation`` and ``centre_sums`` work as in `accumulate`.
    ``counters`` receives [events skipped as invalid, patterns counted, empty patterns,
    events added].  Returns the number of touched positions.
    """
    n_touched, n_new = _touch_all(positions, state, hits, stamp, generation, touched, centre_sums, count_visits)
    if use_lut:
        _events_lut(positions, x, y, ring_lut, mask_lut, use_mask, bounds2.shape[0] - 1, state, counters)
    else:
        _events_radius(positions, x, y, bounds2, cy, cx, mask_lo2, mask_hi2, use_mask, state, counters)
    counters[1] = n_new
    for j in range(n_touched):
        p = touched[j]
        _centre_sums_add(state, p, centre_sums, 1.0)
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
