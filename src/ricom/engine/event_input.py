"""The event half of the engine: single-electron events into the same per-position state.

`EventInput` is mixed into `ricom.engine.reconstruction.Reconstruction`; it reduces `EventChunk`s to
per-position moments with `ricom.engine.compiled.accumulate_events` (sub-pixel COM, ring counts)
and hands them to the same riCOM scatter as frames.  Kept apart only to keep the engine
file short: it works on the engine's own state.
"""
from __future__ import annotations

import math
import time

import numpy as np

from ricom.core.errors import InputError
from ricom.engine import compiled as C
from ricom.engine.detector import bright_field_radius, event_histogram

MIN_EVENTS_FOR_LUT = 100_000
"""Events held back until the centre and bright-field radius for the virtual detectors
(and COM mask) can be estimated from them (all of them if the data ends earlier)."""


class EventInput:
    """Event input of `ricom.engine.reconstruction.Reconstruction` (see the module docstring)."""

    def process_events(self, chunk) -> None:
        """Add a chunk of single-electron events (`ricom.sources.base.EventChunk`).

        Each event at ``chunk.positions[i] ≥ 0`` adds one count at detector column/row
        ``(x[i], y[i])`` to its scan position: the COM is the event-count-weighted mean of
        the (sub-pixel) event coordinates, never truncated to whole pixels; virtual
        detectors count events by their radius from the centre.  Positions listed in
        ``chunk.positions_done`` count as processed patterns (``n_patterns``, ``hits``);
        without that list a position counts the first time it receives events.

        While the centre or the bright-field radius of the virtual detectors is still
        unknown, events are held back until `MIN_EVENTS_FOR_LUT` have arrived (or
        `finalize`) and the look-ups are built from them.  Events of repeated scan passes
        add up (``repeats="replace"`` acts on frames only).
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
        n_pos = self._hits.shape[0]
        for what, arr in (("event", positions), ("completed", done)):
            if arr.size and arr.max() >= n_pos:
                raise InputError(f"{what} scan position {arr.max()} is outside the "
                                 f"{self.scan_shape[0]}×{self.scan_shape[1]} scan")
        if self._t_first is None:
            self._t_first = time.perf_counter()
        item = (positions, x, y, done, chunk.positions_done is None)
        with self._lock:
            if self._luts_needed() or self._pending_events:
                self._pending_events.append(tuple(a.copy() if isinstance(a, np.ndarray) else a for a in item))
                self._pending_n += positions.shape[0]
                if self._pending_n >= MIN_EVENTS_FOR_LUT:
                    self._flush_events()
                return
            self._ingest_events(*item)

    def _flush_events(self) -> None:
        """Build the detector look-ups from the held-back events, then add them."""
        pending, self._pending_events, self._pending_n = self._pending_events, [], 0
        if not pending:
            return
        if self._luts_needed():
            xs = np.concatenate([p[1][p[0] >= 0] for p in pending]).astype(np.float64)
            ys = np.concatenate([p[2][p[0] >= 0] for p in pending]).astype(np.float64)
            centre = self.center_yx()
            if centre is None:
                centre = (float(ys.mean()), float(xs.mean())) if xs.size else \
                    ((self.detector_shape[0] - 1) / 2, (self.detector_shape[1] - 1) / 2)
            self._build_luts(centre, lambda: bright_field_radius(
                event_histogram(ys, xs, self.detector_shape)[None]))
        for item in pending:
            self._ingest_events(*item)

    def _ingest_events(self, positions, x, y, done, count_visits) -> None:
        s = self._settings
        n_rings = self._state.shape[0] - C.FIRST_RING
        bounds = self._ring_bounds
        if bounds is None or n_rings == 0 or bounds.shape[0] - 1 != n_rings:
            bounds = np.zeros(0)
        use_mask = s.com_mask_px is not None and self._com_mask is not None
        lo, hi = s.com_mask_px if use_mask else (0.0, math.inf)
        cy, cx = self._rings_centre if self._rings_centre is not None else (0.0, 0.0)
        # integer coordinates: ring and mask from the per-pixel look-ups (same answer, faster)
        use_lut = x.dtype.kind in "ui" and y.dtype.kind in "ui"
        ring_lut = self._ring_of_pixel if bounds.shape[0] and self._ring_of_pixel is not None else None
        if ring_lut is None:
            ring_lut = np.broadcast_to(np.int32(-1), self.detector_shape)  # shape for the bounds check only
        mask_lut = self._com_mask if use_mask else np.ones((1, 1), np.uint8)
        counters = np.zeros(4, np.int64)
        self._generation += 1
        n_t = C.accumulate_events(positions, x, y, ring_lut, mask_lut, use_lut, bounds * bounds, cy, cx, lo * lo,
                                  hi * hi, use_mask, self._state, self._hits, self._stamp, self._generation,
                                  self._touched, self._centre_sums, done, count_visits, counters)
        self.n_invalid_events += int(counters[0])
        self.n_patterns += int(counters[1])
        self.n_empty += int(counters[2])
        self.n_events += int(counters[3])
        self._scatter(n_t)
