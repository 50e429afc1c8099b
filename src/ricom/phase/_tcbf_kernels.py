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
def _bin_runs(rows, offset, run_start, run_length, run_bin, out):
    """``out[i, run_bin[r]] += Σ rows[i, offset + run_start[r] : … + run_length[r]]``:
    contiguous runs of pixels of one bin (sorted by position), summed in a register
    before the one store.

    A first pass reads one item per 64 bytes from the first run to the last: a streaming
    read that brings the disc's detector rows into the cache, where the runs, a few
    pixels each with gaps between, would otherwise wait for memory run by run (4× slower
    on 256² patterns).
    """
    lo = offset + run_start[0]
    hi = offset + run_start[-1] + run_length[-1]
    step = max(1, 64 // rows.itemsize)
    touched = 0
    for i in range(rows.shape[0]):
        row = rows[i]
        for t in range(lo, hi, step):
            touched += row[t] > 0
        for r in range(run_start.shape[0]):
            a = offset + run_start[r]
            acc = 0
            for t in range(a, a + run_length[r]):
                acc += row[t]
            out[i, run_bin[r]] += acc
    return touched  # returned, so the streaming read is not optimised away


def pixel_runs(pixel_index: np.ndarray, pixel_bin: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The pixels as runs of consecutive flat indices in one bin: (start, length, bin).

    Examples
    --------
    >>> [r.tolist() for r in pixel_runs(np.array([1, 2, 3, 7, 8]), np.array([0, 0, 1, 1, 1]))]
    [[1, 3, 7], [2, 1, 2], [0, 1, 1]]
    """
    order = np.argsort(pixel_index, kind="stable")
    idx, bins = pixel_index[order], pixel_bin[order]
    breaks = np.flatnonzero((np.diff(idx) != 1) | (np.diff(bins) != 0)) + 1
    starts = np.concatenate([[0], breaks])
    lengths = np.diff(np.concatenate([starts, [len(idx)]]))
    return idx[starts].astype(np.int64), lengths.astype(np.int64), bins[starts].astype(np.int64)


def bin_patterns(frames, runs: tuple[np.ndarray, np.ndarray, np.ndarray], n_bins: int) -> np.ndarray:
    """Sum the chosen detector pixels of every pattern into their bins.

    Parameters
    ----------
    frames : ndarray (k, det_y, det_x) or PackedFrames
        The chunk's patterns; packed little-endian frames are read in place.
    runs : (start, length, bin) arrays of int64
        `pixel_runs` of the pixels used: flat detector index (``row · det_x + col``) of
        each run's first pixel, its number of pixels, and the bin (0 … ``n_bins`` − 1).
    n_bins : int

    Returns
    -------
    ndarray of float64, shape (k, n_bins)

    Examples
    --------
    >>> f = np.arange(8, dtype=np.uint16).reshape(2, 2, 2)
    >>> bin_patterns(f, pixel_runs(np.array([0, 3]), np.array([0, 0])), 1).ravel().tolist()
    [3.0, 11.0]
    """
    if isinstance(frames, PackedFrames) and frames.bits == 0 and not frames.big_endian:
        rows, offset = frames.rows, int(frames.offset)  # read in place
    else:
        arr = frames.unpack() if isinstance(frames, PackedFrames) else np.asarray(frames)
        rows, offset = np.ascontiguousarray(arr.reshape(arr.shape[0], -1)), 0
        if rows.dtype == np.bool_:
            rows = rows.view(np.uint8)
    out = np.zeros((rows.shape[0], n_bins))
    _bin_runs(rows, offset, *runs, out)
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


__all__ = ["accumulate", "bin_patterns", "pixel_runs", "splat"]
