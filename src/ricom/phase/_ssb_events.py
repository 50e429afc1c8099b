"""Single-electron events as SSB input: which detector pixel each event hit, and which events count.

Owns `EventPatterns` (an event chunk checked by the engine's rules, events after the
acceptance time left out, each event's detector pixel) and `full_map` (detector pixel →
kept binned pixel), so that events add into the SSB sums exactly as the patterns they
make would.  An event at column/row ``(x, y)`` (sub-pixel allowed) belongs to the pixel
whose centre is nearest, ``floor(x + 0.5)``, ``floor(y + 0.5)``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ricom.core.errors import Param, SettingsError
from ricom.engine.event_input import checked_events
from ricom.engine.event_store import accepted


@dataclass
class EventPatterns:
    """One event chunk as SSB reads it.

    Attributes
    ----------
    positions : ndarray of int64
        Flat scan position of each accepted event (−1: outside the scan).
    pixels : ndarray of int64
        Flat detector pixel of each event (−1: off the detector).
    x, y : ndarray of float64
        The events' column and row (for the centre).
    done : ndarray of int64
        Positions whose dwell ended in this chunk (they count as patterns).
    count_visits : bool
        The chunk lists no ``done`` positions: a position counts when it first receives events.
    """

    positions: np.ndarray
    pixels: np.ndarray
    x: np.ndarray
    y: np.ndarray
    done: np.ndarray
    count_visits: bool

    @classmethod
    def of(cls, chunk, scan_shape, detector_shape, acceptance_ns: float | None) -> EventPatterns:
        if acceptance_ns is not None and chunk.t_ns is None:
            raise SettingsError("these events carry no arrival times, so an acceptance time cannot apply; leave out ",
                                Param("acceptance_ns"), " or open the source with ", Param("keep_times", True))
        item = accepted(checked_events(chunk, tuple(scan_shape)), chunk.t_ns, acceptance_ns)
        positions, x, y, done, count_visits = item
        x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
        dy, dx = detector_shape
        col, row = np.floor(x + 0.5), np.floor(y + 0.5)
        on = (col >= 0) & (col < dx) & (row >= 0) & (row < dy)
        pixels = np.where(on, row * dx + col, -1).astype(np.int64)
        return cls(np.asarray(positions, np.int64), pixels, x, y, done, count_visits)

    def new_patterns(self, seen: np.ndarray) -> int:
        """Patterns this chunk completes; ``seen`` (bool per position) is updated when visits count."""
        if not self.count_visits:
            return len(self.done)
        pos = np.unique(self.positions[self.positions >= 0])
        fresh = pos[~seen[pos]]
        seen[fresh] = True
        return len(fresh)


def full_map(sources: np.ndarray, targets: np.ndarray, n_pixels: int) -> np.ndarray:
    """Detector pixel (flat) → index of its kept binned pixel, −1 elsewhere."""
    out = np.full(n_pixels, -1, np.int64)
    out[sources] = targets
    return out
