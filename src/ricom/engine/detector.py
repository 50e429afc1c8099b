"""The detector plane: per-pattern reductions and the look-ups they use.

Owns how a chunk of patterns is reduced to per-pattern moments (dispatching to the
compiled kernels in `ricom.engine.compiled`), and the detector-plane geometry behind it: radius
maps, runs of pixels of one virtual-detector ring, the mean pattern and the
bright-field disc radius.  The engine (`ricom.engine.reconstruction`) calls these; nothing here holds
state.
"""
from __future__ import annotations

import dataclasses
import math
import weakref

import numpy as np

from ricom.core.chunks import PackedFrames
from ricom.engine import compiled as C


def take_frames(frames, a: int, b: int):
    """Frames a…b-1 of an array or of packed frames (a view, no copy)."""
    if isinstance(frames, PackedFrames):
        return dataclasses.replace(frames, rows=frames.rows[a:b])
    return frames[a:b]


def frame_moments(frames, lookups, moments) -> None:
    """Totals, first moments and ring sums of a chunk into ``moments`` (one pass where possible).

    ``lookups`` (`ricom.engine.lookups.DetectorLookups`) gives the COM mask and the ring
    runs; ``moments`` has `DetectorLookups.n_rows` rows.  Picks the compiled kernel for the
    data: packed or plain 8/16-bit (fast path, byte-swapped in place if big-endian), other
    integers, or floats.
    """
    if not moments.flags.c_contiguous:  # a worker's share: the kernels' one layout, loaded before the clock
        part = np.zeros(moments.shape)
        frame_moments(frames, lookups, part)
        moments[...] = part
        return
    mask, runs, n_rings = lookups.com_mask, lookups.ring_runs, lookups.n_rings
    k = frames.shape[0]
    ny, nx = frames.shape[1:]
    if isinstance(frames, PackedFrames) and frames.bits == 1:
        word_rings, ring_masks = bit_ring_masks(runs, nx) if runs is not None else \
            (np.zeros(ny * nx // 64 + 1, np.int64), np.zeros((0, 2), np.int64))
        C.frame_moments_bits(frames.rows, frames.offset, ny, nx, word_rings, ring_masks, moments)
        return
    if isinstance(frames, PackedFrames):
        _moments_u16(frames.rows, frames.offset, ny, nx, frames.big_endian and frames.dtype.itemsize == 2,
                     block_rows(frames.dtype, frames.max_value), runs, n_rings, moments)
        return
    if mask is None and frames.dtype.kind == "u" and frames.dtype.itemsize <= 2:
        swap = not frames.dtype.isnative
        native = frames.view(frames.dtype.newbyteorder("=")) if swap else frames
        rows = np.ascontiguousarray(native).reshape(k, ny * nx)
        _moments_u16(rows, 0, ny, nx, swap and frames.dtype.itemsize == 2, block_rows(frames.dtype, 0),
                     runs, n_rings, moments)
        return
    if runs is not None:
        C.frame_ring_sums(frames, runs, n_rings, moments)
    sums = np.float64 if frames.dtype.kind == "f" else np.int64  # integer patterns: exact sums
    m = mask.astype(sums) if mask is not None else np.ones((1, 1), sums)
    C.frame_moments_weighted(frames, m, mask is not None, moments)


ASSUMED_MAX_16BIT = 4095
"""Values assumed for 16-bit patterns of unknown depth (12-bit counters are the common
case); larger ones cost one block summed twice per chunk, never a wrong sum."""


def block_rows(dtype, max_value: int = 0) -> int:
    """Rows whose column sums fit 16 bits, for pixels up to ``max_value`` (0: unknown,
    ``ASSUMED_MAX_16BIT`` for 16-bit and 255 for 8-bit patterns).

    Examples
    --------
    >>> block_rows(np.uint16, 4095), block_rows(np.uint8), block_rows(np.uint16, 63), block_rows(np.uint16, 65535)
    (16, 257, 1040, 1)
    """
    top = int(max_value) or (255 if np.dtype(dtype).itemsize == 1 else ASSUMED_MAX_16BIT)
    return max(1, 65535 // max(1, top))


def _moments_u16(rows, offset, ny, nx, swap, block, runs, n_rings, moments) -> None:
    if n_rings:
        masks, mask_ring, bands, derived = ring_masks(runs, n_rings, (ny, nx), rows.dtype)
        C.frame_moments_rings_u16(rows, offset, ny, nx, swap, block, masks.reshape(masks.shape[0], ny * nx), mask_ring,
                                  bands, derived,
                                  n_rings, moments)
    else:
        C.frame_moments_u16(rows, offset, ny, nx, swap, block, moments)


_RING_MASKS: dict = {}


def ring_masks(runs: np.ndarray, n_rings: int, shape, dtype) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """Pixel masks of the rings for `ricom.engine.compiled.frame_moments_rings_u16`.

    The ring with the most pixels gets no mask (its sum is the total minus the others'),
    nor, if it has more, do the pixels in no ring; the others (and those pixels, if they
    have a mask) get one each, all bits set on their pixels.  The kernel sums two masks
    per pass over the rows that hold either, and the last one alone if their count is odd,
    so the masks are ordered by the rows they span, tallest first: each pass then covers
    rows of similar extent, and the shortest mask is the one summed alone.  Returns
    ``masks (m, ny, nx)`` of ``dtype``, the ring of each mask (−1: no ring), ``bands
    (⌈m/2⌉, 2)``: the rows ``y0:y1`` holding the pixels of masks ``2j`` and ``2j+1`` (``0,
    0`` for none), and the derived ring (−1 if the pixels in no ring are the ones left
    without a mask).  Cached per ``runs`` array.
    """
    key = (id(runs), np.dtype(dtype).str)
    hit = _RING_MASKS.get(key)
    if hit is not None and hit[0] is runs:
        return hit[1]
    ring = np.full(shape, -1, np.int64)
    for y, x0, x1, r in runs.tolist():
        ring[y, x0:x1] = r
    slot = np.where(ring < 0, n_rings, ring)  # slot n_rings: the pixels in no ring
    counts = np.bincount(slot.ravel(), minlength=n_rings + 1)
    skip = int(np.argmax(counts))
    kept = [s for s in range(n_rings + 1) if s != skip and counts[s]]
    extent = {s: _row_extent(slot == s) for s in kept}
    kept.sort(key=lambda s: extent[s][0] - extent[s][1])  # tallest first
    masks = np.zeros((len(kept), *shape), dtype)
    for j, s in enumerate(kept):
        masks[j][slot == s] = np.iinfo(dtype).max
    mask_ring = np.array([-1 if s == n_rings else s for s in kept], np.int64)
    result = (masks, mask_ring, pair_bands([extent[s] for s in kept]), skip if skip < n_rings else -1)
    if len(_RING_MASKS) > 8:
        _RING_MASKS.clear()
    _RING_MASKS[key] = (runs, result)
    return result


def _row_extent(where: np.ndarray) -> tuple[int, int]:
    """Rows ``y0:y1`` from the first to the last row where ``where`` holds (0, 0 if nowhere)."""
    rows = np.flatnonzero(where.any(axis=1))
    return (int(rows[0]), int(rows[-1]) + 1) if len(rows) else (0, 0)


def pair_bands(extents) -> np.ndarray:
    """``(⌈m/2⌉, 2)`` rows ``y0:y1`` covering the row extents of masks ``2j`` and ``2j+1``
    (mask ``2j`` alone when it is the last; an empty extent ``(0, 0)`` adds no rows).

    Examples
    --------
    >>> pair_bands([(1, 2), (3, 4), (5, 6)]).tolist()
    [[1, 4], [5, 6]]
    >>> pair_bands([(0, 0), (2, 3)]).tolist()
    [[2, 3]]
    """
    bands = np.zeros(((len(extents) + 1) // 2, 2), np.int64)
    for j in range(len(bands)):
        pair = [e for e in extents[2 * j:2 * j + 2] if e[1] > e[0]]
        if pair:
            bands[j] = min(e[0] for e in pair), max(e[1] for e in pair)
    return bands


_BIT_MASKS: dict = {}


def bit_ring_masks(runs: np.ndarray, nx: int) -> tuple[np.ndarray, np.ndarray]:
    """Per 64-pixel word, the (ring, bit mask) pairs of its pixels: for packed 1-bit frames.

    Returns ``word_rings`` (start index of each word's pairs, plus the end) and
    ``pairs (m, 2)`` int64 (the mask's bits stored as int64).  Cached per ``runs`` array.
    """
    hit = _BIT_MASKS.get(id(runs))
    if hit is not None and hit[0] is runs:
        return hit[1]
    wpr = nx // 64
    n_words = int(runs[:, 0].max() + 1) * wpr
    per_word: list[dict] = [{} for _ in range(n_words)]
    for y, x0, x1, ring in runs.tolist():
        if ring < 0:
            continue
        for j in range(x0 // 64, (x1 - 1) // 64 + 1):
            a, b = max(x0, 64 * j) - 64 * j, min(x1, 64 * j + 64) - 64 * j
            mask = ((1 << b) - 1) ^ ((1 << a) - 1)
            d = per_word[y * wpr + j]
            d[ring] = d.get(ring, 0) | mask
    starts = np.zeros(n_words + 1, np.int64)
    pairs = []
    for n, d in enumerate(per_word):
        pairs.extend((ring, mask - (1 << 64) if mask >= 1 << 63 else mask) for ring, mask in d.items())
        starts[n + 1] = len(pairs)
    result = (starts, np.array(pairs, np.int64).reshape(-1, 2))
    _BIT_MASKS.clear()
    _BIT_MASKS[id(runs)] = (runs, result)
    return result


_MEAN: list = [None]
"""(weak reference to the last chunk `mean_pattern` averaged, sample, its mean), used
once: centre and bright-field radius are both estimated from the first chunk."""


def mean_pattern(frames: np.ndarray, sample: int = 64) -> np.ndarray:
    """Mean of up to ``sample`` patterns spread over ``frames``, NaN patterns left out."""
    last = _MEAN[0]
    if last is not None and last[0]() is frames and last[1] == sample:
        _MEAN[0] = None  # once: the next call may see the same array with new contents
        return last[2]
    mean = _mean_pattern(frames, sample)
    try:
        _MEAN[0] = (weakref.ref(frames), sample, mean)  # never keeps a chunk alive
    except TypeError:
        _MEAN[0] = None
    return mean


def _mean_pattern(frames, sample: int) -> np.ndarray:
    n = frames.shape[0]
    picks = np.unique(np.linspace(0, n - 1, min(n, sample)).astype(np.int64))
    rows = _rows_in_place(frames)
    if rows is not None:  # summed where they lie: no copy of the patterns (fresh pages cost more than the sum)
        flat, offset, swap = rows
        ny, nx = frames.shape[1:]
        total = np.zeros(ny * nx, np.int64)
        C.sum_patterns(flat, offset, picks, ny * nx, swap, total)
        return (total / len(picks)).reshape(ny, nx)
    pick = frames[picks]
    pick = pick.astype(pick.dtype.newbyteorder("="), copy=False) if not pick.dtype.isnative else pick
    if pick.dtype.kind == "f":
        good = np.isfinite(pick).all(axis=(1, 2))
        pick = pick[good] if good.any() else np.zeros_like(pick[:1])
    return pick.mean(axis=0, dtype=np.float64)


def _rows_in_place(frames) -> tuple[np.ndarray, int, bool] | None:
    """``(rows, offset, swap_bytes)`` for `ricom.engine.compiled.sum_patterns` when the
    patterns are 8/16-bit unsigned and can be read where they lie (packed file frames, or a
    C-contiguous array); None otherwise."""
    if isinstance(frames, PackedFrames):
        if frames.bits:
            return None
        return frames.rows, frames.offset, frames.big_endian and frames.dtype.itemsize == 2
    if not (isinstance(frames, np.ndarray) and frames.ndim == 3 and frames.dtype.kind == "u"
            and frames.dtype.itemsize <= 2 and frames.flags.c_contiguous):
        return None
    swap = not frames.dtype.isnative
    native = frames.view(frames.dtype.newbyteorder("=")) if swap else frames
    return native.reshape(frames.shape[0], -1), 0, swap and frames.dtype.itemsize == 2


def pattern_centre_of_mass(pattern: np.ndarray) -> tuple[float, float] | None:
    """(row, column) centre of mass of one pattern in detector pixels; None if it has no counts.

    Examples
    --------
    >>> p = np.zeros((5, 5)); p[1, 3] = 2.0
    >>> pattern_centre_of_mass(p)
    (1.0, 3.0)
    """
    p = np.asarray(pattern, np.float64)
    total = p.sum()
    if not total > 0:
        return None
    return float(p.sum(axis=1) @ np.arange(p.shape[0]) / total), float(p.sum(axis=0) @ np.arange(p.shape[1]) / total)


def ring_runs(ring_of_pixel: np.ndarray) -> np.ndarray:
    """Runs ``(y, x0, x1, ring)`` of constant ring index covering every pixel, row by row.

    Examples
    --------
    >>> ring_runs(np.array([[0, 0, 1], [-1, -1, -1]])).tolist()
    [[0, 0, 2, 0], [0, 2, 3, 1], [1, 0, 3, -1]]
    """
    ring = np.asarray(ring_of_pixel)
    ny, nx = ring.shape
    starts = np.ones((ny, nx), bool)
    starts[:, 1:] = ring[:, 1:] != ring[:, :-1]
    ys, xs = np.nonzero(starts)
    flat = ys * nx + xs
    stops = np.append(flat[1:], ny * nx)  # the next run's start, or the end of the row
    stops = np.minimum(stops, (ys + 1) * nx) - ys * nx
    return np.ascontiguousarray(np.stack([ys, xs, stops, ring[ys, xs]], axis=1).astype(np.int64))


def bright_field_radius(frames: np.ndarray) -> float:
    """Radius (px) of the bright-field disc: area above half the maximum of the mean pattern."""
    mean = mean_pattern(frames)
    top = np.nanmax(mean)
    if not top > 0:
        return 1.0
    return max(1.0, math.sqrt(float((mean > 0.5 * top).sum()) / math.pi))


def event_histogram(y: np.ndarray, x: np.ndarray, detector_shape) -> np.ndarray:
    """Counts per detector pixel of events at (sub-pixel) rows ``y`` and columns ``x``."""
    dy, dx = detector_shape
    iy = np.clip(np.rint(y), 0, dy - 1).astype(np.int64)
    ix = np.clip(np.rint(x), 0, dx - 1).astype(np.int64)
    return np.bincount(iy * dx + ix, minlength=dy * dx).reshape(dy, dx).astype(np.float64)


def radius_map(shape, centre) -> np.ndarray:
    yy, xx = np.indices(shape, dtype=np.float64)
    return np.hypot(yy - centre[0], xx - centre[1])
