"""The compiled loops of the riCOM update: calibrated COM per position and the kernel scatter.

`scatter_touched` is the real-time update itself: the change of each touched position's
calibrated COM times the n×n scatter kernels, added into the image around the position.
`take_deltas` is its first half for the block (FFT) scatter; `com_maps` gives every
position's COM for a full rebuild; `add_pending` / `clear_pending` keep the list of
positions whose update is deferred.  The Python half — kernels, the choice between direct
and block scatter, rebuilds — is `ricom.engine.ricom_update`.
"""
from __future__ import annotations

import numba

from ricom.engine.compiled._common import JIT, SUM_X, SUM_Y, TOTAL


@numba.njit(**JIT)
def com_at(state, p, frame):
    """Calibrated scan-frame COM (x, y) of position ``p`` (see `ComFrame`); (0, 0) when empty."""
    t = state[TOTAL, p]
    if not t > 0:
        return 0.0, 0.0
    u = state[SUM_X, p] / t - frame.centre_x_px - frame.descan_px[1, p]
    w = state[SUM_Y, p] / t - frame.centre_y_px - frame.descan_px[0, p]
    return frame.scale * (frame.m00 * u + frame.m01 * w), frame.scale * (frame.m10 * u + frame.m11 * w)


@numba.njit(fastmath=True, **JIT)
def scatter_touched(touched, n_touched, state, frame, scattered_x, scattered_y, image, sx_kernel, sy_kernel):
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
        vx, vy = com_at(state, p, frame)
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
def com_maps(state, frame, out_x, out_y):
    """Calibrated COM of every position into flat ``out_x``, ``out_y``."""
    for p in range(state.shape[1]):
        out_x[p], out_y[p] = com_at(state, p, frame)


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
def take_deltas(touched, n_touched, state, frame, scattered_x, scattered_y, sx, y0, x0, dx, dy):
    """The first half of `scatter_touched` for a block scatter: each touched position's
    COM change is written into the dense ``dx``, ``dy`` (zero elsewhere) at its place
    relative to scan pixel ``(y0, x0)``, and marked as scattered."""
    dx[:] = 0.0
    dy[:] = 0.0
    for j in range(n_touched):
        p = touched[j]
        vx, vy = com_at(state, p, frame)
        iy = p // sx
        ix = p - iy * sx
        dx[iy - y0, ix - x0] = vx - scattered_x[p]
        dy[iy - y0, ix - x0] = vy - scattered_y[p]
        scattered_x[p] = vx
        scattered_y[p] = vy


@numba.njit(**JIT)
def add_pending(touched, n_touched, pending, n_pending, flags, sx, box):
    """List the touched positions not yet pending after the ``n_pending`` already in
    ``pending`` (``flags[p]``: p is listed) and widen ``box`` (y0, y1, x0, x1; ``y1``,
    ``x1`` exclusive) to cover them; returns the new count."""
    for j in range(n_touched):
        p = touched[j]
        if flags[p]:
            continue
        flags[p] = True
        pending[n_pending] = p
        n_pending += 1
        iy = p // sx
        ix = p - iy * sx
        box[0] = min(box[0], iy)
        box[1] = max(box[1], iy + 1)
        box[2] = min(box[2], ix)
        box[3] = max(box[3], ix + 1)
    return n_pending


@numba.njit(**JIT)
def clear_pending(pending, n_pending, flags, box):
    """Unlist the ``n_pending`` positions of ``pending`` and empty ``box``."""
    for j in range(n_pending):
        flags[pending[j]] = False
    box[0] = box[2] = 1 << 62
    box[1] = box[3] = -1
