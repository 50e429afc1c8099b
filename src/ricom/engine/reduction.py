"""Chunks into reducers: the per-pattern reduction, the detector look-ups and the moments.

`ChunkReduction` takes chunks of patterns, single-electron events or per-pattern moments
at scan positions in any order.  Each frame chunk goes through the per-pattern reduction
once (`ricom.engine.frame_input`, with the current `ricom.engine.lookups.DetectorLookups`);
the moments reducer (`ricom.engine.moments.Moments`) adds it to the per-position sums —
never a pattern — and further reducers (`add_reducer`) see the same chunk.  It is what
reference scans, calibration passes and Dask workers run; `ricom.engine.Reconstruction`
adds the riCOM image on top.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import numpy as np

from ricom.core.chunks import EncodedFrames
from ricom.core.errors import Param, SettingsError
from ricom.core.params import Settings, shape2
from ricom.engine.detector import bright_field_radius
from ricom.engine.event_input import EventHold, centre_and_bf_radius, checked_events
from ricom.engine.event_store import DEFAULT_MAX_EVENTS, EventStore, accepted
from ricom.engine.frame_input import checked_frames, checked_positions, estimate_centre, reduce_frames
from ricom.engine.lookups import NO_LOOKUPS, DetectorLookups, build_lookups, detector_radii_px
from ricom.engine.moments import Moments, MomentsPart
from ricom.engine.reducer import ReducedChunk, Reducer
from ricom.engine.workers import Workers


@dataclass
class PreparedFrames:
    """A chunk reduced by `ChunkReduction.prepare_frames`, not yet added, and the look-ups used."""

    chunk: ReducedChunk
    lookups: DetectorLookups


class ChunkReduction:
    """Chunks of one scan into the moments reducer (and any further reducers).

    Parameters
    ----------
    scan_shape, detector_shape, reference_center_yx, repeats, threads
        As for `ricom.engine.reconstruction.Reconstruction`.
    settings : Settings, optional
        The geometry's centre, the virtual detectors, the COM mask and the calibration
        are used here (kernel and rotation matter to the image only).
    lookups : DetectorLookups, optional
        Detector look-ups fixed by the caller (a Dask client hands its own to the workers).

    Examples
    --------
    >>> import numpy as np
    >>> red = ChunkReduction((2, 3), (4, 4))
    >>> red.process_frames(np.ones((6, 4, 4), np.uint16), start=0)
    >>> red.n_patterns, red.center_yx()
    (6, (1.5, 1.5))
    """

    def __init__(self, scan_shape, detector_shape, settings: Settings | None = None,
                 reference_center_yx: tuple[float, float] | None = None, repeats: str = "sum",
                 threads: int = 1, lookups: DetectorLookups = NO_LOOKUPS) -> None:
        if int(threads) < 1:
            raise SettingsError(f"threads must be at least 1, got {threads}")
        self.threads = int(threads)
        self.scan_shape = shape2("scan shape", scan_shape)
        self.detector_shape = shape2("detector shape", detector_shape)
        self._lock = threading.RLock()
        self._settings = settings if settings is not None else Settings()
        self._reference_center = reference_center_yx
        self._check_settings(self._settings)
        self.moments = Moments(self.scan_shape[0] * self.scan_shape[1], lookups.n_rings, repeats)
        self.lookups = lookups
        self.reducers: list[Reducer] = []
        self._events = EventHold()
        self.acceptance_ns: float | None = None
        """Events arriving later than this after the probe are left out (`set_acceptance`)."""
        self.event_store: EventStore | None = None
        self._replaying = False
        self.seconds_processing = 0.0
        self._t_first: float | None = None

    # ------------------------------------------------------------------ counters
    repeats = property(lambda self: self.moments.repeats)
    counters = property(lambda self: self.moments.counters, doc="`MomentCounters` of everything added.")
    n_patterns = property(lambda self: self.moments.counters.n_patterns)
    n_empty = property(lambda self: self.moments.counters.n_empty)
    n_invalid = property(lambda self: self.moments.counters.n_invalid)
    n_outside = property(lambda self: self.moments.counters.n_outside)
    n_events = property(lambda self: self.moments.counters.n_events)
    n_invalid_events = property(lambda self: self.moments.counters.n_invalid_events)

    # ------------------------------------------------------------------ settings

    @property
    def settings(self) -> Settings:
        return self._settings

    def _check_settings(self, s: Settings) -> None:
        c = s.geometry.center_yx
        if c is not None:
            dy, dx = self.detector_shape
            if not (0 <= c[0] <= dy - 1 and 0 <= c[1] <= dx - 1):
                raise SettingsError(f"centre ({c[0]:g}, {c[1]:g}) lies outside the {dy}×{dx} detector; give ",
                                    Param("center_yx", form=True), " in detector pixels or ",
                                    Param("center_yx", "auto"))
        for vd in s.virtual_detectors:
            if vd.unit == "mrad":
                vd.radii_px(s.calibration)

    def add_reducer(self, reducer: Reducer) -> None:
        """Let ``reducer`` see every frame chunk from now on, beside the moments and the image."""
        with self._lock:
            self.reducers.append(reducer)

    # ------------------------------------------------------------------ centre

    def center_yx(self) -> tuple[float, float] | None:
        """The centre in use: given › from the reference › the running mean COM (None before data)."""
        given = self._settings.geometry.center_yx
        if given is not None:
            return given
        if self._reference_center is not None:
            return self._reference_center
        return self.running_centre_yx()

    def running_centre_yx(self) -> tuple[float, float] | None:
        """The mean uncentred COM of the positions seen so far (what an auto centre uses)."""
        with self._lock:
            return self.moments.running_centre()

    def uncentred_com(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Raw per-position COM (row, column) in detector pixels and the total counts.

        Empty positions are NaN.  This is what calibration (centre, descan, rotation)
        works from.
        """
        with self._lock:
            return self.moments.uncentred_com(self.scan_shape)

    @property
    def lookup_centre_yx(self) -> tuple[float, float] | None:
        """The centre the detector look-ups (rings, COM mask) were built around, if any."""
        return self.lookups.centre_yx_px

    def ring_boundaries_px(self) -> dict[str, tuple[float, float]]:
        """Radii (px) of each virtual detector as used (after BF-radius estimation)."""
        return detector_radii_px(self._settings, self.lookups.bf_radius_px)

    # ------------------------------------------------------------------ frames

    def process_frames(self, frames: np.ndarray, positions: np.ndarray | None = None,
                       start: int | None = None, scan_pass=None) -> None:
        """Add a chunk of patterns.

        Parameters
        ----------
        frames : ndarray or PackedFrames
            ``(k, det_y, det_x)`` (or ``(..., det_y, det_x)``), any integer or float dtype,
            any byte order; or patterns packed in a file buffer (read without a copy).
        positions : ndarray of int, optional
            Flat scan index ``iy * scan_x + ix`` per frame; ``-1`` skips a frame.
        start : int, optional
            Instead of ``positions``: frames are at consecutive positions from ``start``.
        scan_pass : int or ndarray of int, optional
            Scan pass of each frame (used when ``repeats="replace"``).
        """
        with Workers(self.threads) as workers:
            self.add_prepared(self.prepare_frames(frames, positions, start, scan_pass, workers=workers))

    def prepare_frames(self, frames: np.ndarray, positions: np.ndarray | None = None,
                       start: int | None = None, scan_pass=None, workers: Workers | None = None) -> PreparedFrames:
        """The per-pattern reduction of a chunk, ready for `add_prepared` (the first half of
        `process_frames`).

        Safe to call from several threads at once: it reads the patterns and changes no
        state, so a pipeline reduces the next chunks on worker threads while the calling
        thread adds the previous ones.  ``workers`` shares this one chunk over their
        threads (leave it out when chunks already run in parallel).
        """
        encoded = frames if isinstance(frames, EncodedFrames) else None
        frames = checked_frames(frames, self.detector_shape, self._settings.com_mask_px is not None)
        positions = checked_positions(positions, start, frames.shape[0], self.scan_shape)
        with self._lock:
            if self._t_first is None:
                self._t_first = time.perf_counter()
            self._ensure_lookups(frames)
            lookups = self.lookups
        chunk = self._reduce(frames, positions, scan_pass, lookups, workers)
        chunk.encoded = encoded
        return PreparedFrames(chunk, lookups)

    def _reduce(self, frames, positions, scan_pass, lookups, workers) -> ReducedChunk:
        return reduce_frames(frames, positions, scan_pass, lookups, workers)

    def add_prepared(self, prepared: PreparedFrames) -> None:
        """Add a chunk reduced by `prepare_frames` and bring the image up to date.

        If the settings changed the detector look-ups meanwhile, the chunk is reduced again
        with the new ones, so the result is the same as with `process_frames`.
        """
        with self._lock:
            chunk = prepared.chunk
            if self.lookups.missing(self._settings) or prepared.lookups is not self.lookups:
                self._ensure_lookups(chunk.frames)
                encoded = chunk.encoded
                chunk = self._reduce(chunk.frames, chunk.positions, chunk.scan_pass, self.lookups, None)
                chunk.encoded = encoded
            self._add(chunk)

    def process_moments(self, positions: np.ndarray, moments: np.ndarray, scan_pass=None) -> None:
        """Add per-pattern moments computed elsewhere.

        ``moments`` has rows TOTAL, SUM_X, SUM_Y and the ring sums of
        `ring_boundaries_px`, one column per entry of ``positions``.
        """
        positions = checked_positions(positions, None, moments.shape[1], self.scan_shape)
        moments = np.ascontiguousarray(moments, dtype=np.float64)
        if self._t_first is None:
            self._t_first = time.perf_counter()
        with self._lock:
            self._add(ReducedChunk(positions, moments, np.isfinite(moments).all(axis=0), scan_pass))

    def merge_moments(self, part: MomentsPart | Moments) -> None:
        """Add the moments reducer's result of other chunks of this scan (a Dask task's, say)."""
        if self._t_first is None:
            self._t_first = time.perf_counter()
        with self._lock:
            self._after_add(self.moments.merge(part))

    def _add(self, chunk: ReducedChunk) -> None:
        n_t = self.moments.process(chunk)
        for reducer in self.reducers:
            reducer.process(chunk)
        self._after_add(n_t)

    def _ensure_lookups(self, frames) -> None:
        """Build the COM mask and ring look-ups once a centre (and BF radius) is known."""
        if self.lookups.missing(self._settings):
            centre = self.center_yx() or estimate_centre(frames, self.detector_shape)
            self._build_lookups(centre, lambda: bright_field_radius(frames))

    def _build_lookups(self, centre, bf_radius) -> None:
        self.lookups = build_lookups(self._settings, self.detector_shape, centre, bf_radius, self.lookups)
        if self.lookups.n_rows != self.moments.n_rows:
            self.moments.set_rings(self.lookups.n_rings)

    # ------------------------------------------------------------------ events

    def process_events(self, chunk) -> None:
        """Add a chunk of single-electron events (`ricom.core.chunks.EventChunk`).

        Each event at ``chunk.positions[i] ≥ 0`` adds one count at detector column/row
        ``(x[i], y[i])`` to its scan position: the COM is the event-count-weighted mean of
        the (sub-pixel) event coordinates, never truncated to whole pixels; virtual
        detectors count events by their radius from the centre.  Positions listed in
        ``chunk.positions_done`` count as processed patterns (``n_patterns``, ``hits``);
        without that list a position counts the first time it receives events.

        While the centre or the bright-field radius of the virtual detectors is still
        unknown, events are held back until
        `ricom.engine.event_input.MIN_EVENTS_FOR_LUT` have arrived (or `finalize`) and
        the look-ups are built from them.  Events of repeated scan passes add up
        (``repeats="replace"`` acts on frames only).  Reducers see the chunk as it came
        (`ricom.engine.reducer.Reducer.process_event_chunk`); the moments only the events
        within the acceptance time (`set_acceptance`).
        """
        item = checked_events(chunk, self.scan_shape)
        if self._t_first is None:
            self._t_first = time.perf_counter()
        if self.acceptance_ns is not None and chunk.t_ns is None:
            raise SettingsError("an acceptance time needs the events' arrival times, and this source sends none; "
                                "leave out ", Param("acceptance_ns"), " or open the source with keep_times=True")
        with self._lock:
            for reducer in self.reducers:
                reducer.process_event_chunk(chunk)
            if self.event_store is not None:
                self.event_store.keep(item, chunk.t_ns)
            self._take_events(accepted(item, chunk.t_ns, self.acceptance_ns))

    def _take_events(self, item: tuple) -> None:
        """Add a checked event chunk, or hold it back until the look-ups can be built."""
        if self.lookups.missing(self._settings) or self._events:
            if self._events.keep(item):
                self._flush_events()
            return
        self._add_events(*item)

    def keep_events(self, max_events: int = DEFAULT_MAX_EVENTS) -> None:
        """From now on keep every event with its arrival time (up to ``max_events``), so
        that `set_acceptance` can rebuild the scan with another acceptance time."""
        with self._lock:
            self.event_store = EventStore(max_events)

    def set_acceptance(self, acceptance_ns: float | None) -> None:
        """Count only electrons that arrived within ``acceptance_ns`` of the probe reaching
        their position (None: all) — for everything received so far and to come.

        The moments (and the image) are rebuilt from the events kept by `keep_events`,
        so the result is what a run with this acceptance time from the start gives.
        Raises `SettingsError` when events arrived that were not kept (without
        `keep_events`, or past its bound): then the new value can hold from the next
        scan only, and nothing changed here.
        """
        if acceptance_ns is not None and not (float(acceptance_ns) > 0 and np.isfinite(acceptance_ns)):
            raise SettingsError(f"the acceptance time must be a positive number of ns, got {acceptance_ns!r}; "
                                f"give ", Param("acceptance_ns", form=True), " or None (keep every electron)")
        acceptance_ns = None if acceptance_ns is None else float(acceptance_ns)
        with self._lock:
            store = self.event_store
            received = self.moments.counters.n_events or self._events or (store is not None and store.n_events)
            if received and (store is None or not store.complete or not store.has_times):
                why = "were not kept" if store is None else (
                    f"were more than the {store.max_events} kept" if not store.complete else "came without times")
                raise SettingsError(f"the events received so far {why}, so the acceptance time cannot change "
                                    f"for this scan; it can from the next scan on")
            self.acceptance_ns = acceptance_ns
            if received:
                self._replay(store)

    def _replay(self, store: EventStore) -> None:
        """Moments afresh from the kept events, with the current acceptance time."""
        self._events.take()
        self.moments = Moments(self.moments.n_positions, self.lookups.n_rings, self.moments.repeats)
        self._replaying = True
        try:
            for item, t_ns in store.items():
                self._take_events(accepted(item, t_ns, self.acceptance_ns))
        finally:
            self._replaying = False
        self._after_replay()

    def _after_replay(self) -> None:
        """Called under the lock once `_replay` has rebuilt the moments (the image follows)."""

    def _flush_events(self) -> None:
        """Build the detector look-ups from the held-back events, then add them."""
        items = self._events.take()
        if not items:
            return
        if self.lookups.missing(self._settings):
            self._build_lookups(*centre_and_bf_radius(items, self.center_yx(), self.detector_shape))
        for item in items:
            self._add_events(*item)

    def _add_events(self, positions, x, y, done, count_visits) -> None:
        integer = x.dtype.kind in "ui" and y.dtype.kind in "ui"
        lookups = self.lookups.event_lookups(self._settings, integer, self.detector_shape)
        self._after_add(self.moments.process_events(positions, x, y, lookups, done, count_visits))

    def _after_add(self, n_touched: int) -> None:
        """Called under the lock after each addition with the number of touched positions
        (listed in ``self.moments.touched``); `ricom.engine.Reconstruction` updates its
        image here."""
        self.seconds_processing = time.perf_counter() - self._t_first

    def warm_up(self, frames) -> None:
        """Run a few patterns like those to come through a throwaway copy, so that the
        compiled kernels are loaded before the first real chunk (a live acquisition's
        first chunk would otherwise wait ~0.2 s for them)."""
        twin = ChunkReduction((1, len(frames)), self.detector_shape, self._settings)
        twin.process_frames(frames, start=0)

    def finalize(self) -> None:
        """Process the events still held back for the detector look-ups."""
        with self._lock:
            self._flush_events()
