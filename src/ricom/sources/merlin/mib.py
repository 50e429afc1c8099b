"""Quantum Detectors Merlin (Medipix3) ``.mib`` files: headers, decoding, writing, a source.

Byte-level facts are in FORMATS.md §1.  A ``.mib`` file is a sequence of frames, each an
ASCII header (H bytes, H from its 3rd field) and the pixels.  Processed data (``U08``,
``U16``, ``U32``) is big-endian and arrives assembled; raw data (``R64``) is unpacked
here, including the 2×2 quad chip reordering.  Pixels in file order are rows
top-to-bottom (no vertical flip).

Public functions, shared with the live client: `parse_frame_header`, `decode_frames`,
`check_frames`, `parse_acquisition_header`, `acquisition_scan_shape`, `encode_frames`,
`make_acquisition_header`.  The file reader is `ricom.sources.merlin.file.MerlinSource`.
"""
from __future__ import annotations

import datetime as _dt
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
        return (f"{self.dtype} {kind} depth {self.counter_depth}, {self.layout}, "
                f"{self.detector_shape[0]}×{self.detector_shape[1]}")

    def reference_bytes(self, raw: bytes) -> np.ndarray:
        """Fields 3–8 of ``raw`` (this header's bytes) with their commas, for `check_frames`."""
        head = bytes(raw[:self.header_bytes])
        start = head.index(b",", 4) + 1
        end = start
        for _ in range(6):
            end = head.index(b",", end) + 1
        return np.frombuffer(head[start:end], dtype=np.uint8).copy()


def _as_bytes(raw, limit: int) -> bytes:
    if isinstance(raw, np.ndarray):
        return raw.reshape(-1)[:limit].tobytes()
    return bytes(memoryview(raw)[:limit])


def parse_frame_header(raw, counter_depth: int | None = None) -> MibHeader:
    """Parse the header at the start of ``raw`` (bytes or uint8 array).

    Parameters
    ----------
    raw : bytes-like or ndarray
        At least the header bytes of one frame (more is fine).
    counter_depth : int, optional
        Used when the header lacks the ``MQ1A`` part (older software), e.g. from the
        ``.hdr``; raw data cannot be decoded without it.

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
    if "MQ1A" in values and values[-1].isdigit():
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
        cols = width // 2 if depth == 24 else width
        npx = height * cols
        if npx % 64:
            raise InputError(f"raw MIB frames of {height}×{width} pixels are not whole 64-bit words")
        pixel_bytes = {1: npx // 8, 6: npx, 12: 2 * npx, 24: 4 * npx}[depth]
        shape = (height, cols)
        if n_chips > 1:
            if n_chips != 4 or layout.upper().rstrip("G") != "2X2" or shape != (CHIP, 4 * CHIP):
                raise InputError(f"raw MIB data with {n_chips} chips in layout {layout!r} and {width}×{height} "
                                 f"pixels is not supported; record processed data (file format 0)")
            g = 2 if layout.upper().endswith("G") else 0
            shape = (2 * CHIP + g, 2 * CHIP + g)
    try:
        shutter = float(fields[10])
    except (ValueError, IndexError):
        shutter = float("nan")
    return MibHeader(hb, n_chips, width, height, code, layout, int(depth), seq, raw_data, pixel_bytes,
                     hb + pixel_bytes, shape, fields[9].strip() if len(fields) > 9 else "", shutter)


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


def _sci(v: float) -> str:
    """``2.000000E+0`` as Merlin writes thresholds."""
    m, e = f"{v:.6E}".split("E")
    return f"{m}E{int(e):+d}"


def _frame_header(seq: int, header_bytes: int, n_chips: int, width: int, height: int, code: str, layout: str,
                  depth: int, when: _dt.datetime, shutter_s: float, thresholds) -> bytes:
    dacs = "3RX," + ",".join(["011", "511"] + ["000"] * 6 + ["175", "010", "200", "125", "100", "100", "093",
                                                             "100", "099", "030", "128", "004", "255", "140",
                                                             "128", "191", "179", "511", "511"])
    th = list(thresholds) + [0.0] * (8 - len(thresholds))
    local = when.strftime("%Y-%m-%d %H:%M:%S.%f")
    utc = when.astimezone(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f") + "000Z"
    parts = ["MQ1", f"{seq:06d}", f"{header_bytes:05d}", f"{n_chips:02d}", f"{width:04d}", f"{height:04d}",
             code, f"{layout:>6}", "0F" if n_chips == 4 else f"{(1 << n_chips) - 1:02X}", local,
             f"{shutter_s:.6f}", "0", "0", "0", *(_sci(float(t)) for t in th[:8]),
             *([dacs] * n_chips), "MQ1A", utc, f"{round(shutter_s * 1e9)}ns", str(depth)]
    text = (",".join(parts) + ",").encode("ascii")
    if len(text) > header_bytes:
        raise SettingsError(f"MIB header text of {len(text)} bytes does not fit {header_bytes}")
    return text + b"\0" * (header_bytes - len(text))


def encode_frames(frames: np.ndarray, depth: int, raw: bool, quad: bool = False, start_seq: int = 1,
                  **header_fields) -> bytes:
    """Real MIB bytes (headers + pixels) for ``frames (n, rows, cols)``.

    Parameters
    ----------
    frames : ndarray
        Integer counts, each below ``2**depth``.  Quad data is the assembled
        512×512 pattern (514×514 with ``gap=True``).
    depth : int
        Counter depth 1, 6, 12 or 24.
    raw : bool
        Write ``R64`` raw words instead of processed big-endian pixels.
    quad : bool
        Four chips (768-byte headers, layout ``2x2``; raw data in chip order).
    start_seq : int
        Sequence number of the first frame.
    **header_fields
        ``gap`` (bool, layout ``2x2G``), ``shutter_s`` (float, default 0.001),
        ``thresholds`` (keV, up to 8), ``timestamp`` (datetime of the first frame).
    """
    if depth not in DEPTHS:
        raise SettingsError(f"counter depth must be one of {DEPTHS}, got {depth}")
    unknown = set(header_fields) - {"gap", "shutter_s", "thresholds", "timestamp"}
    if unknown:
        raise SettingsError(f"unknown MIB header fields {sorted(unknown)}; use gap, shutter_s, thresholds, timestamp")
    frames = np.asarray(frames)
    if frames.ndim == 2:
        frames = frames[None]
    if frames.ndim != 3 or frames.dtype.kind not in "uib":
        raise SettingsError(f"frames must be an integer (n, rows, cols) array, got {frames.dtype} {frames.shape}")
    n, rows, cols = frames.shape
    if n and (frames.min() < 0 or frames.max() >= 2 ** depth):
        raise SettingsError(f"counts must lie in 0…{2 ** depth - 1} for counter depth {depth}")
    gap = 2 if quad and header_fields.get("gap") else 0
    if quad and (rows, cols) != (2 * CHIP + gap, 2 * CHIP + gap):
        raise SettingsError(f"quad frames must be {2 * CHIP + gap}×{2 * CHIP + gap}, got {rows}×{cols}")
    layout = ("2x2G" if gap else "2x2") if quad else "1x1"
    n_chips, hb = (4, 768) if quad else (1, 384)
    if not raw:
        code = PROCESSED_CODE[depth]
        width, height = cols, rows
        pixels = frames.astype(">" + {"U08": "u1", "U16": "u2", "U32": "u4"}[code]).reshape(n, -1).view(np.uint8)
    else:
        code = "R64"
        if quad:
            src = np.empty((n, CHIP, 4 * CHIP), np.uint32)
            K.disassemble_quad(frames.astype(np.uint32), src, gap)
        else:
            src = frames.astype(np.uint32)
        height, cols_raw = src.shape[1:]
        if (height * cols_raw) % 64:
            raise SettingsError(f"raw frames need a multiple of 64 pixels, got {height}×{cols_raw}")
        width = 2 * cols_raw if depth == 24 else cols_raw
        px = src.reshape(n, -1)
        npx = px.shape[1]
        pixels = np.zeros((n, {1: npx // 8, 6: npx, 12: 2 * npx, 24: 4 * npx}[depth]), np.uint8)
        if depth == 1:
            K.encode_r1(px, pixels)
        elif depth == 6:
            K.encode_r6(px, pixels)
        elif depth == 12:
            K.encode_r12(px, pixels, 0)
        else:
            K.encode_r12(px, pixels[:, :2 * npx], 12)
            K.encode_r12(px, pixels[:, 2 * npx:], 0)
    when = header_fields.get("timestamp") or _dt.datetime.now().astimezone()
    shutter = float(header_fields.get("shutter_s", 0.001))
    thresholds = header_fields.get("thresholds", (2.0, 511.0))
    out = bytearray()
    for i in range(n):
        t = when + _dt.timedelta(seconds=shutter * i)
        out += _frame_header(start_seq + i, hb, n_chips, width, height, code, layout, depth, t, shutter, thresholds)
        out += pixels[i].tobytes()
    return bytes(out)


HDR_SIZE = 2048


def make_acquisition_header(n_frames: int, scan_shape=None, depth: int = 12, frames_per_trigger: int | None = None,
                            quad: bool = False, flyback_frames: int = 0, gap: bool = False,
                            timestamp: _dt.datetime | None = None) -> str:
    """The ``.hdr`` text Merlin writes beside a file and sends first on the live stream.

    ``scan_shape`` (rows, cols) adds ``ScanX``/``ScanY``; ``frames_per_trigger``
    defaults to one scan line (``cols + flyback_frames``), or 1 without a scan shape.
    The text uses CRLF line ends and is padded with spaces to 2048 characters.
    """
    if frames_per_trigger is None:
        frames_per_trigger = scan_shape[1] + flyback_frames if scan_shape else 1
    when = timestamp or _dt.datetime.now()
    layout = ("2x2G" if gap else "2x2") if quad else "1x1"
    lines = [
        "HDR,\t",
        f"Time and Date Stamp (day, mnth, yr, hr, min, s):\t{when.strftime('%d/%m/%Y %H:%M:%S')}",
        "Chip ID:\tW000_A0, - , - , - " if not quad else "Chip ID:\tW000_A0,W000_A1,W000_A2,W000_A3",
        "Chip Type (Medipix 3.0, Medipix 3.1, Medipix 3RX):\tMedipix 3RX",
        f"Assembly Size (NX1, 2X2):\t{layout:>6}",
        "Chip Mode  (SPM, CSM, CM, CSCM):\tSPM",
        f"Counter Depth (number):\t{depth}",
        "Gain:\tSLGM",
        "Active Counters:\tCounter 0",
        "Thresholds (keV):\t" + ",".join(_sci(v) for v in (2.0, 511.0, 0, 0, 0, 0, 0, 0)),
        "Gap Fill Mode:\tNone",
        "Flat Field File:\tNone",
        "Acquisition Type (Normal, Th_scan, Config):\tNormal",
        f"Frames in Acquisition (Number):\t{int(n_frames)}",
        f"Frames per Trigger (Number):\t{int(frames_per_trigger)}",
        "Trigger Start (Positive, Negative, Internal):\tInternal",
        "Trigger Stop (Positive, Negative, Internal):\tInternal",
        "Sensor Bias (V):\t120 V",
        "Sensor Polarity (Positive, Negative):\tPositive",
        "Readout System:\tMerlin Quad",
        "Software Version:\tricom",
    ]
    if scan_shape:
        lines += [f"ScanX:\t{int(scan_shape[1])}", f"ScanY:\t{int(scan_shape[0])}"]
    text = "\r\n".join(lines) + "\r\nEnd\t"
    return text + " " * max(0, HDR_SIZE - len(text))


def parse_acquisition_header(text) -> dict:
    """``Key: value`` pairs of a ``.hdr`` text (str or bytes; latin-1), keys without the colon."""
    if isinstance(text, (bytes, bytearray, memoryview)):
        text = bytes(text).decode("latin-1")
    if not text.lstrip().startswith("HDR"):
        raise InputError(f"not a Merlin acquisition header: expected 'HDR,' at the start, found {text[:16]!r}")
    out = {}
    for line in text.replace("\r", "").split("\n")[1:]:
        if line.startswith("End"):
            break
        key, sep, value = line.partition("\t")
        if not sep:
            key, sep, value = line.partition(":")
        if sep and key.strip():
            out[key.strip().rstrip(":").strip()] = value.strip()
    return out


def header_int(hdr: dict, key: str) -> int | None:
    try:
        return int(str(hdr.get(key, "")).split()[0])
    except (ValueError, IndexError):
        return None


def acquisition_scan_shape(hdr: dict, n_frames: int | None = None, flyback_frames: int = 0,
                           frames_per_position: int = 1) -> tuple[tuple[int, int] | None, str | None]:
    """Scan shape from an acquisition header and where it came from.

    ``ScanY × ScanX`` where present; else ``(frames ÷ frames-per-trigger,
    frames-per-trigger ÷ frames-per-position − flyback)`` for a line trigger, with frames
    from ``Frames in Acquisition`` (or ``n_frames`` when that is 0, i.e. continuous).
    Returns ``(None, None)`` when neither is usable.
    """
    sx, sy = header_int(hdr, "ScanX"), header_int(hdr, "ScanY")
    if sx and sy and sx > 0 and sy > 0:
        return (sy, sx), ".hdr ScanX/ScanY"
    fpt = header_int(hdr, "Frames per Trigger (Number)")
    total = header_int(hdr, "Frames in Acquisition (Number)") or n_frames
    if fpt and total and fpt > 0:
        cols = fpt // max(1, frames_per_position) - flyback_frames
        if cols > 0 and total // fpt > 0:
            return (total // fpt, cols), ".hdr frames per trigger"
    return None, None



# ----------------------------------------------------------------------------- the file reader
