"""Shared pieces of the compiled kernels: jit options, state row numbers, LLVM bit intrinsics.

``ctpop`` and ``bswap`` call LLVM's ``llvm.ctpop`` / ``llvm.bswap`` directly, so loops that
use them vectorise (``vpopcntq`` and ``vpshufb`` where the CPU has them) instead of
falling back to scalar bit twiddling.
"""
from __future__ import annotations

import numba
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
