"""The Merlin acquisition header (the ``.hdr`` text): reading it, its scan shape, writing it.

Merlin writes this text beside a ``.mib`` file and sends it first on the live stream
(FORMATS.md §1–2): ``Key:<TAB>value`` lines between ``HDR,`` and ``End``.  Owns
`parse_acquisition_header`, `header_int`, `acquisition_scan_shape` (read by the file and
live sources) and `make_acquisition_header` (for the simulators and tests), and
`threshold_text`, Merlin's number format, shared with the frame headers
`ricom.sources.merlin.encode` writes.
"""
from __future__ import annotations

import datetime as _dt

from ricom.core.errors import InputError


def threshold_text(v: float) -> str:
    """A number as Merlin writes thresholds.

    Examples
    --------
    >>> threshold_text(2.0), threshold_text(511)
    ('2.000000E+0', '5.110000E+2')
    """
    m, e = f"{v:.6E}".split("E")
    return f"{m}E{int(e):+d}"


HDR_SIZE = 2048
"""Characters of an acquisition header as Merlin writes it (padded with spaces)."""


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
        "Thresholds (keV):\t" + ",".join(threshold_text(v) for v in (2.0, 511.0, 0, 0, 0, 0, 0, 0)),
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
    """The leading integer of ``hdr[key]`` (``"120 V"`` → 120), or None if missing or not a number."""
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
