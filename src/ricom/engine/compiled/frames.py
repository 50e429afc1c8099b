"""Per-pattern reductions of frame chunks: total, first moments and ring sums.

One kernel per kind of input: 8/16-bit unsigned (plain or packed in a file buffer,
either byte order; column sums in 16-bit lanes over row blocks as deep as the counter
depth allows, checked exactly; ring sums under masks in one loop over the rows that hold
them), raw 1-bit packed words, other integers and floats
(optionally masked).  ``out[row, i]`` receives the rows of `ricom.engine.compiled`
(TOTAL, SUM_X, SUM_Y, FIRST_RING…) of pattern i.  Also the sum of sampled 8/16-bit
patterns read in place (a chunk's mean pattern, `sum_patterns`).
"""
from __future__ import annotations

import numba
import numpy as np

from ricom.engine.compiled._common import FIRST_RING, JIT, SUM_X, SUM_Y, TOTAL, bswap, ctpop


@numba.njit(fastmath={"reassoc", "contract"}, **JIT)
def frame_moments_weighted(frames, mask, use_mask, out):
    """Total and first moments of any integer or float patterns, optionally weighted.

    ``frames (k, ny, nx)``; ``mask (ny, nx)`` weights used when ``use_mask`` (any 2D array
    of the sums' type otherwise).  Sums are kept in the mask's type: int64 (exact) for
    integer patterns, float64 for float ones (NaN and inf propagate).  ``out (3 + r, k)``
    receives rows TOTAL, SUM_X, SUM_Y.
    """
    k, ny, nx = frames.shape
    zero = mask[0, 0] - mask[0, 0]
    for i in range(k):
        t = zero
        my = zero
        mx = zero
        for y in range(ny):
            r = zero
            rx = zero
            if use_mask:
                for x in range(nx):
                    v = frames[i, y, x] * mask[y, x]
                    r += v
                    rx += v * x
            else:
                for x in range(nx):
                    v = zero + frames[i, y, x]
                    r += v
                    rx += v * x
            t += r
            mx += rx
            my += r * y
        out[TOTAL, i] = t
        out[SUM_X, i] = mx
        out[SUM_Y, i] = my


@numba.njit(inline="always", fastmath=True)
def _add_row(seg, col, swap_bytes):
    """Add one row into the column sums ``col`` (16- or 32-bit lanes); its sum back.

    The row sum is kept in 32 bits (exact: a row of 16-bit values stays far below 2³²).
    Slices indexed from 0 keep the loop vectorised.
    """
    r = np.uint32(0)
    if swap_bytes:
        for x in range(seg.shape[0]):
            v = bswap(seg[x])
            col[x] += v
            r = np.uint32(r + np.uint32(v))
    else:
        for x in range(seg.shape[0]):
            v = seg[x]
            col[x] += v
            r = np.uint32(r + np.uint32(v))
    return np.int64(r)


@numba.njit(inline="always", fastmath=True)
def _masked_sums(seg, m0, m1, swap_bytes):
    """Sums of the pixels ``seg`` under two masks (32-bit: at most `MASKED_PIECE` of them)."""
    a = np.uint32(0)
    b = np.uint32(0)
    for x in range(seg.shape[0]):
        v = bswap(seg[x]) if swap_bytes else seg[x]
        a = np.uint32(a + np.uint32(v & m0[x]))
        b = np.uint32(b + np.uint32(v & m1[x]))
    return np.int64(a), np.int64(b)


@numba.njit(inline="always", fastmath=True)
def _masked_sum(seg, m0, swap_bytes):
    """Sum of the pixels ``seg`` under one mask (32-bit: at most `MASKED_PIECE` of them)."""
    a = np.uint32(0)
    for x in range(seg.shape[0]):
        v = bswap(seg[x]) if swap_bytes else seg[x]
        a = np.uint32(a + np.uint32(v & m0[x]))
    return np.int64(a)


@numba.njit(inline="always", fastmath=True)
def _close_block(img, y0, y1, nx, swap_bytes, col16, col32, block_total):
    """Add a block's 16-bit column sums into ``col32``; False if one of them wrapped.

    Each wrap of a 16-bit sum loses exactly 2¹⁶, so the 16-bit sums add up to the block's
    exact total (the 32-bit row sums) only if none wrapped; then ``col32`` gets them,
    otherwise the block's columns are summed again in 32 bits (exact for any values).
    """
    s = 0
    for x in range(nx):
        s += np.int64(col16[x])
    if s == block_total:
        for x in range(nx):
            col32[x] += np.uint32(col16[x])
        return True
    for y in range(y0, y1):
        _add_row(img[y * nx:(y + 1) * nx], col32, swap_bytes)
    return False


@numba.njit(inline="always", fastmath=True)
def _frame_sums(img, ny, nx, swap_bytes, block, col16, col32):
    """Total, Σ I·x and Σ I·y of one pattern ``img`` (flat rows), and the block depth to go on
    with (0 once a block wrapped: 32-bit sums from there on)."""
    col32[:] = 0
    t = 0
    my = 0
    y0 = 0
    while y0 < ny:
        if block == 0:  # 32-bit sums
            r = _add_row(img[y0 * nx:(y0 + 1) * nx], col32, swap_bytes)
            t += r
            my += r * y0
            y0 += 1
            continue
        y1 = min(ny, y0 + block)
        col16[:] = 0
        tb = 0
        for y in range(y0, y1):
            r = _add_row(img[y * nx:(y + 1) * nx], col16, swap_bytes)
            tb += r
            my += r * y
        t += tb
        ok = _close_block(img, y0, y1, nx, swap_bytes, col16, col32, tb)
        y0 = y1
        if not ok:
            block = 0  # values above the depth assumed: 32-bit sums from here on
    return t, _first_moment(col32), my, block


@numba.njit(fastmath=True, **JIT)
def frame_moments_u16(rows, offset, ny, nx, swap_bytes, block_rows, out):
    """Moments of unmasked 8/16-bit unsigned patterns in one read.

    Pattern i is ``rows[i, offset:offset + ny*nx]`` (rows C-contiguous: a plain
    ``(k, ny*nx)`` view, or a file's frames with their headers).  ``swap_bytes`` reads
    big-endian 16-bit data in place.  With ``block_rows`` ≥ 2, column sums run in 16-bit
    lanes over blocks of that many rows (twice the pixels per vector of 32-bit sums, one
    widening per block; 16 rows of 12-bit values sum to < 2¹⁶), checked exactly at the end
    of each block (`_close_block`): a block whose sums wrapped is summed again in 32 bits
    and the rest of the chunk runs in 32 bits, so the result is exact for any values.
    """
    col16 = np.zeros(nx, np.uint16)
    col32 = np.zeros(nx, np.uint32)
    block = block_rows if block_rows >= 2 else 0
    for i in range(rows.shape[0]):
        t, sx, sy, block = _frame_sums(rows[i, offset:offset + ny * nx], ny, nx, swap_bytes, block, col16, col32)
        out[TOTAL, i] = t
        out[SUM_X, i] = sx
        out[SUM_Y, i] = sy


MASKED_PIECE = 65536
"""Pixels summed under a mask per call of `_masked_sums` at most: their sum stays below 2³²
(exact in 32-bit lanes) for any 16-bit values."""


@numba.njit(fastmath=True, **JIT)
def frame_moments_rings_u16(rows, offset, ny, nx, swap_bytes, block_rows, masks, mask_ring, bands,
                            derived_ring, n_rings, out):
    """As `frame_moments_u16`, with the ring sums of the virtual detectors.

    ``masks (m, ny*nx)`` (the rows' dtype, all bits set on the pixels of one ring, 0
    elsewhere) are summed under two at a time (the last alone when m is odd), after the
    pattern's moments, in one long loop over the rows ``bands[j // 2] = (y0, y1)`` that
    hold masks j and j+1 (the pattern is still in the cache; one loop over a band costs
    far less than a masked pass per row, whose per-row reductions dominate short rows).
    ``mask_ring[j]`` is mask j's ring (−1: the pixels in no ring).  The ring
    ``derived_ring`` (the one with the most pixels, −1 for none; see
    `ricom.engine.detector.ring_masks`) has no mask: it is the total minus the others.
    """
    col16 = np.zeros(nx, np.uint16)
    col32 = np.zeros(nx, np.uint32)
    acc = np.zeros(max(masks.shape[0], 1), np.int64)
    block = block_rows if block_rows >= 2 else 0
    for i in range(rows.shape[0]):
        img = rows[i, offset:offset + ny * nx]
        t, sx, sy, block = _frame_sums(img, ny, nx, swap_bytes, block, col16, col32)
        acc[:] = 0
        for j in range(0, masks.shape[0], 2):
            for p0 in range(bands[j // 2, 0] * nx, bands[j // 2, 1] * nx, MASKED_PIECE):
                p1 = min(p0 + MASKED_PIECE, bands[j // 2, 1] * nx)
                if j + 1 < masks.shape[0]:
                    a, b = _masked_sums(img[p0:p1], masks[j, p0:p1], masks[j + 1, p0:p1], swap_bytes)
                    acc[j] += a
                    acc[j + 1] += b
                else:
                    acc[j] += _masked_sum(img[p0:p1], masks[j, p0:p1], swap_bytes)
        out[TOTAL, i] = t
        out[SUM_X, i] = sx
        out[SUM_Y, i] = sy
        rest = t
        for j in range(masks.shape[0]):
            rest -= acc[j]
            if mask_ring[j] >= 0:
                out[FIRST_RING + mask_ring[j], i] = acc[j]
        if 0 <= derived_ring < n_rings:
            out[FIRST_RING + derived_ring, i] = rest


@numba.njit(inline="always")
def _first_moment(col):
    mx = 0
    for x in range(col.shape[0]):
        mx += np.int64(col[x]) * x
    return mx


@numba.njit(fastmath=True, **JIT)
def frame_moments_bits(words, offset, ny, nx, word_rings, ring_masks, out):
    """Moments (and ring sums) of 1-bit patterns straight from packed 64-bit words.

    Pattern i is ``words[i, offset:offset + ny*nx/64]``: big-endian words whose bit k (after
    the byte swap) is pixel ``64·j + k`` of the row (Merlin raw 1-bit), read without
    unpacking or swapping.  Σ x of the set bits of word j is
    ``64·j·popcount(w) + Σ_b 2^b·popcount(w & M_b)`` with ``M_b`` the bits whose index has
    bit b set (byte-swapped here instead of the data); the loop over a pattern's words
    vectorises with hardware popcounts.  ``word_rings (n_words + 1)`` indexes
    ``ring_masks (m, 2)`` = (ring, mask) pairs: the pixels of word n in each ring (bit k
    = pixel 64·j + k as after the swap; empty without virtual detectors).
    """
    wpr = nx // 64
    nw = ny * wpr
    m0 = bswap(np.uint64(0xAAAAAAAAAAAAAAAA))
    m1 = bswap(np.uint64(0xCCCCCCCCCCCCCCCC))
    m2 = bswap(np.uint64(0xF0F0F0F0F0F0F0F0))
    m3 = bswap(np.uint64(0xFF00FF00FF00FF00))
    m4 = bswap(np.uint64(0xFFFF0000FFFF0000))
    m5 = bswap(np.uint64(0xFFFFFFFF00000000))
    word_x = np.empty(nw, np.int64)  # x of each word's first pixel, and its row
    word_y = np.empty(nw, np.int64)
    for n in range(nw):
        word_y[n] = n // wpr
        word_x[n] = 64 * (n - word_y[n] * wpr)
    with_rings = ring_masks.shape[0] > 0
    for i in range(words.shape[0]):
        fr = words[i, offset:offset + nw]
        t = 0
        sx = 0
        sy = 0
        for n in range(nw):
            w = fr[n]
            c = np.int64(ctpop(w))
            t += c
            sy += c * word_y[n]
            sx += c * word_x[n] + np.int64(ctpop(w & m0)) + 2 * np.int64(ctpop(w & m1)) \
                + 4 * np.int64(ctpop(w & m2)) + 8 * np.int64(ctpop(w & m3)) + 16 * np.int64(ctpop(w & m4)) \
                + 32 * np.int64(ctpop(w & m5))
        out[TOTAL, i] = t
        out[SUM_X, i] = sx
        out[SUM_Y, i] = sy
        if with_rings:
            for n in range(nw):
                for q in range(word_rings[n], word_rings[n + 1]):
                    out[FIRST_RING + ring_masks[q, 0], i] += np.int64(
                        ctpop(fr[n] & bswap(np.uint64(ring_masks[q, 1]))))


@numba.njit(fastmath=True, **JIT)
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


@numba.njit(**JIT)
def sum_patterns(rows, offset, picks, n_pixels, swap_bytes, out):
    """Sum the patterns ``rows[i, offset:offset + n_pixels]`` for i in ``picks`` into ``out``
    (int64, exact), reading 8/16-bit pixels in place (byte-swapped when ``swap_bytes``):
    the mean pattern of a chunk without copying its patterns out first."""
    for i in picks:
        img = rows[i, offset:offset + n_pixels]
        if swap_bytes:
            for x in range(n_pixels):
                out[x] += np.int64(bswap(img[x]))
        else:
            for x in range(n_pixels):
                out[x] += np.int64(img[x])
