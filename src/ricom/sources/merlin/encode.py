"""Writing Merlin ``.mib`` frames: headers and pixels as the detector records them.

Owns `encode_frames`: real MIB bytes (processed or raw, single chip or quad) for the
simulators (`ricom.simulators.merlin`), the benchmarks and the tests.  The frames are
read back by `ricom.sources.merlin.mib`; the acquisition header that goes with them is
`ricom.sources.merlin.hdr.make_acquisition_header`.
"""
from __future__ import annotations

import datetime as _dt

import numpy as np

from ricom.core.errors import SettingsError
from ricom.sources.merlin import _compiled as K
from ricom.sources.merlin.hdr import threshold_text
from ricom.sources.merlin.mib import CHIP, DEPTHS, PROCESSED_CODE, raw_pixel_bytes


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
        pixels, width, height = _raw_pixels(frames, depth, quad, gap)
    when = header_fields.get("timestamp") or _dt.datetime.now().astimezone()
    shutter = float(header_fields.get("shutter_s", 0.001))
    thresholds = header_fields.get("thresholds", (2.0, 511.0))
    out = bytearray()
    for i in range(n):
        t = when + _dt.timedelta(seconds=shutter * i)
        out += _frame_header(start_seq + i, hb, n_chips, width, height, code, layout, depth, t, shutter, thresholds)
        out += pixels[i].tobytes()
    return bytes(out)


def _raw_pixels(frames: np.ndarray, depth: int, quad: bool, gap: int) -> tuple[np.ndarray, int, int]:
    """``R64`` pixel bytes ``(n, pixel_bytes)`` of frames (quad: in chip order), and the
    width and height the frame header states."""
    n = frames.shape[0]
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
    pixels = np.zeros((n, raw_pixel_bytes(npx, depth)), np.uint8)
    if depth == 1:
        K.encode_r1(px, pixels)
    elif depth == 6:
        K.encode_r6(px, pixels)
    elif depth == 12:
        K.encode_r12(px, pixels, 0)
    else:
        K.encode_r12(px, pixels[:, :2 * npx], 12)
        K.encode_r12(px, pixels[:, 2 * npx:], 0)
    return pixels, width, height


def _frame_header(seq: int, header_bytes: int, n_chips: int, width: int, height: int, code: str, layout: str,
                  depth: int, when: _dt.datetime, shutter_s: float, thresholds) -> bytes:
    """One frame header as Merlin writes it, padded with NUL bytes to ``header_bytes``."""
    dacs = "3RX," + ",".join(["011", "511"] + ["000"] * 6 + ["175", "010", "200", "125", "100", "100", "093",
                                                             "100", "099", "030", "128", "004", "255", "140",
                                                             "128", "191", "179", "511", "511"])
    th = list(thresholds) + [0.0] * (8 - len(thresholds))
    local = when.strftime("%Y-%m-%d %H:%M:%S.%f")
    utc = when.astimezone(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f") + "000Z"
    parts = ["MQ1", f"{seq:06d}", f"{header_bytes:05d}", f"{n_chips:02d}", f"{width:04d}", f"{height:04d}",
             code, f"{layout:>6}", "0F" if n_chips == 4 else f"{(1 << n_chips) - 1:02X}", local,
             f"{shutter_s:.6f}", "0", "0", "0", *(threshold_text(float(t)) for t in th[:8]),
             *([dacs] * n_chips), "MQ1A", utc, f"{round(shutter_s * 1e9)}ns", str(depth)]
    text = (",".join(parts) + ",").encode("ascii")
    if len(text) > header_bytes:
        raise SettingsError(f"MIB header text of {len(text)} bytes does not fit {header_bytes}")
    return text + b"\0" * (header_bytes - len(text))
