"""``ricom info`` of event files (.tpx3, .t3p, event-list .h5): events shown as events.

Owns `describe_events` (one pass over the events, then the count, dwell and where it
came from, the scan's dwell time in total, trigger edges, dose) and `chip_layout_text`
(a Timepix3 chip layout chip by chip, e.g. ``chip 1: x 256–511 reversed, y 256–511
reversed``).  What it shows comes from the source's ``describe()`` and the
``.ricom.json`` sidecar that ``ricom simulate events`` writes.
"""
from __future__ import annotations

import os

from ricom.core.progress import Progress, count_text

CHIP_PIXELS = 256


def chip_layout_text(layout) -> str:
    """A chip layout (rows ``ox, oy, sx, sy, transpose``) in words.

    Examples
    --------
    >>> chip_layout_text([[0, 0, 1, 1, 0]])
    '1 chip, 256×256: chip 0: x 0–255, y 0–255'
    >>> chip_layout_text([[256, 0, 1, 1, 0], [511, 511, -1, -1, 0]])
    '2 chips, 512×512: chip 0: x 256–511, y 0–255; chip 1: x 256–511 reversed, y 256–511 reversed'
    """
    rows = [list(r) + [0] * (5 - len(r)) for r in layout]
    parts, x_max, y_max = [], 0, 0
    for i, (ox, oy, sx, sy, transpose) in enumerate(rows):
        xs = sorted((ox, ox + sx * (CHIP_PIXELS - 1)))
        ys = sorted((oy, oy + sy * (CHIP_PIXELS - 1)))
        x_max, y_max = max(x_max, xs[1]), max(y_max, ys[1])
        text = (f"chip {i}: x {xs[0]}–{xs[1]}{' reversed' if sx < 0 else ''}, "
                f"y {ys[0]}–{ys[1]}{' reversed' if sy < 0 else ''}")
        parts.append(text + (", x and y swapped" if transpose else ""))
    n = len(rows)
    return f"{n} chip{'s' if n != 1 else ''}, {y_max + 1}×{x_max + 1}: " + "; ".join(parts)


def read_all(source) -> None:
    """One pass over the events (the readers count and measure while they read)."""
    with Progress("info: reading events", source.n_frames, "events") as progress:
        for chunk in source.chunks():
            progress.update(len(chunk.positions))


def _sidecar(path: str) -> dict:
    """The ``events`` section of the ``.ricom.json`` sidecar written for this file, if any."""
    from ricom.sources.timepix.tpx3 import read_event_sidecar

    fmt = os.path.splitext(path.split(":")[0])[1].lstrip(".").lower()
    return read_event_sidecar(path, fmt)[0] if fmt in ("tpx3", "t3p") else {}


def _dwell(d: dict, side: dict, given: float | None, read: bool) -> tuple[float | None, str]:
    """The dwell time in ns and where it comes from."""
    if given is not None:
        return given, "given with --dwell-ns"
    measured = d.get("dwell_ns")
    if read and measured is not None and d.get("sync") == "line":
        also = f"; the .ricom.json sidecar says {side['dwell_ns']:g} ns" if side.get("dwell_ns") else ""
        return measured, f"measured from the line triggers{also}"
    if side.get("dwell_ns") is not None:
        return float(side["dwell_ns"]), "from the .ricom.json sidecar"
    if measured is not None:
        return measured, "from the file"
    return None, "measured from the line triggers when the events are read" if not read else "unknown"


def describe_events(source, path: str, read: bool = True, dwell_ns: float | None = None) -> tuple[dict, dict]:
    """(what ``ricom info`` prints, the same as JSON-friendly values) for an event source.

    Parameters
    ----------
    source : ricom.sources.base.Source
        An open event source (``kind == "events"``).
    path : str
        Its file, for the sidecar.
    read : bool
        Read every event first (count, measured dwell, trigger edges).
    dwell_ns : float, optional
        The dwell the user gave.
    """
    if read:
        read_all(source)
    d = source.describe()
    side = _sidecar(path)
    scan = d.get("scan_shape")
    n_pos = scan[0] * scan[1] if scan else None
    dwell, where = _dwell(d, side, dwell_ns, read)
    events = d.get("events_decoded", d.get("events_kept")) if read else None
    packets = d.get("packets") or {}
    out = {"kind": "events", "scan_shape": scan, "detector_shape": d.get("detector_shape"),
           "events": count_text(events) if events is not None else "not counted (--quick)",
           "records_in_file": count_text(d["n_frames"]) if d.get("n_frames") is not None else None}
    if read and d.get("acceptance_ns") is not None:
        out["events_kept"] = f"{count_text(d.get('events_kept', 0))} (within {d['acceptance_ns']:g} ns)"
    out["dwell"] = f"{dwell:g} ns ({where})" if dwell is not None else where
    if d.get("scan_positions"):  # a scan in a listed order: a pass is the list's points
        out["scan_order"] = (f"{count_text(d['n_scan_points'])} points listed in {d['scan_positions']}; "
                             f"{count_text(d['n_unvisited_positions'])} positions never visited (they stay empty)")
    n_points = d.get("n_scan_points") or n_pos
    if dwell is not None and n_points:
        out["duration"] = (f"{n_points * dwell / 1e6:.4g} ms of dwell ({count_text(n_points)} "
                           f"{'points' if d.get('scan_positions') else 'positions'} × {dwell:g} ns)")
    if read and n_pos and events is not None:
        out["mean_dose"] = f"{d.get('events_kept', events) / n_pos:.1f} electrons per position"
    if "sync" in d:
        out["sync"] = d["sync"]
    if packets:
        out["triggers"] = f"{count_text(packets.get('tdc', 0))} {d.get('trigger', 'TDC').upper()} edges"
    elif "trigger" in d:
        out["triggers"] = f"{d['trigger'].upper()} (not counted: --quick)"
    if d.get("chip_layout") is not None:
        out["chips"] = chip_layout_text(d["chip_layout"])
    for key in ("dropped_outside_scan", "dropped_by_acceptance", "late_hits"):
        if d.get(key):
            out[key] = count_text(d[key])
    if d.get("warnings"):
        out["warnings"] = d["warnings"]
    raw = {**d, "dwell_ns": dwell, "dwell_from": where, "events": events}
    return out, raw
