"""The ``events`` section of an event file's ``.ricom.json`` sidecar (written by ``ricom simulate
events``; names in `ricom.core.sidecar`), read with every value checked.

The readers take scan shape, dwell time, chip layout and sync mode from it when they are
not given (`scan_shape_of` checks the scan shape, given or read, against the memory
budget).  A value of the wrong kind (``"dwell_ns": "1000"``, ``"chip_layout": 5``) is
ignored with a warning naming the file and the key, as `ricom.sources.arrays.read_sidecar`
does for the calibration: the reader then asks for the value, or the user gives it.
"""
from __future__ import annotations

import json
import pathlib
import warnings
from numbers import Integral

from ricom.core.params import check_scan_memory, shape2
from ricom.core.sidecar import find_sidecar
from ricom.sources.arrays import _positive, read_sidecar
from ricom.sources.timepix.plausible import HIT_TICK_NS

SYNC_MODES = ("line", "pixel", "dwell")


def _whole(v) -> bool:
    return isinstance(v, Integral) and not isinstance(v, bool)


def _scan_shape(v):
    ok = isinstance(v, (list, tuple)) and len(v) == 2 and all(_whole(k) and k > 0 for k in v)
    return [int(k) for k in v] if ok else None


def _dwell(v):
    v = _positive(v)
    return v if v is not None and v >= HIT_TICK_NS else None


def _chip_layout(v):
    if isinstance(v, str) and v.strip():
        return v
    rows_ok = isinstance(v, list) and v and all(
        isinstance(r, list) and len(r) in (4, 5) and all(_whole(k) for k in r) for r in v)
    return v if rows_ok else None


CHECKS = {
    "scan_shape": (_scan_shape, "two positive whole numbers [rows, columns]"),
    "dwell_ns": (_dwell, f"a number of at least {HIT_TICK_NS:g} (ns)"),
    "chip_layout": (_chip_layout, "a layout name or rows [ox, oy, sx, sy(, transpose)] of whole numbers"),
    "sync": (lambda v: v if v in SYNC_MODES else None, f"one of {', '.join(SYNC_MODES)}"),
}
"""Key → (the value checked, or None if unusable; what it must be)."""


def read_event_sidecar(path: str, fmt: str) -> tuple[dict, dict]:
    """``events`` section and calibration hints of the file's ``.ricom.json`` sidecar.

    Both are empty unless the sidecar was written for this format (an older
    ``<stem>.ricom.json`` may belong to ``scan.t3p`` or ``scan.npy`` beside ``scan.tpx3``).
    Keys of `CHECKS` whose value is unusable are left out, each with a warning.
    """
    side = find_sidecar(path) or ""
    try:  # (the readers' modules define `open`, hence pathlib)
        section = json.loads(pathlib.Path(side).read_text()).get("events", {})
    except (OSError, ValueError, AttributeError):
        return {}, {}
    if not isinstance(section, dict) or section.get("format") != fmt:
        return {}, {}
    out = dict(section)
    for key, (check, what) in CHECKS.items():
        if out.get(key) is None:
            continue
        value = check(out[key])
        if value is None:
            warnings.warn(f"{side}: events.{key} must be {what}, got {out[key]!r}; ignored", stacklevel=3)
            del out[key]
        else:
            out[key] = value
    return out, read_sidecar(path)


def scan_shape_of(path: str, given, side: dict) -> tuple[int, int] | None:
    """The scan shape given, else the sidecar's (None if neither), as two positive integers that
    fit in memory (`ricom.core.params.check_scan_memory`), before anything is allocated."""
    if given is None and side.get("scan_shape") is None:
        return None
    origin = "given" if given is not None else "from the .ricom.json sidecar"
    sy, sx = shape2("scan_shape", given if given is not None else side["scan_shape"])
    check_scan_memory(sy * sx, f"{path}: scan shape {sy}×{sx} ({origin})", from_file=given is None)
    return sy, sx
