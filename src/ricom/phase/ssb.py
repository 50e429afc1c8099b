"""Single side-band ptychography (SSB, signal ``ssb``): the live reducer beside riCOM, and the public entry points.

The weak-phase SSB of Pennycook et al. (Ultramicroscopy 151, 2015) and Rodenburg et al.
(1993): the patterns ``I(k, r)`` are Fourier transformed over the probe positions,
``G(k, Q) = Σ_r I(k, r) e^{−2πi Q·r}``.  For a weak phase object ψ = e^{iφ} and a probe
``A(k) = aperture · e^{−iχ(k)}`` (the conventions of `ricom.simulators.specimen`),

    G(k, Q) = |A(k)|² δ(Q) + iΦ(Q) [A(k − Q) A*(k) − A(k) A*(k + Q)],

so in the double-overlap region |k − Q| < α ≤ |k + Q| ("trotter") G = iΦ(Q) A(k−Q)A*(k),
and in |k + Q| < α ≤ |k − Q| G = −iΦ(Q) A(k)A*(k+Q).  Multiplying each by the conjugate
of its aberration factor and summing both trotters gives Φ(Q) (`ricom.phase._ssb_geometry.phase_image`);
the inverse transform over Q is the phase image φ(r) = σV(r) in rad (atoms bright).

Live (`SsbReducer`, attached with `attach_ssb`): each chunk's binned patterns are added
into the scan's Fourier transform along x, ``H[y, qx, j]`` (real and imaginary planes, the non-negative
qx only, for the binned pixels j around the bright-field disc), so any order and any
chunking give the same sums; an image transforms H along y and integrates the trotters
with the current defocus and centre — changing the defocus (a tcBF fit, say) needs no
new data.  The accumulator's size is checked before the run (`live_plan`).  Offline:
`ssb_offline` (`ricom.phase._ssb_offline`), bounded in memory by taking the detector
pixels in groups, one pass over the input per group.  Single-electron events, live or
offline, add as the patterns they make (those within the acceptance time,
`ricom.phase._ssb_events`).
"""
from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ricom.core.errors import SettingsError
from ricom.core.params import Calibration, DetectorGeometry, memory_budget_bytes, shape2
from ricom.engine.reducer import ReducedChunk, Reducer
from ricom.phase._ssb_events import EventPatterns, full_map
from ricom.phase._ssb_geometry import (
    KEEP_MARGIN_PX,
    SsbOptics,
    SsbOptions,
    binned_shape,
    disc_pixel_bound,
    frames_2d,
    phase_image,
    pixel_frequencies,
    pixel_map,
    trotter_integrals,
)
from ricom.phase._ssb_kernels import accumulate_rows, bin_events, bin_pixels, twiddles
from ricom.phase._ssb_offline import SsbOfflinePlan, SsbResult, offline_plan, ssb_offline

SPECTRUM_BLOCK_BYTES = 64 << 20
"""An image transforms the live accumulator along y in blocks of pixels of about this size."""


def _gib(n: float) -> str:
    return f"{n / 2**30:.2f} GiB" if n >= 2**30 else f"{n / 2**20:.1f} MiB"


@dataclass(frozen=True)
class SsbLivePlan:
    """The memory a live SSB needs, worked out before the run.

    Attributes
    ----------
    scan_shape, binned_shape : (int, int)
    max_pixels : int
        Binned pixels the accumulator may keep (the disc plus a margin, around any centre).
    accumulator_bytes : int
        The accumulator ``H`` (Ny × (Nx//2 + 1) × max_pixels, real and imaginary float64: 16 bytes each).
    image_bytes : int
        What an image needs on top (one block of the transform, the Q-plane arrays).
    limit_bytes : int
        What the run may use.
    """

    scan_shape: tuple[int, int]
    binned_shape: tuple[int, int]
    max_pixels: int
    accumulator_bytes: int
    image_bytes: int
    limit_bytes: int

    @property
    def total_bytes(self) -> int:
        return self.accumulator_bytes + self.image_bytes

    @property
    def fits(self) -> bool:
        return self.total_bytes <= self.limit_bytes

    def describe(self) -> str:
        """One line for the operator: scan, binned detector, memory and the limit."""
        (sy, sx), (by, bx) = self.scan_shape, self.binned_shape
        return (f"SSB live: {sy}×{sx} scan, {by}×{bx} binned patterns ({self.max_pixels} pixels around the "
                f"bright-field disc): {_gib(self.total_bytes)} of accumulators (limit {_gib(self.limit_bytes)})")

    def check(self) -> None:
        """A one-line `SettingsError` if the accumulators do not fit."""
        if not self.fits:
            (sy, sx), (by, bx) = self.scan_shape, self.binned_shape
            raise SettingsError(
                f"SSB live for a {sy}×{sx} scan with {by}×{bx} binned patterns needs {_gib(self.total_bytes)} of "
                f"accumulators, more than the {_gib(self.limit_bytes)} allowed; bin the detector more (a larger "
                f"bin_factor) or reconstruct SSB offline (ssb_offline)")


def live_plan(scan_shape, detector_shape, options: SsbOptions, calibration: Calibration,
              max_memory_bytes: int | None = None) -> SsbLivePlan:
    """The memory of a live SSB of this scan and detector (by default the limit is a quarter
    of this machine's memory)."""
    sy, sx = shape2("scan shape", scan_shape)
    optics = SsbOptics.from_calibration(calibration, options)
    n = disc_pixel_bound(detector_shape, options, optics, KEEP_MARGIN_PX)
    acc = sy * (sx // 2 + 1) * n * 16
    image = min(acc, SPECTRUM_BLOCK_BYTES) + sy * sx * 16 * 4
    limit = int(max_memory_bytes) if max_memory_bytes is not None else memory_budget_bytes() // 4
    return SsbLivePlan((sy, sx), binned_shape(detector_shape, options.bin_factor), n, acc, image, limit)


class SsbReducer(Reducer):
    """Live SSB: the scan's Fourier transform along x of the binned patterns near the disc.

    Parameters
    ----------
    scan_shape, detector_shape : (int, int)
    options : SsbOptions
    calibration : Calibration
        Scan step, detector pixel size and energy (all needed).
    geometry : DetectorGeometry
        Rotation and flip; its centre, if given, places the disc.
    centre : callable, optional
        The running centre (row, col) when the geometry gives none (a reconstruction's
        ``center_yx``); else the detector's middle.
    max_memory_bytes : int, optional
        The limit of `live_plan`; past it, a one-line `SettingsError` before anything is allocated.
    acceptance_ns : float, optional
        Single-electron events arriving later than this after the probe are left out.

    Examples
    --------
    >>> from ricom.core.params import Calibration
    >>> cal = Calibration(step_A=0.2, pixel_size_mrad=2.0, energy_keV=300)
    >>> ssb = SsbReducer((4, 4), (16, 16), SsbOptions(10.0), cal)
    >>> ssb.process(ReducedChunk(np.arange(16), np.zeros((3, 16)), np.ones(16, bool), frames=np.ones((16, 16, 16))))
    >>> ssb.get_results()["ssb"].shape, ssb.n_patterns
    ((4, 4), 16)
    """

    def __init__(self, scan_shape, detector_shape, options: SsbOptions, calibration: Calibration,
                 geometry: DetectorGeometry | None = None, centre: Callable[[], tuple | None] | None = None,
                 max_memory_bytes: int | None = None, acceptance_ns: float | None = None) -> None:
        self.scan_shape = shape2("scan shape", scan_shape)
        self.detector_shape = shape2("detector shape", detector_shape)
        self.plan = live_plan(self.scan_shape, self.detector_shape, options, calibration, max_memory_bytes)
        self.plan.check()
        self.options, self.calibration = options, calibration
        self.geometry = geometry or DetectorGeometry()
        self._centre_fn = centre
        self._lock = threading.RLock()
        self._acc: np.ndarray | None = None
        self._kept: np.ndarray | None = None
        self._map: tuple[np.ndarray, np.ndarray] | None = None
        self._twiddle = twiddles(self.scan_shape[1])
        self._seen = np.zeros(self.scan_shape[0] * self.scan_shape[1], bool)  # positions with events
        self.acceptance_ns = acceptance_ns
        self.n_patterns = 0

    # ------------------------------------------------------------------ geometry
    def centre_yx(self) -> tuple[float, float]:
        """The pattern centre now: the geometry's › the running one › the detector's middle."""
        if self.geometry.center_yx is not None:
            return self.geometry.center_yx
        c = self._centre_fn() if self._centre_fn is not None else None
        if c is None:
            return ((self.detector_shape[0] - 1) / 2, (self.detector_shape[1] - 1) / 2)
        return float(c[0]), float(c[1])

    def update(self, options: SsbOptions | None = None, calibration: Calibration | None = None,
               geometry: DetectorGeometry | None = None) -> None:
        """Change the defocus (a tcBF fit's), rotation or calibration: the next image uses them, no data again.

        The binning and which pixels are kept stay as the first chunk set them.
        """
        with self._lock:
            if options is not None:
                if self._acc is not None and options.bin_factor != self.options.bin_factor:
                    raise SettingsError("SSB bin_factor cannot change once patterns were added; start a new run")
                self.options = options
            self.calibration = calibration or self.calibration
            self.geometry = geometry or self.geometry

    def _start(self, guess_yx=None) -> None:
        optics = SsbOptics.from_calibration(self.calibration, self.options)
        b = self.options.bin_factor
        centre = self.centre_yx()
        if guess_yx is not None and self.geometry.center_yx is None and \
                (self._centre_fn is None or self._centre_fn() is None):
            centre = guess_yx  # events before the engine knows a centre: their mean place
        ky, kx = pixel_frequencies(self.detector_shape, b, centre, optics, self.geometry)
        reach = optics.alpha_inv_A + KEEP_MARGIN_PX * optics.binned_pixel_inv_A(b)
        self._kept = np.flatnonzero(ky * ky + kx * kx < reach * reach)[: self.plan.max_pixels]
        self._map = pixel_map(self.detector_shape, b, self._kept)
        sy, sx = self.scan_shape
        self._acc = np.zeros((sy, sx // 2 + 1, 2, len(self._kept)))

    # ------------------------------------------------------------------ reducer
    def process(self, chunk: ReducedChunk) -> None:
        if chunk.frames is None:
            return
        frames = frames_2d(chunk.frames)
        positions = np.asarray(chunk.positions, np.int64)
        keep = (positions >= 0) & np.asarray(chunk.valid, bool)
        with self._lock:
            if self._acc is None:
                self._start()
            rows = np.where(keep, np.arange(len(positions)), -1)
            values = np.zeros((len(positions), len(self._kept)))
            bin_pixels(frames, rows, *self._map, values)
            accumulate_rows(self._acc, values, np.where(keep, positions, -1), self.scan_shape[1], self._twiddle)
            self.n_patterns += int(keep.sum())

    def process_event_chunk(self, chunk) -> None:
        """Add single-electron events (within the acceptance time) as the patterns they make."""
        ev = EventPatterns.of(chunk, self.scan_shape, self.detector_shape, self.acceptance_ns)
        inside = ev.positions >= 0
        with self._lock:
            self.n_patterns += ev.new_patterns(self._seen)
            if self._acc is None:
                if not inside.any():
                    return
                self._start((float(ev.y[inside].mean()), float(ev.x[inside].mean())))
            places, rows = np.unique(ev.positions[inside], return_inverse=True)
            values = np.zeros((len(places), len(self._kept)))
            by_pixel = full_map(*self._map, self.detector_shape[0] * self.detector_shape[1])
            bin_events(rows.astype(np.int64), ev.pixels[inside], by_pixel, values)
            accumulate_rows(self._acc, values, places.astype(np.int64), self.scan_shape[1], self._twiddle)

    def merge(self, other: SsbReducer) -> None:
        with self._lock:
            if other._acc is None:
                return
            if self._acc is None:
                self._kept, self._map, self._acc = other._kept, other._map, other._acc.copy()
            elif not np.array_equal(self._kept, other._kept):
                raise SettingsError("SSB partial results kept different detector pixels; give both the same "
                                    "centre (center_yx)")
            else:
                self._acc += other._acc
            self.n_patterns += other.n_patterns

    def image(self) -> np.ndarray:
        """The SSB phase (rad) of everything added so far, with the current options and centre."""
        centre = self.centre_yx()  # before the lock: a running centre asks the reconstruction, whose lock is
        with self._lock:           # held while a chunk waits for this one (another thread's image would deadlock)
            if self._acc is None:
                return np.zeros(self.scan_shape)
            optics = SsbOptics.from_calibration(self.calibration, self.options)
            ky, kx = pixel_frequencies(self.detector_shape, self.options.bin_factor, centre, optics,
                                       self.geometry)
            ky, kx = ky[self._kept], kx[self._kept]
            per_pixel = max(1, self._acc.shape[0] * self._acc.shape[1] * 16)
            step = max(1, SPECTRUM_BLOCK_BYTES // per_pixel)
            acc = self._acc
            blocks = ((np.fft.fft(acc[:, :, 0, j:j + step] + 1j * acc[:, :, 1, j:j + step], axis=0),
                       ky[j:j + step], kx[j:j + step]) for j in range(0, len(self._kept), step))
            sums = trotter_integrals(blocks, self.scan_shape, optics, self.options)
            return phase_image(sums, self.n_patterns, self.options.flat_transfer)

    def get_results(self) -> dict[str, np.ndarray]:
        return {"ssb": self.image()}

    @property
    def accumulator_bytes(self) -> int:
        """Bytes held by the accumulator now (0 before the first chunk)."""
        return 0 if self._acc is None else int(self._acc.nbytes)


def attach_ssb(reconstruction, options: SsbOptions, max_memory_bytes: int | None = None) -> SsbReducer:
    """An `SsbReducer` following ``reconstruction`` (its scan, detector, calibration, geometry
    and centre), added to its reducers; a one-line `SettingsError` first if it cannot fit.

    Examples
    --------
    >>> from ricom import Reconstruction, Settings
    >>> from ricom.core.params import Calibration
    >>> rec = Reconstruction((16, 16), (16, 16), Settings(calibration=Calibration(0.2, 2.0, 300.0)))
    >>> ssb = attach_ssb(rec, SsbOptions(convergence_mrad=10.0))
    >>> ssb.plan.describe().startswith("SSB live: 16×16 scan, 16×16 binned patterns")
    True
    """
    s = reconstruction.settings
    reducer = SsbReducer(reconstruction.scan_shape, reconstruction.detector_shape, options, s.calibration,
                         s.geometry, reconstruction.center_yx, max_memory_bytes,
                         getattr(reconstruction, "acceptance_ns", None))
    reconstruction.add_reducer(reducer)
    return reducer


__all__ = ["SsbLivePlan", "SsbOfflinePlan", "SsbOptics", "SsbOptions", "SsbReducer", "SsbResult", "attach_ssb",
           "frames_2d", "live_plan", "offline_plan", "ssb_offline"]
