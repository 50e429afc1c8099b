"""The compiled hot loops of tcBF (numba, ``nogil``, cached): binning the bright-field
pixels of a chunk of patterns, and splatting those values into the shifted-sum image.

Owns only loops over whole chunks; nothing here allocates per pattern or calls back into
Python.  `ricom.phase.tcbf` decides what is binned, where it goes and when.
"""
from __future__ import annotations

import math

import numba
import numpy as np

from ricom.core.chunks import PackedFrames


@numba.njit(nogil=True, cache=True)
def _bin_bands(rows, offset, det_x, b, row0, col0, n_in_band, bin0, tmp, out):
    """Sum b×b bins band by band: the b detector rows of a band are added column-wise
    into ``tmp`` (contiguous reads that vectorise), then each run of b columns of ``tmp``
    into its bin: ``out[i, bin0[g] + q]`` for the q-th bin of band g.

    Each pattern's rows from the first band to the last are first read once per 64
    bytes, a streaming read that brings them into the cache: the bands' short row
    segments would otherwise wait for memory one by one (2× slower on 256² patterns).
    Returns a count from that read, so that it is not optimised away.
    """
    lo = offset + row0[0] * det_x
    hi = offset + (row0[-1] + b) * det_x
    step = max(1, 64 // rows.itemsize)
    touched = 0
    for i in range(rows.shape[0]):
        row = rows[i]
        for t in range(lo, hi, step):
            touched += row[t] > 0
        for g in range(row0.shape[0]):
            m = n_in_band[g] * b
            for t in range(m):
                tmp[t] = 0
            for yy in range(b):
                base = offset + (row0[g] + yy) * det_x + col0[g]
                seg = row[base:base + m]
                for t in range(m):
                    tmp[t] += seg[t]
            for q in range(n_in_band[g]):
                acc = tmp[q * b]
                for t in range(q * b + 1, (q + 1) * b):
                    acc += tmp[t]
                out[i, bin0[g] + q] += acc
    return touched


def bin_patterns(frames, bands: tuple, n_bins: int) -> np.ndarray:
    """Sum the pixels of every b×b bin of every pattern.

    Parameters
    ----------
    frames : ndarray (k, det_y, det_x) or PackedFrames
        The chunk's patterns; packed little-endian frames are read in place.
    bands : tuple
        ``(det_x, b, row0, col0, n_in_band, bin0)``: the detector width, the bin side, and
        per band of bins in one row of bins, its top-left pixel, how many bins it holds
        and the first one's index (`ricom.phase._tcbf_layout.BinLayout.bands`); the
        bins of a band are consecutive, side by side.
    n_bins : int

    Returns
    -------
    ndarray of float64, shape (k, n_bins)

    Examples
    --------
    >>> f = np.arange(32, dtype=np.uint16).reshape(2, 4, 4)
    >>> one_band = (4, 2, np.array([1]), np.array([0]), np.array([2]), np.array([0]))
    >>> bin_patterns(f, one_band, 2).tolist()      # rows 1-2: columns 0-1 and 2-3
    [[26.0, 34.0], [90.0, 98.0]]
    """
    if isinstance(frames, PackedFrames) and frames.bits == 0 and not frames.big_endian:
        rows, offset = frames.rows, int(frames.offset)  # read in place
    else:
        arr = frames.unpack() if isinstance(frames, PackedFrames) else np.asarray(frames)
        rows, offset = np.ascontiguousarray(arr.reshape(arr.shape[0], -1)), 0
        if rows.dtype == np.bool_:
            rows = rows.view(np.uint8)
    det_x, b, row0, col0, n_in_band, bin0 = bands
    tmp = np.zeros(int(n_in_band.max()) * b, np.int64 if rows.dtype.kind in "ui" else np.float64)
    out = np.zeros((rows.shape[0], n_bins))
    _bin_bands(rows, offset, det_x, b, row0, col0, n_in_band, bin0, tmp, out)
    return out


@numba.njit(nogil=True, cache=True)
def accumulate(positions, values, store, hits):
    """``store[p] += values[i]`` and ``hits[p] += 1`` for every pattern ``i`` at position
    ``p = positions[i]`` ≥ 0; returns how many positions got their first pattern."""
    new = 0
    for i in range(positions.shape[0]):
        p = positions[i]
        if p < 0:
            continue
        if hits[p] == 0:
            new += 1
        hits[p] += 1
        for j in range(values.shape[1]):
            store[p, j] += values[i, j]
    return new


@numba.njit(nogil=True, cache=True)
def splat(positions, values, shift_y, shift_x, scan_x, upsample, num, den):
    """Add every value at its scan position moved by its bin's shift, bilinearly.

    ``values[i, j]`` (pattern ``i``, bin ``j``) goes to the fine-grid point
    ``(iy·u + shift_y[j], ix·u + shift_x[j])`` (``u`` = ``upsample``, shifts in fine
    pixels) of ``num``, its bilinear weights to ``den``; patterns with a negative position
    are left out, and weights falling outside the grid are dropped.
    """
    fy, fx = num.shape
    for i in range(positions.shape[0]):
        p = positions[i]
        if p < 0:
            continue
        py = (p // scan_x) * upsample
        px = (p % scan_x) * upsample
        for j in range(values.shape[1]):
            y = py + shift_y[j]
            x = px + shift_x[j]
            y0 = math.floor(y)
            x0 = math.floor(x)
            wy = y - y0
            wx = x - x0
            v = values[i, j]
            for a in range(2):
                yy = y0 + a
                if yy < 0 or yy >= fy:
                    continue
                w_a = wy if a else 1.0 - wy
                for b in range(2):
                    xx = x0 + b
                    if xx < 0 or xx >= fx:
                        continue
                    w = w_a * (wx if b else 1.0 - wx)
                    num[yy, xx] += w * v
                    den[yy, xx] += w


__all__ = ["accumulate", "bin_patterns", "splat"]
