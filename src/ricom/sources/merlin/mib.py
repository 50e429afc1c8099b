"""Quantum Detectors Merlin (Medipix3) ``.mib`` frames: their headers and decoding.

Byte-level facts are in FORMATS.md §1.  A ``.mib`` file is a sequence of frames, each an
ASCII header (H bytes, H from its 3rd field) and the pixels.  Processed data (``U08``,
``U16``, ``U32``) is big-endian and arrives assembled; raw data (``R64``) is unpacked
here, including the 2×2 quad chip reordering.  Pixels in file order are rows
top-to-bottom (no vertical flip).

Owns `MibHeader`, `parse_frame_header`, `check_frames`, `unwrap_sequence` (the header's
six-digit sequence numbers past their wrap) and `decode_frames`, shared by the file
reader (`ricom.sources.merlin.file.MerlinSource`) and the live client
(`ricom.sources.merlin.live`).  The acquisition header (``.hdr``) is
`ricom.sources.merlin.hdr`; writing frames is `ricom.sources.merlin.encode`.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass

import numpy as np

from ricom.core.errors import InputError, SettingsError
from ricom.sources.merlin import _compiled as K

DEPTHS = (1, 6, 12, 24)
PROCESSED_CODE = {1: "U08", 6: "U08", 12: "U16", 24: "U32"}
_BYTES = {"U08": 1, "U16": 2, "U32": 4}
_OUT_DTYPE = {1: np.uint8, 6: np.uint8, 12: np.uint16, 24: np.uint32}
_DECODERS = {"U08": K.decode_u8, "U16": K.decode_u16, "U32": K.decode_u32}
CHIP = 256
"""Pixels per side of one Medipix3 chip."""


@dataclass(frozen=True)
class MibHeader:
    """What one MIB frame header says.

    Attributes
    ----------
    header_bytes : int
        H, the header size (384 single chip, 768 quad).
    n_chips : int
    width, height : int
        As written in the header (raw quad: 1024 × 256; raw depth 24: width doubled).
    dtype : str
        ``'U08'``, ``'U16'``, ``'U32'`` or ``'R64'``.
    layout : str
        Chip layout, stripped: ``'1x1'``, ``'2x2'``, ``'2x2G'``, ``'Nx1'``.
    counter_depth : int
        1, 6, 12 or 24.
    sequence_number : int
        Of this frame (starts at 1).
    raw : bool
        True for ``R64``.
    pixel_bytes, frame_bytes : int
        Bytes of pixel data; header + pixels.
    detector_shape : (int, int)
        (rows, cols) of the decoded, assembled pattern.
    timestamp : str
    shutter_s : float
        Exposure time in seconds (NaN if unreadable).
    """

    header_bytes: int
    n_chips: int
    width: int
    height: int
    dtype: str
    layout: str
    counter_depth: int
    sequence_number: int
    raw: bool
    pixel_bytes: int
    frame_bytes: int
    detector_shape: tuple[int, int]
    timestamp: str = ""
    shutter_s: float = float("nan")

    @property
    def out_dtype(self) -> np.dtype:
        """NumPy dtype of decoded patterns."""
        if not self.raw:
            return np.dtype({"U08": np.uint8, "U16": np.uint16, "U32": np.uint32}[self.dtype])
        return np.dtype(_OUT_DTYPE[self.counter_depth])

    @property
    def gap(self) -> int:
        """Gap pixels between chips in the assembled pattern (2 for ``2x2G``)."""
        return 2 if self.layout.upper().endswith("G") and self.n_chips > 1 else 0

    @property
    def is_raw_quad(self) -> bool:
        return self.raw and self.n_chips == 4

    @property
    def packed_bits(self) -> bool:
        """Raw 1-bit single-chip frames whose rows are whole 64-bit words: the engine can
        reduce them from their packed words (`ricom.core.chunks.PackedFrames` with bits=1)."""
        return self.raw and self.counter_depth == 1 and self.n_chips == 1 and self.detector_shape[1] % 64 == 0

    def summary(self) -> str:
        kind = "raw" if self.raw else "processed"
        text = (f"{self.dtype} {kind} depth {self.counter_depth}, {self.layout}, "
                f"{self.detector_shape[0]}×{self.detector_shape[1]}")
        return "".join(c if c.isprintable() else "?" for c in text)  # header bytes may be damaged: one line

    def reference_bytes(self, raw: bytes) -> np.ndarray:
        """Fields 3–8 of ``raw`` (this header's bytes) with their commas, for `check_frames`."""
        head = bytes(raw[:self.header_bytes])
        start = head.index(b",", 4) + 1
        end = start
        for _ in range(6):
            end = head.index(b",", end) + 1
        return np.frombuffer(head[start:end], dtype=np.uint8).copy()


def raw_pixel_bytes(n_pixels: int, depth: int) -> int:
    """Bytes of ``n_pixels`` raw (``R64``) pixels of counter depth ``depth`` (24: two 12-bit sub-frames).

    Examples
    --------
    >>> raw_pixel_bytes(256 * 256, 1), raw_pixel_bytes(256 * 256, 12)
    (8192, 131072)
    """
    return {1: n_pixels // 8, 6: n_pixels, 12: 2 * n_pixels, 24: 4 * n_pixels}[depth]


def _as_bytes(raw, limit: int) -> bytes:
    if isinstance(raw, np.ndarray):
        return raw.reshape(-1)[:limit].tobytes()
    return bytes(memoryview(raw)[:limit])


def parse_frame_header(raw, counter_depth: int | None = None, force_depth: bool = False) -> MibHeader:
    """Parse the header at the start of ``raw`` (bytes or uint8 array).

    Parameters
    ----------
    raw : bytes-like or ndarray
        At least the header bytes of one frame (more is fine).
    counter_depth : int, optional
        Used when the header lacks the ``MQ1A`` part (older software), e.g. from the
        ``.hdr``; raw data cannot be decoded without it.
    force_depth : bool
        Use ``counter_depth`` even where the header states another one (the user chose).

    Raises
    ------
    InputError
        Not a MIB header, an incomplete one, or a geometry this reader cannot decode.
    """
    head = _as_bytes(raw, 4096)
    if not head.startswith(b"MQ1,"):
        raise InputError(f"not Merlin MIB data: a frame header starts with 'MQ1,', found {head[:16]!r}")
    try:
        hb = int(head.split(b",", 3)[2])
    except (ValueError, IndexError):
        raise InputError(f"damaged MIB frame header: {head[:40]!r}") from None
    if not 64 <= hb <= 65536:
        raise InputError(f"damaged MIB frame header: header size {hb} is implausible")
    if len(head) < hb:
        raise InputError(f"incomplete MIB frame header: {len(head)} of {hb} bytes")
    fields = head[:hb].split(b"\0", 1)[0].decode("latin-1").split(",")
    try:
        seq, n_chips, width, height = (int(fields[i]) for i in (1, 3, 4, 5))
        code, layout = fields[6].strip().upper(), fields[7].strip()
    except (ValueError, IndexError):
        raise InputError(f"damaged MIB frame header: {head[:60]!r}") from None
    values = [f.strip() for f in fields if f.strip()]
    depth = counter_depth
    if "MQ1A" in values and values[-1].isdigit() and not (force_depth and counter_depth is not None):
        depth = int(values[-1])
    if depth is None and code in ("U08", "U16", "U32"):
        depth = {"U08": 6, "U16": 12, "U32": 24}[code]
    if code not in ("U08", "U16", "U32", "R64"):
        raise InputError(f"MIB data type {code!r} is unknown (expected U08, U16, U32 or R64)")
    if depth not in DEPTHS:
        raise InputError(f"MIB counter depth {depth!r} is unknown; expected one of {DEPTHS}")
    if min(width, height, n_chips) < 1:
        raise InputError(f"damaged MIB frame header: {width}×{height} pixels, {n_chips} chips")
    raw_data = code == "R64"
    if not raw_data:
        pixel_bytes, shape = width * height * _BYTES[code], (height, width)
    else:
        pixel_bytes, shape = _raw_geometry(n_chips, width, height, layout, depth)
    try:
        shutter = float(fields[10])
    except (ValueError, IndexError):
        shutter = float("nan")
    return MibHeader(hb, n_chips, width, height, code, layout, int(depth), seq, raw_data, pixel_bytes,
                     hb + pixel_bytes, shape, fields[9].strip() if len(fields) > 9 else "", shutter)


def _raw_geometry(n_chips: int, width: int, height: int, layout: str, depth: int) -> tuple[int, tuple[int, int]]:
    """Pixel bytes of a raw (``R64``) frame and the shape of its decoded pattern."""
    cols = width // 2 if depth == 24 else width
    npx = height * cols
    if npx % 64:
        raise InputError(f"raw MIB frames of {height}×{width} pixels are not whole 64-bit words")
    shape = (height, cols)
    if n_chips > 1:
        if n_chips != 4 or layout.upper().rstrip("G") != "2X2" or shape != (CHIP, 4 * CHIP):
            raise InputError(f"raw MIB data with {n_chips} chips in layout {layout!r} and {width}×{height} "
                             f"pixels is not supported; record processed data (file format 0)")
        g = 2 if layout.upper().endswith("G") else 0
        shape = (2 * CHIP + g, 2 * CHIP + g)
    return raw_pixel_bytes(npx, depth), shape


def _as_array(buf) -> np.ndarray:
    if isinstance(buf, np.ndarray):
        if buf.dtype != np.uint8:
            buf = buf.view(np.uint8)
        return buf.reshape(-1) if buf.flags.c_contiguous else np.ascontiguousarray(buf).reshape(-1)
    return np.frombuffer(buf, dtype=np.uint8)


def _geometry(h: MibHeader) -> tuple:
    return h.header_bytes, h.n_chips, h.width, h.height, h.dtype, h.layout, h.raw, h.frame_bytes


def check_frames(buf, header: MibHeader, n: int, reference: np.ndarray | None = None) -> tuple[int, np.ndarray]:
    """How many of the ``n`` frames in ``buf`` carry headers like ``header``, and their sequence numbers.

    Returns ``(n_good, seq)``: frames ``0…n_good-1`` match (header size, chips, shape,
    data type, layout); ``seq[:n_good]`` are their sequence numbers.  ``reference`` is
    ``header.reference_bytes(first_frame)``; by default taken from the first frame.
    """
    arr = _as_array(buf)
    if arr.size < n * header.frame_bytes:
        raise InputError(f"buffer holds {arr.size} bytes, fewer than {n} frames of {header.frame_bytes}")
    if reference is None:
        if n == 0:
            return 0, np.zeros(0, np.int64)
        try:
            first = parse_frame_header(arr[:header.header_bytes], header.counter_depth)
        except InputError:
            return 0, np.zeros(n, np.int64)
        if _geometry(first) != _geometry(header):
            return 0, np.zeros(n, np.int64)
        reference = header.reference_bytes(arr[:header.header_bytes].tobytes())
    seq = np.zeros(n, np.int64)
    good = K.check_headers(arr, n, header.frame_bytes, reference, seq)
    return int(good), seq


SEQUENCE_MODULUS = 1_000_000
"""The header's sequence field has six digits; long acquisitions wrap it around."""


def unwrap_sequence(seq: np.ndarray, expected_first: int) -> np.ndarray:
    """Sequence numbers continued past a six-digit wrap (999999 → 000000 → 1000000 …).

    Each number is moved by whole multiples of 10⁶ to lie nearest to the one expected
    (the previous plus one), so a wrap is not taken for millions of lost frames.

    Examples
    --------
    >>> unwrap_sequence(np.array([999_999, 0, 1]), 999_999).tolist()
    [999999, 1000000, 1000001]
    """
    out = np.asarray(seq, np.int64)
    if out.size == 0:
        return out.copy()
    m, half = SEQUENCE_MODULUS, SEQUENCE_MODULUS // 2
    out = out + ((int(expected_first) - int(out[0]) + half) // m) * m  # align the first to the expected
    steps = np.diff(out)
    turns = np.concatenate([[0], np.cumsum((steps < -half).astype(np.int64) - (steps > half))])
    return out + turns * m


def decode_frames(buf, header: MibHeader, n: int, out: np.ndarray | None = None, check: bool = True) -> np.ndarray:
    """Decode ``n`` consecutive frames (header + pixels each) into ``(n, rows, cols)``.

    Parameters
    ----------
    buf : uint8 ndarray or bytes-like
        Starts at the first frame's header; holds at least ``n * header.frame_bytes`` bytes.
    header : MibHeader
        From `parse_frame_header` of the first frame.
    n : int
    out : ndarray, optional
        ``(≥ n, rows, cols)`` C-contiguous array to decode into (any number dtype);
        default a new array of ``header.out_dtype``.
    check : bool
        Verify every frame's header matches ``header`` first.

    Returns
    -------
    ndarray
        ``out[:n]``.

    Raises
    ------
    InputError
        Too few bytes, or (with ``check``) a frame whose header differs.
    """
    arr = _as_array(buf)
    if arr.size < n * header.frame_bytes:
        raise InputError(f"MIB data holds {arr.size} bytes, fewer than {n} frames of {header.frame_bytes} bytes")
    rows, cols = header.detector_shape
    if out is None:
        out = np.empty((n, rows, cols), header.out_dtype)
    elif out.ndim != 3 or out.shape[0] < n or out.shape[1:] != (rows, cols) or not out.flags.c_contiguous:
        raise SettingsError(f"out must be a C-contiguous (≥{n}, {rows}, {cols}) array, got {out.shape}")
    out = out[:n]
    if n == 0:
        return out
    if check:
        good, _ = check_frames(arr, header, n)
        if good < n:
            raise InputError(f"MIB frame {good + 1} of {n}: its header differs from the first frame's "
                             f"({header.summary()}) or is damaged")
    if out.dtype != header.out_dtype:  # the kernels are compiled for the native types only
        out[...] = decode_frames(arr, header, n, check=False)
        return out
    fb, hb, depth = header.frame_bytes, header.header_bytes, header.counter_depth
    if not header.raw:
        _DECODERS[header.dtype](arr, n, fb, hb, out.reshape(n, -1))
        return out
    fast = sys.byteorder == "little" and depth != 24
    if header.is_raw_quad and fast and not header.gap:
        K.decode_raw_quad_fast(arr, n, fb, hb, out.reshape(n, -1).view(np.uint64), depth, K.BITS, K.RBITS, CHIP,
                               out.itemsize)
    elif header.is_raw_quad:
        K.decode_raw_quad(arr, n, fb, hb, out, depth, header.gap, K.BITS, fast, np.empty(4 * CHIP, out.dtype))
    else:
        K.decode_raw(arr, n, fb, hb, out.reshape(n, -1), depth, K.BITS, fast)
    return out
