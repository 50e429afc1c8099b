"""Event chunks into the engine: checks, and events held back until the look-ups exist.

Single-electron events (`ricom.core.chunks.EventChunk`) are reduced straight into the
per-position moments (`ricom.engine.moments.Moments.process_events`: sub-pixel COM, ring
counts).  While the centre or the bright-field radius behind the virtual detectors (or
COM mask) is unknown, `EventHold` keeps the events until `MIN_EVENTS_FOR_LUT` have
arrived (or the run ends) so the look-ups can be estimated from them.
"""
from __future__ import annotations

import numpy as np

from ricom.core.errors import InputError
from ricom.engine.detector import bright_field_radius, event_histogram

MIN_EVENTS_FOR_LUT = 100_000
"""Events held back until the centre and bright-field radius for the virtual detectors
(and COM mask) can be estimated from them (all of them if the data ends earlier)."""


def checked_events(chunk, scan_shape: tuple[int, int]) -> tuple:
    """``(positions, x, y, done, count_visits)`` of an event chunk, checked.

    ``done`` lists positions whose dwell ended (they count as patterns); without it
    (``count_visits``) a position counts the first time it receives events.
    """
    positions = np.ascontiguousarray(chunk.positions, dtype=np.int64).ravel()
    x = np.ascontiguousarray(chunk.x).ravel()
    y = np.ascontiguousarray(chunk.y).ravel()
    if not positions.shape[0] == x.shape[0] == y.shape[0]:
        raise InputError(f"event chunk with {positions.shape[0]} positions, {x.shape[0]} x and "
                         f"{y.shape[0]} y values; they must have one entry per event")
    if x.dtype.kind not in "uif" or y.dtype.kind not in "uif":
        raise InputError(f"event coordinates must be numbers, got {x.dtype} and {y.dtype}")
    done = np.zeros(0, np.int64) if chunk.positions_done is None else \
        np.ascontiguousarray(chunk.positions_done, dtype=np.int64).ravel()
    n_pos = scan_shape[0] * scan_shape[1]
    for what, arr in (("event", positions), ("completed", done)):
        if arr.size and arr.max() >= n_pos:
            raise InputError(f"{what} scan position {arr.max()} is outside the {scan_shape[0]}×{scan_shape[1]} scan")
    return positions, x, y, done, chunk.positions_done is None


class EventHold:
    """Events kept back until the detector look-ups can be built from them."""

    def __init__(self) -> None:
        self.items: list[tuple] = []
        self.n_events = 0

    def __bool__(self) -> bool:
        return bool(self.items)

    def keep(self, item: tuple) -> bool:
        """Keep a copy of a checked event chunk; True once enough events are held."""
        self.items.append(tuple(a.copy() if isinstance(a, np.ndarray) else a for a in item))
        self.n_events += item[0].shape[0]
        return self.n_events >= MIN_EVENTS_FOR_LUT

    def take(self) -> list[tuple]:
        """The held chunks, in order; the hold is empty afterwards."""
        items, self.items, self.n_events = self.items, [], 0
        return items


def centre_and_bf_radius(items: list[tuple], centre, detector_shape) -> tuple[tuple[float, float], object]:
    """Centre (given, else the events' mean position) and a function giving the BF radius."""
    xs = np.concatenate([p[1][p[0] >= 0] for p in items]).astype(np.float64)
    ys = np.concatenate([p[2][p[0] >= 0] for p in items]).astype(np.float64)
    if centre is None:
        centre = (float(ys.mean()), float(xs.mean())) if xs.size else \
            ((detector_shape[0] - 1) / 2, (detector_shape[1] - 1) / 2)
    return centre, lambda: bright_field_radius(event_histogram(ys, xs, detector_shape)[None])
