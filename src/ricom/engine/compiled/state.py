"""The per-position state and the real-time riCOM update.

`accumulate` adds a chunk's per-pattern moments into ``state[m, p]`` and lists the
touched positions; `scatter_touched` brings the image up to date for them by adding the
change of each position's calibrated COM times the n×n scatter kernels; `com_at` and
`com_maps` turn the moments into calibrated COM vectors.
"""
from __future__ import annotations

import numba

from ricom.engine.compiled._common import JIT, SUM_X, SUM_Y, TOTAL


@numba.njit(inline="always")
def _centre_sums_add(state, p, centre_sums, sign):
    """Add (sign 1) or remove (sign -1) position p's uncentred COM in the running mean."""
    t = state[TOTAL, p]
    if t > 0:
        centre_sums[0] += sign * state[SUM_X, p] / t
        centre_sums[1] += sign * state[SUM_Y, p] / t
        centre_sums[2] += sign


@numba.njit(**JIT)
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


@numba.njit(**JIT)
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


@numba.njit(fastmath=True, **JIT)
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


@numba.njit(**JIT)
def com_maps(state, cy, cx, descan, scale, m00, m01, m10, m11, out_x, out_y):
    """Calibrated COM of every position into flat ``out_x``, ``out_y``."""
    for p in range(state.shape[1]):
        out_x[p], out_y[p] = com_at(state, p, cy, cx, descan, scale, m00, m01, m10, m11)


@numba.njit(**JIT)
def touched_box(touched, n_touched, sx):
    """(y0, y1, x0, x1): the scan rows and columns spanned by the touched positions
    (``y1``, ``x1`` exclusive)."""
    y0 = x0 = 1 << 62
    y1 = x1 = -1
    for j in range(n_touched):
        iy = touched[j] // sx
        ix = touched[j] - iy * sx
        y0 = min(y0, iy)
        y1 = max(y1, iy)
        x0 = min(x0, ix)
        x1 = max(x1, ix)
    return y0, y1 + 1, x0, x1 + 1


@numba.njit(**JIT)
def take_deltas(touched, n_touched, state, cy, cx, descan, scale, m00, m01, m10, m11,
                scattered_x, scattered_y, sx, y0, x0, dx, dy):
    """The first half of `scatter_touched` for a block scatter: each touched position's
    COM change is written into the dense ``dx``, ``dy`` (zero elsewhere) at its place
    relative to scan pixel ``(y0, x0)``, and marked as scattered."""
    dx[:] = 0.0
    dy[:] = 0.0
    for j in range(n_touched):
        p = touched[j]
        vx, vy = com_at(state, p, cy, cx, descan, scale, m00, m01, m10, m11)
        iy = p // sx
        ix = p - iy * sx
        dx[iy - y0, ix - x0] = vx - scattered_x[p]
        dy[iy - y0, ix - x0] = vy - scattered_y[p]
        scattered_x[p] = vx
        scattered_y[p] = vy
