"""Time → scan position for timed event streams (Timepix3 ``.tpx3``, PIXet ``.t3p``).

`Synchroniser` takes blocks of decoded hits (arrival time, detector x, y, ToT) and
trigger edges, in stream order, and returns `EventChunk`s with flat scan positions.
Three modes (``../shared/FORMATS.md`` §3):

``line``
    a trigger rise starts a scan line, the fall ends it; dwell = line duration /
    (SX + flyback) unless ``dwell_ns`` is given; hits outside a line are dropped.
``pixel``
    each trigger rise moves the probe to the next position, which lasts until the next
    rise (or ``dwell_ns``, if given).
``dwell``
    no triggers: slot = (t − ``start_ns``) // ``dwell_ns``.

Positions are counted in *slots*: a line has SX + ``flyback_frames`` slots, the last
``flyback_frames`` of which are dropped; ``skip_lines`` whole lines and then
``skip_frames`` slots at the start are dropped; slots past the last line start a new
pass of the scan (they add to the same positions).  With ``scan_positions`` (a scan in
any order, `ricom.core.scan_positions.ScanPositions`) the k-th slot after the skipped ones
— the k-th pixel trigger, the k-th dwell slot, in line sync column k % SX of line
k // SX — is the k-th listed scan point: a pass has as many slots as the list has points,
and ``flyback_frames`` must be 0 (list those slots as −1); in line sync the list must fill
whole lines (a multiple of SX points), so a serpentine or interleaved scan with line
triggers is a list too.  With ``acceptance_ns`` only hits
within that time after the probe reached their position are kept (dose control).
With ``keep_times`` the chunks also carry each hit's arrival time after the probe reached
its position (``t_ns``) and its ToT (the engine needs neither; leaving them out is faster).

Hits may arrive out of order by up to ``order_window_ns``.  At each block only hits
older than (latest time seen − window) are final; younger ones are carried over to the
next block, so memory stays bounded by event rate × window — plus, in line mode without
``dwell_ns``, the hits of the line in progress (its dwell is known only at its end).
Positions whose time has fully passed are reported in ``EventChunk.positions_done``.
Hits later than the window are counted as late; they still land at the right position
while their line is among the last `KEEP_DONE` finished ones.

Times are int64 *ticks* of 3.125/12 ns: the 1.5625 ns hit and the 0.26 ns TDC
resolutions are both whole ticks.

This module owns the options (`SyncOptions`) and the block-by-block bookkeeping
(`Synchroniser`: trigger edges → time segments, the order window, the counts and
warnings); the compiled pass that places the hits of a block within the segments is
`ricom.sources.timepix.assign`.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np

from ricom.core.chunks import EventChunk
from ricom.core.errors import InputError, Param
from ricom.core.scan_positions import ScanPositions
from ricom.sources.timepix.assign import SEGMENT, assign_hits, points_done, slots_to_positions
from ricom.sources.timepix.plausible import (
    ISOLATION_MIN_NS,
    SUPPORT_HITS,
    check_dwell_span,
    check_scan_order,
    check_slots,
    check_sync_options,
    screen_hits,
)

TICK_NS = 3.125 / 12
"""Length of one time tick in ns."""

_FAR = np.iinfo(np.int64).max
DEFAULT_ORDER_WINDOW_NS = 2e5
"""Hits may arrive up to this late (200 µs) before they count as late."""


@dataclass
class SyncOptions:
    """How hit times map to scan positions (see the module docstring)."""

    scan_shape: tuple[int, int]
    mode: str = "line"
    dwell_ns: float | None = None
    acceptance_ns: float | None = None
    skip_lines: int = 0
    skip_frames: int = 0
    flyback_frames: int = 0
    start_ns: float = 0.0
    order_window_ns: float = DEFAULT_ORDER_WINDOW_NS
    keep_times: bool = False
    scan_positions: ScanPositions | None = None

    def __post_init__(self) -> None:
        check_sync_options(self)  # finite numbers of the right kind, a dwell of at least one hit tick
        if self.scan_positions is not None:
            check_scan_order(self)  # inside the scan, no flyback slots, whole lines in line sync

    @property
    def points_per_pass(self) -> int:
        """Scan points (slots that are points) in one pass: the listed ones, or SY·SX of a raster."""
        return len(self.scan_positions) if self.scan_positions is not None else self.scan_shape[0] * self.scan_shape[1]

    @property
    def slots_per_pass(self) -> int:
        """Slots of one pass (with a raster's flyback slots)."""
        if self.scan_positions is not None:
            return len(self.scan_positions)
        return self.scan_shape[0] * (self.scan_shape[1] + self.flyback_frames)


KEEP_DONE = 64
"""Finished segments kept so that hits arriving later than the order window still find them."""


class Synchroniser:
    """Assigns timed hits to scan positions block by block (see the module docstring).

    Use `buffers` to get arrays to decode a block into (the carried-over hits are
    already at their front), then `feed` with the trigger edges of the block.
    """

    def __init__(self, options: SyncOptions) -> None:
        self.o = options
        sx = options.scan_shape[1]
        self.line_len = sx + options.flyback_frames
        self.skip = options.skip_lines * self.line_len + options.skip_frames
        self._scan = np.array([self.skip, self.line_len, *options.scan_shape], np.int64)
        """Slot → position (`ricom.sources.timepix.assign.slot_position`): skip, line length, SY, SX."""
        order = options.scan_positions
        self._order = order.flat(options.scan_shape) if order is not None else np.zeros(0, np.int64)
        """The flat position of every scan point of a pass (empty: a raster)."""
        self.dwell = options.dwell_ns / TICK_NS if options.dwell_ns else None
        self.acceptance = options.acceptance_ns / TICK_NS if options.acceptance_ns else np.inf
        self.window = int(options.order_window_ns / TICK_NS)
        self.t0 = round(options.start_ns / TICK_NS)
        self._bufs = (np.zeros(0, np.int64), *(np.zeros(0, np.uint16) for _ in range(3)))
        self._n_carry = 0
        """Hits carried over to the next block: they stay at the front of ``_bufs``."""
        self._edges_t = np.zeros(0, np.int64)
        self._edges_rise = np.zeros(0, bool)
        self._segs = np.zeros(0, SEGMENT)
        self._done = np.zeros(0, SEGMENT)
        self._new: list[tuple] = []
        self._open: int | None = None
        self._durations: deque = deque(maxlen=64)
        self._n_segments = 0
        self._max_seen: int | None = None
        self._max_hit: int | None = None
        self._horizon = -_FAR
        self.gap = int(max(options.order_window_ns, ISOLATION_MIN_NS) / TICK_NS)
        """A hit this far after all before it is checked as a time outlier (`screen_hits`)."""
        self.screen_state = np.array([0, 0, 0, self.gap], np.int64)
        """Time-outlier screening: [latest time kept, valid, block pre-checked by its decoder, gap]."""
        self.counts = dict.fromkeys(("hits", "kept", "outside", "rejected", "skipped", "late", "late_lost",
                                     "positions_done", "points_done", "missing_end", "stray_end",
                                     "outliers"), 0)
        self.warnings: list[str] = []

    # ------------------------------------------------------------------ input
    def buffers(self, n_new: int):
        """Arrays (t, x, y, tot) of the carry plus room for ``n_new`` hits, and the offset.

        The arrays are reused from block to block (they are private to the source); the
        carry stays where `feed` left it, at their front.
        """
        n_c = self._n_carry
        if self._bufs[0].shape[0] < n_c + n_new:
            n = max(n_c + n_new, int(1.25 * self._bufs[0].shape[0]))
            grown = (np.empty(n, np.int64), *(np.empty(n, np.uint16) for _ in range(3)))
            for a, c in zip(grown, self._bufs, strict=True):
                a[:n_c] = c[:n_c]
            self._bufs = grown
        return self._bufs, n_c

    def feed(self, bufs, n_hits: int, edges_t: np.ndarray, edges_rise: np.ndarray, final: bool = False) -> EventChunk:
        """Process a block: ``bufs[k][:n_hits]`` (from `buffers`) hold carry + new hits; edges in any order.

        The new hits are screened for time outliers first (`ricom.sources.timepix.plausible.screen_hits`):
        those are counted and left out, and the latest time is taken over the hits kept.
        """
        n_hits, max_hit = self._screen(bufs, n_hits)
        t, x, y, tot = (b[:n_hits] for b in bufs)
        if max_hit is not None:
            self._max_hit = max_hit if self._max_hit is None else max(self._max_hit, max_hit)
        latest = [v for v in (self._max_hit, self._max_seen, edges_t.max() if edges_t.size else None)
                  if v is not None]
        self._max_seen = max(latest) if latest else None
        safe = _FAR if final else (self._max_seen - self.window if self._max_seen is not None else -_FAR)
        self._take_edges(edges_t, edges_rise, safe)
        if final:
            self._close_open()
        horizon = safe if self._open is None else min(safe, self._open)
        if self.o.mode == "dwell":
            self._dwell_segments(horizon, final)
        self._flush_new()
        segs = np.concatenate([self._done, self._segs])
        n_t = n_hits if self.o.keep_times else 0
        out = (np.empty(n_hits, np.int64), np.empty(n_hits, np.uint16), np.empty(n_hits, np.uint16),
               np.empty(n_t, np.float32), np.empty(n_t, np.uint16))
        counters = np.zeros(5, np.int64)
        n_out, n_carry = assign_hits(t, x, y, tot, horizon, self._horizon, segs["start"], segs["end"], segs["dwell"],
                                     segs["ncols"], segs["slot0"], self._scan, self._order, self.acceptance, TICK_NS,
                                     self.o.keep_times, *out, counters)
        self._horizon = max(self._horizon, horizon)
        if bufs is not self._bufs:  # (not from `buffers`: keep the carry where `buffers` looks)
            self._bufs = tuple(a[:n_carry].copy() for a in (t, x, y, tot))
        self._n_carry = n_carry
        for key, v in zip(("outside", "rejected", "skipped", "late", "late_lost"), counters, strict=True):
            self.counts[key] += int(v)
        self.counts["kept"] += n_out
        done = self._segs["end"] <= horizon
        finished = self._segs[done]
        self._segs = self._segs[~done]
        self._done = np.concatenate([self._done, finished])[-KEEP_DONE:]
        k = finished["ncols"]
        check_slots(int(k.sum()), f"{finished.shape[0]:,} finished {self._unit()} of one block")
        first = np.cumsum(k) - k
        slots = np.repeat(finished["slot0"], k) + np.arange(int(k.sum())) - np.repeat(first, k)
        positions_done = slots_to_positions(slots, self.skip, self.line_len, self.o.scan_shape,
                                            self._order if self._order.size else None)
        positions_done = positions_done[positions_done >= 0]
        self.counts["positions_done"] += positions_done.shape[0]
        self.counts["points_done"] += points_done(slots, self.skip, self.line_len, self.o.scan_shape[1],
                                                  bool(self._order.size))
        if final:
            self._final_checks()
        pos, ox, oy, ot, otot = (a[:n_out] for a in out)
        if not self.o.keep_times:
            ot = otot = None
        return EventChunk(pos, ox, oy, ot, otot, positions_done)

    def _screen(self, bufs, n_hits: int) -> tuple[int, int | None]:
        """Leave out the time outliers among the new hits (after the carry); (hits now, latest time kept)."""
        start, state = self._n_carry, self.screen_state
        if n_hits <= start:
            return n_hits, None
        self.counts["hits"] += n_hits - start
        if state[2]:  # its decoder found no hit ahead of the others: nothing to leave out
            state[2] = 0
        else:
            end, n_out = screen_hits(bufs[0], bufs[1], bufs[2], bufs[3], start, n_hits, self.gap, SUPPORT_HITS, state)
            self.counts["outliers"] += n_out
            n_hits = end
        return n_hits, (int(state[0]) if state[1] else None)

    # ------------------------------------------------------------------ triggers
    def _take_edges(self, edges_t, edges_rise, safe) -> None:
        """Turn the trigger edges older than ``safe`` into segments (lines or positions)."""
        if self.o.mode == "dwell":
            return
        all_t = np.concatenate([self._edges_t, np.asarray(edges_t, np.int64)])
        all_r = np.concatenate([self._edges_rise, np.asarray(edges_rise, bool)])
        order = np.argsort(all_t, kind="stable")
        all_t, all_r = all_t[order], all_r[order]
        ready = all_t < safe
        self._edges_t, self._edges_rise = all_t[~ready], all_r[~ready]
        if self.o.mode == "line":
            for te, rise in zip(all_t[ready].tolist(), all_r[ready].tolist(), strict=True):
                self._line_edge(te, rise)
        else:
            self._pixel_edges(all_t[ready & all_r])
        if self._open is not None and self._durations and safe != _FAR and \
                safe - self._open > 4 * self._median():
            self.counts["missing_end"] += 1  # the end trigger never came: close the segment
            self._add_segment(self._open, self._open + self._median())
            self._open = None

    def _line_edge(self, te: int, rise: bool) -> None:
        if rise:
            if self._open is not None:  # two rises: the fall between them is missing
                self.counts["missing_end"] += 1
                end = min(te, self._open + self._median()) if self._durations else te
                self._add_segment(self._open, end)
            self._open = te
        elif self._open is None:
            self.counts["stray_end"] += 1
        else:
            self._durations.append(te - self._open)
            self._add_segment(self._open, te)
            self._open = None

    def _pixel_edges(self, rises: np.ndarray) -> None:
        """One segment per trigger period (or per dwell time after each trigger)."""
        if self.dwell is not None:
            self._add_segments(rises, rises + int(np.ceil(self.dwell)))
            return
        seq = rises if self._open is None else np.concatenate([[self._open], rises])
        if seq.size:
            self._durations.extend(np.diff(seq[-65:]).tolist())
            self._add_segments(seq[:-1], seq[1:])
            self._open = int(seq[-1])

    def _median(self) -> int:
        """``int(np.median(durations))`` without NumPy's per-call cost (called every block)."""
        d = sorted(self._durations)
        k = len(d) // 2
        return int(d[k] if len(d) % 2 else (d[k - 1] + d[k]) / 2)

    def _add_segment(self, start: int, end: int) -> None:
        k = self._n_segments
        self._n_segments += 1
        if self.o.mode == "line":
            dwell = self.dwell if self.dwell is not None else max(end - start, 1) / self.line_len
            self._new.append((start, end, dwell, k * self.line_len, self.line_len))
        else:
            self._new.append((start, end, float(max(end - start, 1)), k, 1))

    def _add_segments(self, starts: np.ndarray, ends: np.ndarray) -> None:
        """Pixel-trigger segments, vectorised."""
        self._flush_new()
        new = np.zeros(starts.shape[0], SEGMENT)
        new["start"], new["end"], new["ncols"] = starts, ends, 1
        new["dwell"] = np.maximum(ends - starts, 1)
        new["slot0"] = self._n_segments + np.arange(starts.shape[0])
        self._n_segments += starts.shape[0]
        self._segs = np.concatenate([self._segs, new])

    def _flush_new(self) -> None:
        if self._new:
            self._segs = np.concatenate([self._segs, np.array(self._new, SEGMENT)])
            self._new = []

    def _close_open(self) -> None:
        """At the end of the data: close a line or position whose end never came."""
        if self._open is None:
            return
        if self._durations:
            end = self._open + self._median()
        else:
            end = max(self._open, self._max_hit or self._open) + 1
        if self.o.mode == "line":
            self.counts["missing_end"] += 1
        self._add_segment(self._open, end)
        self._open = None

    def _dwell_segments(self, horizon: int, final: bool) -> None:
        """Lines of the dwell-time-only mode up to ``horizon`` (or the last hit, at the end)."""
        if self._max_hit is None:
            return
        line_t = self.dwell * self.line_len
        limit = self._max_hit + 1 if final else min(horizon, self._max_hit + 1)
        first = self._n_segments
        last = max(first, int(np.ceil((limit - self.t0) / line_t)) if limit > self.t0 else 0)
        if last > first:  # before anything is allocated: do the events' times fit the scan?
            check_dwell_span(last * self.line_len - self.skip, self.o.slots_per_pass,
                             self.counts["hits"], limit * TICK_NS * 1e-9, self.o.dwell_ns, self.o.start_ns,
                             self.o.scan_shape)
            check_slots((last - first) * self.line_len, f"{last - first:,} dwell lines of one block")
        k = np.arange(first, last)
        new = np.zeros(k.shape[0], SEGMENT)
        new["start"] = np.floor(self.t0 + k * line_t)
        new["end"] = np.ceil(self.t0 + (k + 1) * line_t)
        new["dwell"], new["slot0"], new["ncols"] = self.dwell, k * self.line_len, self.line_len
        self._segs = np.concatenate([self._segs, new])
        self._n_segments = last
        if final and self._segs.shape[0]:  # the scan ended with the last hit: no positions after it
            last_slot = int((self._max_hit - self.t0) // self.dwell)
            slot0, ncols = int(self._segs["slot0"][-1]), int(self._segs["ncols"][-1])
            self._segs["ncols"][-1] = max(0, min(ncols, last_slot - slot0 + 1))

    # ------------------------------------------------------------------ report
    def _final_checks(self) -> None:
        c, (sy, sx) = self.counts, self.o.scan_shape
        name = {"line": "line triggers", "pixel": "pixel triggers", "dwell": "dwell periods"}[self.o.mode]
        if c["hits"] == 0:
            raise InputError("the input holds no pixel hits")
        if self.o.mode != "dwell" and self._n_segments == 0:
            raise InputError(f"no {name} in the data: use the right trigger channel, ", Param("sync", "pixel"),
                             " or ", Param("sync", "dwell"), " with ", Param("dwell_ns", form=True))
        if c["missing_end"]:
            what = "lines" if self.o.mode == "line" else "trigger periods"
            self.warnings.append(f"{c['missing_end']} {what} had no end trigger; closed after the median "
                                 f"duration")
        if c["stray_end"]:
            self.warnings.append(f"{c['stray_end']} end triggers without a start trigger were ignored")
        if c["late"]:
            self.warnings.append(f"{c['late']} hits arrived more than order_window_ns late ({c['late_lost']} "
                                 f"of them too late to place, dropped); raise order_window_ns")
        if c["outliers"]:
            n = c["outliers"]
            self.warnings.append(f"{n} event{'s' if n != 1 else ''} with times far outside the scan "
                                 f"{'were' if n != 1 else 'was'} left out (each more than "
                                 f"{self.gap * TICK_NS * 1e-6:g} ms after the events before it, and not followed "
                                 f"by others: corrupt times)")
        if self.o.mode == "dwell":
            self._dwell_end()
            return
        slots = self.o.slots_per_pass
        per_pass = slots // self.line_len if self.o.mode == "line" else slots
        used = self._n_segments - (self.o.skip_lines if self.o.mode == "line" else self.skip)
        unit = "lines" if self.o.mode == "line" else "positions"
        scan = f"the {slots} listed scan points" if self.o.scan_positions is not None else f"a scan of {sy}×{sx}"
        if used < per_pass or used % per_pass:
            self.warnings.append(f"{self._n_segments} {name} do not fit {scan} (a pass "
                                 f"needs {per_pass} {unit} after skipping): check the scan shape; "
                                 f"the last pass is incomplete")

    def _dwell_end(self) -> None:
        """Warn if the events end inside a pass of the scan (no trigger says where the scan ends)."""
        (sy, sx), done = self.o.scan_shape, self.counts["points_done"]
        per_pass = self.o.points_per_pass
        if done and done % per_pass == 0:
            return
        into = done % per_pass
        passes = f" of pass {done // per_pass + 1}" if done >= per_pass else ""
        where = f"line {into // sx + 1} of {sy}" if self.o.scan_positions is None else \
            f"point {into + 1} of {per_pass} listed"
        self.warnings.append(f"the events end at {100 * into / per_pass:.0f} % of the scan{passes} ({where}): "
                             f"the data are truncated, or check scan_shape and dwell_ns")

    def _unit(self) -> str:
        return {"line": "lines", "pixel": "trigger periods", "dwell": "dwell lines"}[self.o.mode]

    @property
    def n_segments(self) -> int:
        """Lines (line sync) or trigger periods (pixel sync) found so far."""
        return self._n_segments

    def measured_dwell_ns(self) -> float | None:
        """The dwell time in use: given, or from the median line / trigger interval."""
        if self.dwell is not None:
            return round(self.dwell * TICK_NS, 6)
        if not self._durations:
            return None
        per = self.line_len if self.o.mode == "line" else 1
        return round(float(np.median(self._durations)) / per * TICK_NS, 6)
