"""Shared pieces of the compiled kernels: jit options, state row numbers, LLVM bit intrinsics,
and the named tuples that carry buffers and parameters into them.

``ctpop`` and ``bswap`` call LLVM's ``llvm.ctpop`` / ``llvm.bswap`` directly, so loops that
use them vectorise (``vpopcntq`` and ``vpshufb`` where the CPU has them) instead of
falling back to scalar bit twiddling.
"""
from __future__ import annotations

from typing import NamedTuple

import numba
import numpy as np
from numba.core import types
from numba.extending import intrinsic

JIT = {"nogil": True, "cache": True}

TOTAL, SUM_X, SUM_Y, FIRST_RING = 0, 1, 2, 3


@intrinsic
def ctpop(typingctx, x):
    """Number of set bits of an unsigned integer (same type back)."""
    if not isinstance(x, types.Integer) or x.signed:
        return None

    def codegen(context, builder, signature, args):
        return builder.ctpop(args[0])
    return x(x), codegen


@intrinsic
def bswap(typingctx, x):
    """Byte order of an unsigned integer reversed (8-bit values come back unchanged)."""
    if not isinstance(x, types.Integer) or x.signed:
        return None

    def codegen(context, builder, signature, args):
        return args[0] if x.bitwidth == 8 else builder.bswap(args[0])
    return x(x), codegen


@numba.njit(**JIT)
def _nothing(x):
    return x


def load() -> None:
    """Start numba's compiled-code machinery now (≈ 0.2 s once per process, on the first
    call of any cached kernel), so that it is not counted as processing time."""
    _nothing(0)


class MomentBuffers(NamedTuple):
    """The per-position state that the compiled loops update in place.

    Owned by `ricom.engine.moments.Moments`.  ``state[m, p]`` holds moment ``m`` of scan
    position ``p`` (rows `TOTAL`, `SUM_X`, `SUM_Y`, then the ring sums from `FIRST_RING`);
    ``hits[p]`` counts its patterns.  ``touched`` lists the positions a chunk changed,
    each once (``stamp[p]`` is the generation that last listed ``p``); ``centre_sums`` is
    [Σ COM_x, Σ COM_y, n] of the uncentred COM over the non-empty positions.
    """

    state: np.ndarray
    hits: np.ndarray
    stamp: np.ndarray
    touched: np.ndarray
    centre_sums: np.ndarray


class ComFrame(NamedTuple):
    """How a position's uncentred COM (detector pixels) becomes its calibrated scan-frame COM.

    ``com = scale · M · (COM_det − centre − descan[:, p])`` with ``M = [[m00, m01], [m10, m11]]``
    taking detector (x, y) to scan (x, y) (rotation · flip); ``descan_px`` is ``(2, n_pos)``
    (row, column shifts of the centre per position); ``scale`` is the COM output unit per
    detector pixel (mrad per pixel, or 1).
    """

    centre_y_px: float
    centre_x_px: float
    descan_px: np.ndarray
    scale: float
    m00: float
    m01: float
    m10: float
    m11: float


class EventLookups(NamedTuple):
    """What the event loop needs of the detector look-ups (see `accumulate_events`).

    With ``use_lut`` (integer coordinates) ``ring_of_pixel`` (−1: no ring) and ``com_mask``
    give ring and mask per pixel; otherwise both come from each event's squared radius
    from ``(centre_y_px, centre_x_px)``: ring ``k`` where ``ring_bounds2_px2[k] ≤ r² <
    ring_bounds2_px2[k + 1]``, and with ``use_mask`` only ``mask_lo2_px2 ≤ r² <
    mask_hi2_px2`` enters the moments.
    """

    ring_of_pixel: np.ndarray
    com_mask: np.ndarray
    use_lut: bool
    ring_bounds2_px2: np.ndarray
    centre_y_px: float
    centre_x_px: float
    mask_lo2_px2: float
    mask_hi2_px2: float
    use_mask: bool
