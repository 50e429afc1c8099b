"""Compiled (numba, ``nogil``, cached) loops that decode and encode Merlin MIB pixel data.

These are format-specific byte shuffles, not physics; the physics kernels live in
`ricom.engine.compiled`.  Every decoder reads ``n`` consecutive frames of ``frame_bytes`` bytes
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


def _bit_table() -> np.ndarray:
    """``T[b]``: the 8 pixels of byte ``b`` (bit k → byte k) as one little-endian uint64."""
    t = np.zeros(256, np.uint64)
    for b in range(256):
        for k in range(8):
            t[b] |= np.uint64((b >> k) & 1) << np.uint64(8 * k)
    return t


BITS = _bit_table()
"""Lookup table for depth-1 raw data (pass it to the decoders)."""
RBITS = np.array([int.from_bytes(bytes(int(v).to_bytes(8, "little"))[::-1], "little") for v in BITS], np.uint64)
"""As `BITS` with the 8 pixels in reverse order (for chips stored flipped)."""
_SWAP16 = np.uint64(0x00FF00FF00FF00FF)
_MASK12 = np.uint64(0x0FFF0FFF0FFF0FFF)
_ALL = np.uint64(0xFFFFFFFFFFFFFFFF)


@numba.njit(inline="always")
def _word(buf, at):
    """The big-endian 64-bit word at ``buf[at:at+8]``."""
    v = np.uint64(0)
    for j in range(8):
        v = (v << np.uint64(8)) | np.uint64(buf[at + j])
    return v


@numba.njit(inline="always")
def _r12(buf, at):
    return ((np.uint32(buf[at]) << np.uint32(8)) | np.uint32(buf[at + 1])) & np.uint32(0xFFF)


@numba.njit(**_JIT)
def raw_row(src, dst, depth, bits, fast):
    """Unpack ``dst.size`` raw pixels (depth 1, 6 or 12) from the bytes ``src`` into ``dst``.

    ``fast`` (little-endian host, uint8 ``dst`` for depth 1/6, uint16 for 12): whole
    64-bit words are stored at once — a big-endian word read as a number holds pixel k in
    its k-th lowest slot, which is where a little-endian store puts pixel k.
    """
    npx = dst.shape[0]
    if fast:
        out64 = dst.view(np.uint64)
        if depth == 1:
            for w in range(npx // 64):
                for k in range(8):
                    out64[8 * w + k] = bits[src[8 * w + 7 - k]]
        else:
            mask = _MASK12 if depth == 12 else _ALL
            for w in range(out64.shape[0]):
                out64[w] = _word(src, 8 * w) & mask
    elif depth == 1:  # (one flat loop: a nested one makes LLVM take seconds for 16-bit dst)
        for p in range(npx):
            dst[p] = (src[(p >> 6) * 8 + 7 - ((p >> 3) & 7)] >> (p & 7)) & 1
    elif depth == 6:
        for w in range(npx // 8):
            for k in range(8):
                dst[8 * w + k] = src[8 * w + 7 - k]
    else:
        for w in range(npx // 4):
            for k in range(4):
                dst[4 * w + k] = _r12(src, 8 * w + 2 * (3 - k))


@numba.njit(**_JIT)
def raw24_row(hi, lo, dst):
    """Depth 24: high 12 bits from the sub-frame bytes ``hi``, low 12 bits from ``lo``."""
    for w in range(dst.shape[0] // 4):
        for k in range(4):
            at = 8 * w + 2 * (3 - k)
            dst[4 * w + k] = (_r12(hi, at) << np.uint32(12)) | _r12(lo, at)


@numba.njit(**_JIT)
def _segment(buf, at, lo, dst, depth, bits, fast):
    """One run of raw pixels starting at byte ``at`` (depth 24: low half at ``lo``)."""
    npx = dst.shape[0]
    if depth == 24:
        raw24_row(buf[at:at + 2 * npx], buf[lo:lo + 2 * npx], dst)
    else:
        raw_row(buf[at:at + (npx // 8 if depth == 1 else (npx if depth == 6 else 2 * npx))], dst, depth, bits, fast)


@numba.njit(**_JIT)
def decode_raw(buf, n, frame_bytes, header_bytes, out, depth, bits, fast):
    """Raw single-chip frames: ``out (n, npx)`` in file order."""
    npx = out.shape[1]
    for i in range(n):
        b = i * frame_bytes + header_bytes
        _segment(buf, b, b + 2 * npx, out[i], depth, bits, fast)


@numba.njit(**_JIT)
def decode_raw_quad(buf, n, frame_bytes, header_bytes, out, depth, gap, bits, fast, tmp):
    """Raw quad frames: rows ``[Q4 | Q3 | Q2 | Q1]`` (cs pixels each) → the 2×2 image.

    Q1 top-left and Q2 top-right as they are, Q3 bottom-left and Q4 bottom-right flipped
    in x and y.  ``out (n, 2·cs + gap, 2·cs + gap)``, gap pixels 0; ``tmp (4·cs,)`` of
    out's dtype holds one input row.  General path; `decode_raw_quad_fast` is the fast one.
    """
    cs = tmp.shape[0] // 4
    s = 2 * cs + gap
    seg = cs // 8 if depth == 1 else (cs if depth == 6 else 2 * cs)  # bytes of one chip row
    sub = cs * 4 * seg  # depth 24: offset of the low sub-frame
    for i in range(n):
        o = out[i]
        for y in range(cs, cs + gap):
            o[y, :] = 0
        for y in range(s):
            for x in range(cs, cs + gap):
                o[y, x] = 0
        b = i * frame_bytes + header_bytes
        for y in range(cs):
            at = b + 4 * seg * y
            top, bottom = o[y], o[s - 1 - y]
            _segment(buf, at, at + sub, tmp, depth, bits, fast)
            for x in range(cs):
                top[x] = tmp[3 * cs + x]
                top[cs + gap + x] = tmp[2 * cs + x]
                bottom[cs - 1 - x] = tmp[cs + x]
                bottom[s - 1 - x] = tmp[x]


@numba.njit(inline="always")
def _word_le(buf, at):
    """The little-endian 64-bit word at ``buf[at:at+8]`` (``at`` unsigned)."""
    v = np.uint64(0)
    for j in range(8):
        v |= np.uint64(buf[at + np.uint64(j)]) << np.uint64(8 * j)
    return v


@numba.njit(inline="always")
def _word_be(buf, at):
    """The big-endian 64-bit word at ``buf[at:at+8]`` (``at`` unsigned)."""
    v = np.uint64(0)
    for j in range(8):
        v = (v << np.uint64(8)) | np.uint64(buf[at + np.uint64(j)])
    return v


@numba.njit(**_JIT)
def decode_raw_quad_fast(buf, n, frame_bytes, header_bytes, out64, depth, bits, rbits, cs, itemsize):
    """`decode_raw_quad` for depth 1, 6, 12 without gaps on a little-endian host.

    Writes whole 64-bit words of ``out64`` (the ``(n, 2·cs, 2·cs)`` output viewed as
    ``(n, -1)`` uint64; uint8 for depth 1/6, uint16 for 12).  Flipped chips use `RBITS`
    (depth 1), a little-endian word read (depth 6) or one with 16-bit slots byte-swapped
    (depth 12).  Indices are unsigned so that no negative-index checks block vectorising.
    """
    u = np.uint64
    words = cs * itemsize // 8  # output words per chip row
    seg = cs // 8 if depth == 1 else (cs if depth == 6 else 2 * cs)  # input bytes per chip row
    mask = _MASK12 if depth == 12 else _ALL
    for i in range(n):
        o = out64[i]
        b = u(i * frame_bytes + header_bytes)
        for y in range(cs):
            at = b + u(4 * seg * y)
            top, bot = u(2 * words * y), u(2 * words * (2 * cs - 1 - y))
            q1, q2, q3, q4 = at + u(3 * seg), at + u(2 * seg), at + u(seg), at
            if depth == 1:
                for w in range(cs // 64):
                    for k in range(8):
                        j, t = u(8 * w + 7 - k), u(8 * w + k)
                        o[top + t] = bits[buf[q1 + j]]
                        o[top + u(words) + t] = bits[buf[q2 + j]]
                        o[bot + u(words - 1) - t] = rbits[buf[q3 + j]]
                        o[bot + u(2 * words - 1) - t] = rbits[buf[q4 + j]]
            else:
                for w in range(words):
                    c = u(8 * w)
                    o[top + u(w)] = _word_be(buf, q1 + c) & mask
                    o[top + u(words + w)] = _word_be(buf, q2 + c) & mask
                    v3, v4 = _word_le(buf, q3 + c), _word_le(buf, q4 + c)
                    if depth == 12:
                        v3 = (((v3 >> u(8)) & _SWAP16) | ((v3 & _SWAP16) << u(8))) & mask
                        v4 = (((v4 >> u(8)) & _SWAP16) | ((v4 & _SWAP16) << u(8))) & mask
                    o[bot + u(words - 1 - w)] = v3
                    o[bot + u(2 * words - 1 - w)] = v4


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
