"""Per-pattern moments into the per-position state: the compiled half of the moments reducer.

`accumulate` adds a chunk's per-pattern moments into `MomentBuffers` and lists the
touched positions, keeping the running mean COM (``centre_sums``) current.  The Python
half is `ricom.engine.moments.Moments`.
"""
from __future__ import annotations

import numba

from ricom.engine.compiled._common import JIT, SUM_X, SUM_Y, TOTAL


@numba.njit(inline="always")
def centre_sums_add(state, p, centre_sums, sign):
    """Add (sign 1) or remove (sign -1) position p's uncentred COM in the running mean."""
    t = state[TOTAL, p]
    if t > 0:
        centre_sums[0] += sign * state[SUM_X, p] / t
        centre_sums[1] += sign * state[SUM_Y, p] / t
        centre_sums[2] += sign


@numba.njit(**JIT)
def accumulate(positions, moments, valid, buffers, generation, frame_pass, last_pass):
    """Add chunk moments into the per-position state.

    ``moments (m, k)`` are added to ``buffers.state[:, positions[i]]`` where
    ``positions[i] ≥ 0`` and ``valid[i]``; ``buffers.hits`` counts patterns per position.
    Every touched position is listed once in ``buffers.touched``; the count is returned.
    ``buffers.centre_sums`` is kept current.  When ``frame_pass`` is not empty (replace
    mode), a pattern from a newer scan pass than ``last_pass[p]`` first clears position p,
    so each position shows its latest pass only.
    """
    # the arrays are taken out of the tuple once: LLVM optimises the loop over plain arrays better
    state, hits, centre_sums = buffers.state, buffers.hits, buffers.centre_sums
    stamp, touched = buffers.stamp, buffers.touched
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
        centre_sums_add(state, p, centre_sums, -1.0)
        if replace and frame_pass[i] != last_pass[p]:
            last_pass[p] = frame_pass[i]
            hits[p] = 0
            for j in range(m):
                state[j, p] = 0.0
        for j in range(m):
            state[j, p] += moments[j, i]
        centre_sums_add(state, p, centre_sums, 1.0)
        hits[p] += 1
    return n_touched
