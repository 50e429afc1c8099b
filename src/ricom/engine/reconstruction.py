"""The reconstruction engine: one object holds the state and does the physics.

`Reconstruction` takes chunks of patterns (or precomputed per-pattern moments) at scan
positions in any order and keeps, per position, the total counts, first moments and
virtual-detector ring sums — never a pattern.  Each chunk immediately scatters the
riCOM kernel of every updated position into the image (the real-time form), clipped at
the scan edges.  A change of kernel, rotation, flip, centre or calibration rebuilds the
image from the stored moments, so it always shows what the current settings give for
everything seen so far.  `snapshot` returns a consistent copy from any thread.

The riCOM update itself is `ricom.engine.compiled.scatter_touched`; the kernel is built in
`ricom.engine.kernels`.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import numpy as np

from ricom.core.errors import InputError, SettingsError
from ricom.core.params import MAX_KERNEL_SIZE, Settings, shape2
from ricom.engine import compiled as C
from ricom.engine.event_input import EventInput
from ricom.engine.frame_input import FrameReduction
from ricom.engine.kernels import BlockScatter, correlate, correlation_kernels, scatter_kernels
from ricom.engine.snapshot import Snapshot
from ricom.sources.base import PackedFrames

_NO_PASS = np.zeros(0, np.int64)


@dataclass
class PreparedFrames:
    """A chunk reduced to per-pattern sums by `Reconstruction.prepare_frames`, not yet added."""

    frames: np.ndarray | PackedFrames
    positions: np.ndarray
    scan_pass: object
    moments: np.ndarray
    luts: tuple


AUTO_CENTRE_TOLERANCE_PX = 0.02
"""The live image is rebuilt when the running centre estimate moves by more than this."""


class Reconstruction(FrameReduction, EventInput):
    """Incremental riCOM reconstruction of one scan.

    Parameters
    ----------
    scan_shape : (int, int)
        (scan_y, scan_x).
    detector_shape : (int, int)
        (det_y, det_x) of the patterns.
    settings : Settings, optional
        Kernel, geometry, calibration and virtual detectors.
    reference_center_yx : (float, float), optional
        Centre measured on a vacuum reference scan; used when the geometry's centre is
        auto (``None``) instead of the running mean COM.
    repeats : {"sum", "replace"}
        What a later scan pass does at a position already seen: ``"sum"`` adds its
        counts (averaging repeated scans), ``"replace"`` shows the newest pass only (live
        viewing while the operator tunes focus).  Passes are told by ``scan_pass``.
    threads : int
        Worker threads for the per-pattern sums of each chunk (compiled code releases the
        GIL); the kernel scatter stays in the calling thread.

    Examples
    --------
    >>> import numpy as np
    >>> from ricom import Reconstruction, Settings, KernelSettings, DetectorGeometry
    >>> data = np.random.default_rng(0).poisson(5.0, (8, 8, 16, 16))
    >>> rec = Reconstruction((8, 8), (16, 16), Settings(kernel=KernelSettings(5),
    ...                      geometry=DetectorGeometry(center_yx=(7.5, 7.5))))
    >>> rec.process_frames(data.reshape(-1, 16, 16), positions=np.arange(64))
    >>> rec.snapshot().ricom.shape
    (8, 8)
    """

    def __init__(self, scan_shape, detector_shape, settings: Settings | None = None,
                 reference_center_yx: tuple[float, float] | None = None, repeats: str = "sum",
                 threads: int = 1) -> None:
        if repeats not in ("sum", "replace"):
            raise SettingsError(f"repeats must be 'sum' or 'replace', got {repeats!r}")
        if int(threads) < 1:
            raise SettingsError(f"threads must be at least 1, got {threads}")
        self.repeats = repeats
        self.threads = int(threads)
        self._pool = None
        self.scan_shape = shape2("scan shape", scan_shape)
        self.detector_shape = shape2("detector shape", detector_shape)
        self._lock = threading.RLock()
        self._settings = settings if settings is not None else Settings()
        self._reference_center = reference_center_yx
        self._check_settings(self._settings)
        n_pos = self.scan_shape[0] * self.scan_shape[1]
        self._hits = np.zeros(n_pos, np.int64)
        self._last_pass = np.full(n_pos if repeats == "replace" else 0, -1, np.int64)
        self._stamp = np.zeros(n_pos, np.int64)
        self._generation = 0
        self._touched = np.zeros(n_pos, np.int64)
        self._centre_sums = np.zeros(3)
        self._scattered_x = np.zeros(n_pos)
        self._scattered_y = np.zeros(n_pos)
        self._image = np.zeros(self.scan_shape)
        self._centre_used: tuple[float, float] | None = None
        self._rings_centre: tuple[float, float] | None = None
        self._ring_of_pixel: np.ndarray | None = None
        self._ring_runs: np.ndarray | None = None
        self._vd_rings: dict[str, np.ndarray] = {}
        self._ring_bounds: np.ndarray | None = None
        self._pending_events: list[tuple] = []
        self._pending_n = 0
        self._bf_radius_px: float | None = None
        self._state = np.zeros((C.FIRST_RING, n_pos))
        self._descan = np.zeros((2, n_pos))
        self._com_mask: np.ndarray | None = None
        self.n_patterns = 0
        self.n_empty = 0
        self.n_invalid = 0
        self.n_outside = 0
        self.n_events = 0
        self.n_invalid_events = 0
        self.seconds_processing = 0.0
        self._t_first: float | None = None
        self._prepare_kernel()

    # ------------------------------------------------------------------ settings
    @property
    def settings(self) -> Settings:
        return self._settings

    def _check_settings(self, s: Settings) -> None:
        n = s.kernel.size
        limit = min(MAX_KERNEL_SIZE, 2 * max(self.scan_shape) + 1)
        if n > limit:
            raise SettingsError(f"kernel size {n} is larger than needed for a {self.scan_shape[0]}×"
                                f"{self.scan_shape[1]} scan; use at most {limit}")
        c = s.geometry.center_yx
        if c is not None:
            dy, dx = self.detector_shape
            if not (0 <= c[0] <= dy - 1 and 0 <= c[1] <= dx - 1):
                raise SettingsError(f"centre ({c[0]:g}, {c[1]:g}) lies outside the {dy}×{dx} detector; "
                                    f"give --center CY CX in detector pixels or --center auto")
        for vd in s.virtual_detectors:
            if vd.unit == "mrad":
                vd.radii_px(s.calibration)

    def _prepare_kernel(self) -> None:
        step = self._settings.calibration.step
        self._sx_kernel, self._sy_kernel = scatter_kernels(self._settings.kernel, step)
        self._block_scatter = BlockScatter(self._sx_kernel, self._sy_kernel)

    def update_settings(self, settings: Settings) -> None:
        """Apply new settings; the image is rebuilt from everything seen so far.

        Virtual detectors and the COM mask act on patterns as they arrive, so new ones
        apply from the next chunk on (their images restart at zero).
        """
        self._check_settings(settings)
        with self._lock:
            old = self._settings
            self._settings = settings
            if settings.virtual_detectors != old.virtual_detectors or settings.com_mask_px != old.com_mask_px:
                self._ring_of_pixel = None
                self._ring_bounds = None
                self._ring_runs = None
                self._vd_rings = {}
                self._com_mask = None
                self._state = self._state[:C.FIRST_RING].copy()
            if settings.kernel != old.kernel or settings.calibration.step != old.calibration.step:
                self._prepare_kernel()
            self._rebuild()

    # ------------------------------------------------------------------ centre
    def center_yx(self) -> tuple[float, float] | None:
        """The centre in use: given, from the reference, or the running mean COM."""
        given = self._settings.geometry.center_yx
        if given is not None:
            return given
        if self._reference_center is not None:
            return self._reference_center
        n = self._centre_sums[2]
        if n <= 0:
            return None
        return (self._centre_sums[1] / n, self._centre_sums[0] / n)

    def _geometry_args(self):
        cy, cx = self._centre_used if self._centre_used is not None else (0.0, 0.0)
        m = self._settings.geometry.matrix()
        return cy, cx, self._descan, self._settings.calibration.com_scale, *m

    def set_descan(self, offset_y: np.ndarray | None, offset_x: np.ndarray | None = None) -> None:
        """Per-position shift of the pattern centre (detector pixels), e.g. a fitted plane
        or a vacuum reference's COM map minus its mean; ``None`` clears it.  Rebuilds."""
        with self._lock:
            if offset_y is None:
                self._descan = np.zeros_like(self._descan)
            else:
                oy = np.broadcast_to(np.asarray(offset_y, np.float64), self.scan_shape)
                ox = np.broadcast_to(np.asarray(offset_x, np.float64), self.scan_shape)
                self._descan = np.ascontiguousarray(np.stack([oy.ravel(), ox.ravel()]))
            self._rebuild()

    def uncentred_com(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Raw per-position COM (row, column) in detector pixels and the total counts.

        Empty positions are NaN.  This is what calibration (centre, descan, rotation)
        works from.
        """
        with self._lock:
            t = self._state[C.TOTAL].reshape(self.scan_shape).copy()
            with np.errstate(invalid="ignore", divide="ignore"):
                cy = np.where(t > 0, self._state[C.SUM_Y].reshape(self.scan_shape) / t, np.nan)
                cx = np.where(t > 0, self._state[C.SUM_X].reshape(self.scan_shape) / t, np.nan)
            return cy, cx, t

    def moment_maps(self) -> tuple[np.ndarray, np.ndarray]:
        """Copies of the per-position sums (rows: total, Σ I·x, Σ I·y, ring sums — see
        `ricom.engine.compiled`) and of the patterns per position; what a Dask worker returns."""
        with self._lock:
            return self._state.copy(), self._hits.copy()

    @property
    def lookup_centre_yx(self) -> tuple[float, float] | None:
        """The centre the detector look-ups (rings, COM mask) were built around, if any."""
        return self._rings_centre

    # ------------------------------------------------------------------ input
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
        self.add_prepared(self.prepare_frames(frames, positions, start, scan_pass))

    def prepare_frames(self, frames: np.ndarray, positions: np.ndarray | None = None,
                       start: int | None = None, scan_pass=None, split: bool = True) -> PreparedFrames:
        """The per-pattern sums of a chunk, ready for `add_prepared` (the first half of
        `process_frames`).

        Safe to call from several threads at once: it reads the patterns and changes no
        state, so a pipeline (`ricom.engine.pipeline.run`) reduces the next chunks on worker threads
        while the calling thread adds the previous ones.  ``split`` shares one chunk over
        the `threads` workers (leave it off when chunks already run in parallel).
        """
        frames = self._checked_frames(frames)
        positions = self._positions(positions, start, frames.shape[0])
        with self._lock:
            if self._t_first is None:
                self._t_first = time.perf_counter()
            self._ensure_detector_luts(frames)
            luts = self._detector_luts()
        return PreparedFrames(frames, positions, scan_pass, self._frame_moments(frames, luts, split), luts)

    def add_prepared(self, chunk: PreparedFrames) -> None:
        """Add a chunk reduced by `prepare_frames` and bring the image up to date.

        If the settings changed the detector look-ups meanwhile, the chunk is reduced again
        with the new ones, so the result is the same as with `process_frames`.
        """
        with self._lock:
            now = self._detector_luts()
            luts = chunk.luts
            moments = chunk.moments
            if self._luts_needed() or now[0] is not luts[0] or now[1] is not luts[1] or now[3] != luts[3]:
                self._ensure_detector_luts(chunk.frames)
                moments = self._frame_moments(chunk.frames, self._detector_luts(), True)
            self._ingest(chunk.positions, moments, chunk.scan_pass)

    def _checked_frames(self, frames):
        """Frames as (k, ny, nx) in a dtype the compiled kernels take, or packed frames."""
        if isinstance(frames, PackedFrames):
            if frames.frame_shape != self.detector_shape:
                raise InputError(f"patterns of shape {frames.frame_shape} do not match the detector "
                                 f"shape {self.detector_shape}")
            if self._settings.com_mask_px is None and (frames.bits == 1 or frames.dtype.itemsize <= 2):
                return frames
            frames = frames.unpack()
        frames = np.asarray(frames)
        if frames.ndim < 2 or frames.shape[-2:] != self.detector_shape:
            raise InputError(f"patterns of shape {frames.shape[-2:]} do not match the detector "
                             f"shape {self.detector_shape}")
        frames = frames.reshape((-1, *self.detector_shape))
        if frames.dtype.kind not in "uif":
            raise InputError(f"pattern dtype {frames.dtype} is not a number type")
        if frames.dtype.kind == "u" and frames.dtype.itemsize == 8:
            return frames.astype(np.int64)
        if not frames.dtype.isnative and not (frames.dtype.kind == "u" and frames.dtype.itemsize <= 2):
            return frames.astype(frames.dtype.newbyteorder("="))
        return frames

    def process_moments(self, positions: np.ndarray, moments: np.ndarray, scan_pass=None) -> None:
        """Add per-pattern moments computed elsewhere (event decoders, Dask workers).

        ``moments`` has rows TOTAL, SUM_X, SUM_Y and the ring sums of
        `ring_boundaries_px`, one column per entry of ``positions``.
        """
        positions = self._positions(positions, None, moments.shape[1])
        if self._t_first is None:
            self._t_first = time.perf_counter()
        with self._lock:
            if moments.shape[0] != self._state.shape[0]:
                raise InputError(f"expected {self._state.shape[0]} moment rows, got {moments.shape[0]}")
            self._ingest(positions, np.ascontiguousarray(moments, dtype=np.float64), scan_pass)

    def _positions(self, positions, start, k) -> np.ndarray:
        n_pos = self._hits.shape[0]
        if positions is None:
            first = 0 if start is None else int(start)
            positions = np.arange(first, first + k, dtype=np.int64)
            positions[positions >= n_pos] = -1
        positions = np.ascontiguousarray(positions, dtype=np.int64).ravel()
        if positions.shape[0] != k:
            raise InputError(f"{positions.shape[0]} positions for {k} patterns")
        if positions.size and positions.max() >= n_pos:
            raise InputError(f"scan position {positions.max()} is outside the "
                             f"{self.scan_shape[0]}×{self.scan_shape[1]} scan")
        return positions

    def _ingest(self, positions: np.ndarray, moments: np.ndarray, scan_pass=None) -> None:
        valid = np.isfinite(moments).all(axis=0)
        inside = positions >= 0
        self.n_outside += int((~inside).sum())
        self.n_invalid += int((inside & ~valid).sum())
        counted = inside & valid
        self.n_patterns += int(counted.sum())
        self.n_empty += int((counted & ~(moments[C.TOTAL] > 0)).sum())
        self._generation += 1
        if self.repeats == "replace":
            frame_pass = np.broadcast_to(np.asarray(0 if scan_pass is None else scan_pass, np.int64),
                                         positions.shape).copy()
        else:
            frame_pass = _NO_PASS
        n_t = C.accumulate(positions, moments, valid, self._state, self._hits, self._stamp,
                           self._generation, self._touched, self._centre_sums, frame_pass, self._last_pass)
        self._scatter(n_t)

    def _scatter(self, n_t: int) -> None:
        """Follow the centre estimate and scatter the ``n_t`` touched positions."""
        centre = self.center_yx()
        if centre is None:  # nothing but empty patterns so far
            centre = ((self.detector_shape[0] - 1) / 2, (self.detector_shape[1] - 1) / 2)
        if self._centre_used is None:
            self._centre_used = centre
        elif max(abs(centre[0] - self._centre_used[0]), abs(centre[1] - self._centre_used[1])) \
                > AUTO_CENTRE_TOLERANCE_PX:
            self._centre_used = centre
            self._rebuild()
            n_t = 0
        box = C.touched_box(self._touched, n_t, self.scan_shape[1]) if n_t else (0, 0, 0, 0)
        block = (box[1] - box[0], box[3] - box[2])
        if n_t and self._block_scatter.pays(n_t, block):
            self._scatter_block(n_t, box, block)
        else:
            C.scatter_touched(self._touched, n_t, self._state, *self._geometry_args(),
                              self._scattered_x, self._scattered_y, self._image,
                              self._sx_kernel, self._sy_kernel)
        self.seconds_processing = time.perf_counter() - self._t_first

    def _scatter_block(self, n_t: int, box: tuple, block: tuple[int, int]) -> None:
        """The same update as `ricom.engine.compiled.scatter_touched`, for a chunk whose positions
        fill a block of the scan well: COM changes into a dense block, one FFT convolution
        with the kernels, the result added clipped at the scan edges."""
        dx, dy = np.empty(block), np.empty(block)
        C.take_deltas(self._touched, n_t, self._state, *self._geometry_args(), self._scattered_x,
                      self._scattered_y, self.scan_shape[1], box[0], box[2], dx, dy)
        full = self._block_scatter(dx, dy)
        r = self._sx_kernel.shape[0] // 2
        sy, sx = self.scan_shape
        top, left = box[0] - r, box[2] - r  # scan pixel of full[0, 0]
        y0, y1 = max(0, top), min(sy, top + full.shape[0])
        x0, x1 = max(0, left), min(sx, left + full.shape[1])
        self._image[y0:y1, x0:x1] += full[y0 - top:y1 - top, x0 - left:x1 - left]

    # ------------------------------------------------------------------ rebuild and output
    def _com_maps(self) -> tuple[np.ndarray, np.ndarray]:
        n = self._state.shape[1]
        cx_map, cy_map = np.zeros(n), np.zeros(n)
        C.com_maps(self._state, *self._geometry_args(), cx_map, cy_map)
        return cx_map, cy_map

    def _rebuild(self) -> None:
        """Recompute COM maps and the whole image from the stored moments."""
        if self._centre_used is None:
            return
        self._centre_used = self.center_yx() or self._centre_used
        cx_map, cy_map = self._com_maps()
        self._scattered_x, self._scattered_y = cx_map, cy_map
        wx, wy = correlation_kernels(self._settings.kernel, self._settings.calibration.step)
        self._image = correlate(cx_map.reshape(self.scan_shape), cy_map.reshape(self.scan_shape), wx, wy)

    def warm_up(self, frames) -> None:
        """Run a few patterns like those to come through a throwaway copy of this engine, so
        that the compiled kernels are loaded before the first real chunk: a live
        acquisition's first chunk would otherwise wait ~0.2 s for them."""
        side = max(len(frames), self._settings.kernel.size)
        twin = Reconstruction((side, side), self.detector_shape, self._settings, self._reference_center, self.repeats)
        twin.process_frames(frames, start=0)
        twin._scatter_block(1, (0, 1, 0, 1), (1, 1))
        twin.snapshot()

    def finalize(self) -> None:
        """Settle the auto centre on its final estimate (rebuilds if it moved at all).

        Events still held back for the detector look-ups are processed first.
        """
        with self._lock:
            self._flush_events()
            centre = self.center_yx()
            if centre is not None and centre != self._centre_used:
                self._centre_used = centre
                self._rebuild()

    def snapshot(self) -> Snapshot:
        """A consistent copy of all images, safe to take from any thread."""
        with self._lock:
            cal = self._settings.calibration
            vds = {name: self._state[C.FIRST_RING + rings].sum(axis=0).reshape(self.scan_shape)
                   for name, rings in self._vd_rings.items()}
            for vd in self._settings.virtual_detectors:
                vds.setdefault(vd.name, np.zeros(self.scan_shape))
            return Snapshot(
                ricom=self._image * cal.potential_scale,
                com_x=self._scattered_x.reshape(self.scan_shape).copy(),
                com_y=self._scattered_y.reshape(self.scan_shape).copy(),
                counts=self._state[C.TOTAL].reshape(self.scan_shape).copy(),
                hits=self._hits.reshape(self.scan_shape).copy(),
                virtual=vds,
                settings=self._settings,
                center_yx=self._centre_used,
                n_patterns=self.n_patterns, n_empty=self.n_empty, n_invalid=self.n_invalid,
                n_outside=self.n_outside, seconds_processing=self.seconds_processing,
                virtual_radii_px=self.ring_boundaries_px(),
            )
