"""Compiled (numba, ``nogil``, cached) loops that decode and encode Merlin MIB pixel data.

These are format-specific byte shuffles, not physics; the physics kernels live in
`ricom.compiled`.  Every decoder reads ``n`` consecutive frames of ``frame_bytes`` bytes
(header + pixels) from a flat ``uint8`` buffer, skips ``header_bytes`` per frame and
writes ``out[k, pixel]`` (flat pixels in file order).  Byte-order facts (FORMATS.md §1):

* processed ``U16``/``U32`` are big-endian;
* raw ``R64`` packs pixels into big-endian 64-bit words, lowest bits first: depth 1 →
  bit k of the word is pixel k; depth 6 → byte 7−k; depth 12 → 16-bit slot 3−k;
  depth 24 → two 12-bit sub-frames, the first holding the high 12 bits.
"""
from __future__ import annotations

import numba
import numpy as np

_JIT = {"nogil": True, "cache": True}

_M, _Q, _ONE, _COMMA = 77, 81, 49, 44  # b"MQ1,"


@numba.njit(**_JIT)
def check_headers(buf, n, frame_bytes, ref, seq):
    """Index of the first of ``n`` frames whose header differs from ``ref``, else ``n``.

    A header must start ``MQ1,``, carry a decimal sequence number (stored in ``seq[k]``)
    and continue with exactly the bytes of ``ref`` (fields 3–8: header size, chips,
    width, height, data type, layout, each with its comma).
    """
    m = ref.shape[0]
    for i in range(n):
        b = i * frame_bytes
        if buf[b] != _M or buf[b + 1] != _Q or buf[b + 2] != _ONE or buf[b + 3] != _COMMA:
            return i
        j = b + 4
        value = 0
        digits = 0
        while digits < 18 and buf[j] != _COMMA:
            c = buf[j]
            if c < 48 or c > 57:
                return i
            value = value * 10 + (c - 48)
            j += 1
            digits += 1
        if digits == 0 or buf[j] != _COMMA:
            return i
        seq[i] = value
        j += 1
        for k in range(m):
            if buf[j + k] != ref[k]:
                return i
    return n


@numba.njit(**_JIT)
def decode_u8(buf, n, frame_bytes, header_bytes, out):
    npx = out.shape[1]
    for i in range(n):
        b = i * frame_bytes + header_bytes
        src = buf[b:b + npx]
        row = out[i]
        for p in range(npx):
            row[p] = src[p]


@numba.njit(**_JIT)
def decode_u16(buf, n, frame_bytes, header_bytes, out):
    npx = out.shape[1]
    for i in range(n):
        b = i * frame_bytes + header_bytes
        src = buf[b:b + 2 * npx]
        row = out[i]
        for p in range(npx):
            row[p] = (np.uint16(src[2 * p]) << np.uint16(8)) | np.uint16(src[2 * p + 1])


@numba.njit(**_JIT)
def decode_u32(buf, n, frame_bytes, header_bytes, out):
    npx = out.shape[1]
    for i in range(n):
        b = i * frame_bytes + header_bytes
        src = buf[b:b + 4 * npx]
        row = out[i]
        for p in range(npx):
            q = 4 * p
            row[p] = ((np.uint32(src[q]) << np.uint32(24)) | (np.uint32(src[q + 1]) << np.uint32(16))
                      | (np.uint32(src[q + 2]) << np.uint32(8)) | np.uint32(src[q + 3]))


@numba.njit(**_JIT)
def decode_r1(buf, n, frame_bytes, header_bytes, out):
    npx = out.shape[1]
    for i in range(n):
        b = i * frame_bytes + header_bytes
        row = out[i]
        for w in range(npx // 64):
            for k in range(8):
                byte = buf[b + 8 * w + 7 - k]
                base = 64 * w + 8 * k
                for bit in range(8):
                    row[base + bit] = (byte >> bit) & 1


@numba.njit(**_JIT)
def decode_r6(buf, n, frame_bytes, header_bytes, out):
    npx = out.shape[1]
    for i in range(n):
        b = i * frame_bytes + header_bytes
        row = out[i]
        for w in range(npx // 8):
            for k in range(8):
                row[8 * w + k] = buf[b + 8 * w + 7 - k]


@numba.njit(inline="always")
def _r12(buf, at):
    return ((np.uint32(buf[at]) << np.uint32(8)) | np.uint32(buf[at + 1])) & np.uint32(0xFFF)


@numba.njit(**_JIT)
def decode_r12(buf, n, frame_bytes, header_bytes, out):
    npx = out.shape[1]
    for i in range(n):
        b = i * frame_bytes + header_bytes
        row = out[i]
        for w in range(npx // 4):
            for k in range(4):
                row[4 * w + k] = _r12(buf, b + 8 * w + 2 * (3 - k))


@numba.njit(**_JIT)
def decode_r24(buf, n, frame_bytes, header_bytes, out):
    npx = out.shape[1]
    for i in range(n):
        hi = i * frame_bytes + header_bytes
        lo = hi + 2 * npx
        row = out[i]
        for w in range(npx // 4):
            for k in range(4):
                at = 8 * w + 2 * (3 - k)
                row[4 * w + k] = (_r12(buf, hi + at) << np.uint32(12)) | _r12(buf, lo + at)


@numba.njit(**_JIT)
def assemble_quad(raw, out, gap):
    """Raw quad rows ``[Q4 | Q3 | Q2 | Q1]`` → 2×2 image; Q3, Q4 flipped in x and y.

    ``raw (n, cs, 4·cs)``; ``out (n, 2·cs + gap, 2·cs + gap)``, gap pixels set to 0.
    """
    n, cs = raw.shape[0], raw.shape[1]
    s = 2 * cs + gap
    for i in range(n):
        o = out[i]
        r_ = raw[i]
        for y in range(cs, cs + gap):
            for x in range(s):
                o[y, x] = 0
        for y in range(s):
            for x in range(cs, cs + gap):
                o[y, x] = 0
        for y in range(cs):
            src = r_[y]
            for x in range(cs):
                o[y, x] = src[3 * cs + x]
                o[y, cs + gap + x] = src[2 * cs + x]
                o[s - 1 - y, cs - 1 - x] = src[cs + x]
                o[s - 1 - y, s - 1 - x] = src[x]


@numba.njit(**_JIT)
def disassemble_quad(img, raw, gap):
    """Inverse of `assemble_quad`: ``img (n, 2·cs + gap, …)`` → ``raw (n, cs, 4·cs)``."""
    n, cs = raw.shape[0], raw.shape[1]
    s = 2 * cs + gap
    for i in range(n):
        o = img[i]
        r_ = raw[i]
        for y in range(cs):
            dst = r_[y]
            for x in range(cs):
                dst[3 * cs + x] = o[y, x]
                dst[2 * cs + x] = o[y, cs + gap + x]
                dst[cs + x] = o[s - 1 - y, cs - 1 - x]
                dst[x] = o[s - 1 - y, s - 1 - x]


@numba.njit(**_JIT)
def encode_r1(px, out):
    """Pixels ``px (n, npx)`` (0/1) → raw 1-bit bytes ``out (n, npx // 8)``."""
    n, npx = px.shape
    for i in range(n):
        for w in range(npx // 64):
            for k in range(8):
                byte = 0
                base = 64 * w + 8 * k
                for bit in range(8):
                    byte |= (px[i, base + bit] & 1) << bit
                out[i, 8 * w + 7 - k] = byte


@numba.njit(**_JIT)
def encode_r6(px, out):
    n, npx = px.shape
    for i in range(n):
        for w in range(npx // 8):
            for k in range(8):
                out[i, 8 * w + 7 - k] = px[i, 8 * w + k]


@numba.njit(**_JIT)
def encode_r12(px, out, shift):
    """12-bit slots of ``(px >> shift) & 0xFFF`` (shift 12 gives the high sub-frame of depth 24)."""
    n, npx = px.shape
    for i in range(n):
        for w in range(npx // 4):
            for k in range(4):
                v = (np.uint32(px[i, 4 * w + k]) >> np.uint32(shift)) & np.uint32(0xFFF)
                at = 8 * w + 2 * (3 - k)
                out[i, at] = v >> np.uint32(8)
                out[i, at + 1] = v & np.uint32(0xFF)
