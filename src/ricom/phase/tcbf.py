"""Tilt-corrected bright field (tcBF, "parallax"): signal ``tcbf``, a reducer beside riCOM.

Owns the live tcBF image: each chunk's bright-field pixels are binned (`BinLayout`),
stored per scan position and — once the shifts are known — added into the image at
their scan position moved by their bin's shift (bilinear, on a grid ``upsample`` times
finer than the scan).  The shifts come from given aberrations (``fit="given"``) or from
the data (``"first"``: once the first complete rows are in; ``"auto"``: refitted as the
complete rows double and once more on the whole scan, the image rebuilt each time):
cross-correlation of the bins' virtual images, refined from the centre out, and a linear
fit read as defocus, two-fold astigmatism and scan rotation with standard errors
(`ricom.phase._tcbf_fit`).  The fitted defocus is in `TcbfReducer.get_results` while the
scan runs.  `attach_tcbf` adds one to a `ricom.engine.Reconstruction`; `reconstruct_tcbf`
runs it over a whole 4D array.

Sign and units (docs/howto/phase-contrast.md): the image is the relative bright-field
contrast ``(S − ⟨S⟩)/⟨S⟩`` of the shifted sum S, with the sign of the contrast transfer at
low frequencies taken out (or flipped per frequency with ``phase_flip``), so that a weak
phase object's potential shows positive.
"""
from __future__ import annotations

import math
import threading

import numpy as np

from ricom.core.errors import Param, SettingsError
from ricom.core.params import Calibration, DetectorGeometry, memory_budget_bytes, shape2
from ricom.core.units import wavelength_A
from ricom.engine.detector import bright_field_radius
from ricom.engine.frame_input import estimate_centre
from ricom.engine.reducer import ReducedChunk, Reducer
from ricom.phase import _tcbf_fit as F
from ricom.phase._tcbf_kernels import accumulate, bin_patterns, splat
from ricom.phase._tcbf_layout import BinLayout, TcbfSettings, bin_layout

FIT_MAX_PX = 128
"""The fit cross-correlates at most this many rows and columns (the middle of the region)."""
LAYOUT_SAMPLE = 64
"""Patterns of the first chunk the centre and bright-field radius are estimated from (when not given)."""
MIN_FIT_BINS = 12
"""The fit measures at least this many bins (the nearest the centre) whatever ``fit_fraction``."""
_NAN = float("nan")
_FIT_KEYS = ("defocus_A", "astigmatism_A", "astigmatism_angle_deg", "rotation_deg")


class TcbfReducer(Reducer):
    """The tcBF image of one scan, built up chunk by chunk (any order, repeats summed).

    Parameters
    ----------
    scan_shape, detector_shape : (int, int)
    settings : TcbfSettings, optional
    calibration : Calibration, optional
        Step and pixel size turn the fit into Å (and are needed for ``fit="given"``);
        with the energy too, ``phase_flip`` is possible.
    geometry : DetectorGeometry, optional
        Detector → scan rotation and flip; the centre if it has one.
    center_yx, bf_radius_px : optional
        Pattern centre (detector px) and bright-field radius; estimated from the first
        chunk when not given (and not in ``geometry``).  Live and offline results equal
        each other when both are known in advance.
    """

    def __init__(self, scan_shape, detector_shape, settings: TcbfSettings | None = None,
                 calibration: Calibration | None = None, geometry: DetectorGeometry | None = None,
                 center_yx=None, bf_radius_px: float | None = None) -> None:
        self.scan_shape = shape2("scan shape", scan_shape)
        self.detector_shape = shape2("detector shape", detector_shape)
        self.settings = settings or TcbfSettings()
        self.calibration = calibration or Calibration()
        self.geometry = geometry or DetectorGeometry()
        self._center = center_yx if center_yx is not None else self.geometry.center_yx
        self._radius = bf_radius_px
        self._lock = threading.RLock()
        self.layout: BinLayout | None = None
        self.model: F.ShiftModel | None = None
        self.fit: F.LinearFit | None = None
        self.measured: np.ndarray | None = None
        self.fit_bins: np.ndarray | None = None
        self.n_fits, self.fit_rows_used, self.n_patterns = 0, 0, 0
        sy, sx = self.scan_shape
        u = int(self.settings.upsample)
        self._num, self._den = np.zeros((sy * u, sx * u)), np.zeros((sy * u, sx * u))
        self._hits = np.zeros(sy * sx, np.int64)
        self._store = np.zeros((0, 0), np.float32)
        self._next_fit = min(sy, self.settings.fit_rows or max(16, sy // 4))
        self._check_calibration()
        if self._center is not None and self._radius is not None:
            self._set_layout(bin_layout(self.detector_shape, self._center, self._radius, self.settings))

    # ------------------------------------------------------------------ set-up
    def _check_calibration(self) -> None:
        cal, s = self.calibration, self.settings
        if s.fit == "given" and (cal.step_A is None or cal.pixel_size_mrad is None):
            raise SettingsError("tcBF shifts from given aberrations need the scan step and the detector pixel size; "
                                "give ", Param("step_A"), " and ", Param("pixel_size_mrad"))
        if s.phase_flip and None in (cal.step_A, cal.pixel_size_mrad, cal.energy_keV):
            raise SettingsError("the tcBF phase flip needs the calibration; give ", Param("step_A"), ", ",
                                Param("pixel_size_mrad"), " and ", Param("energy_keV"))

    @property
    def rotation_deg(self) -> float:
        """The rotation used with given aberrations, and near which the fitted one is reported."""
        r = self.settings.rotation_deg
        return self.geometry.rotation_deg if r is None else float(r)

    def _to_scan(self):
        return DetectorGeometry(rotation_deg=self.rotation_deg, flip=self.geometry.flip).transform()

    def _set_layout(self, layout: BinLayout) -> None:
        n_pos = self.scan_shape[0] * self.scan_shape[1]
        need = n_pos * layout.n_bins * 4 + 2 * self._num.nbytes
        if need > memory_budget_bytes() // 2:
            raise SettingsError(f"tcBF with {layout.n_bins} bins of {layout.bin_px}×{layout.bin_px} pixels needs "
                                f"{need / 2**30:.1f} GiB for this scan, more than half the memory here; use a larger "
                                "tcBF bin_px or a smaller upsample")
        self.layout = layout
        self._store = np.zeros((n_pos, layout.n_bins), np.float32)
        if self.settings.fit == "given":
            c = F.aberration_matrix(self.settings.defocus_A, self.settings.astigmatism_A,
                                    self.settings.astigmatism_angle_deg)
            self.model = F.model_from_aberrations(c, self._to_scan(), self.calibration.pixel_size_mrad,
                                                  self.calibration.step_A)

    def _layout_from(self, frames, keep: np.ndarray) -> None:
        """Bins around the centre and radius given, or estimated from (up to `LAYOUT_SAMPLE`
        of) the first chunk's patterns."""
        take = np.nonzero(keep)[0][:LAYOUT_SAMPLE]
        sample = frames.unpack(take) if hasattr(frames, "unpack") else np.asarray(frames)[take]
        if len(sample) == 0:
            return
        centre = self._center if self._center is not None else estimate_centre(sample, self.detector_shape)
        radius = self._radius if self._radius is not None else bright_field_radius(sample)
        self._set_layout(bin_layout(self.detector_shape, centre, radius, self.settings))

    # ------------------------------------------------------------------ chunks
    def process(self, chunk: ReducedChunk) -> None:
        if chunk.frames is None:
            return
        positions = np.asarray(chunk.positions, np.int64)
        keep = (positions >= 0) & np.asarray(chunk.valid, bool)
        with self._lock:
            if self.layout is None:
                self._layout_from(chunk.frames, keep)
                if self.layout is None:
                    return
            lay = self.layout
            values = bin_patterns(chunk.frames, lay.bands, lay.n_bins).astype(np.float32)
            positions = np.where(keep, positions, -1)
            accumulate(positions, values, self._store, self._hits)
            self.n_patterns += int(keep.sum())
            if self.model is not None:
                self._splat(positions, values)
            self._maybe_fit()

    def _splat(self, positions: np.ndarray, values: np.ndarray) -> None:
        u = int(self.settings.upsample)
        shifts = self.model.shifts(self.layout.offsets_xy) - self.model.t  # the bins' mean place stays put
        splat(positions, values, np.ascontiguousarray(shifts[:, 1] * u), np.ascontiguousarray(shifts[:, 0] * u),
              self.scan_shape[1], u, self._num, self._den)

    def rebuild(self) -> None:
        """The image anew from every stored position with the current shifts."""
        with self._lock:
            self._num[:] = 0
            self._den[:] = 0
            if self.model is not None and self.layout is not None:
                pos = np.nonzero(self._hits)[0]
                self._splat(pos.astype(np.int64), self._store[pos])

    # ------------------------------------------------------------------ fitting
    def _complete_rows(self) -> tuple[int, int]:
        """(first row, number) of the longest run of scan rows whose every position has a pattern."""
        full = np.concatenate([[False], (self._hits.reshape(self.scan_shape) > 0).all(axis=1), [False]])
        edges = np.flatnonzero(np.diff(full.astype(np.int8)))
        if len(edges) == 0:
            return 0, 0
        starts, stops = edges[0::2], edges[1::2]
        best = int(np.argmax(stops - starts))
        return int(starts[best]), int(stops[best] - starts[best])

    def _maybe_fit(self) -> None:
        mode = self.settings.fit
        if mode == "given" or (mode == "first" and self.n_fits):
            return
        r0, n = self._complete_rows()
        if n >= self._next_fit and n > self.fit_rows_used:
            self.fit_region(r0, n)
            sy = self.scan_shape[0]
            self._next_fit = min(sy, 2 * n) if n < sy else sy + 1

    def fit_region(self, row0: int, n_rows: int) -> None:
        """Measure and fit the shifts on scan rows ``row0 … row0 + n_rows − 1`` (their
        middle `FIT_MAX_PX` rows and columns at most), then rebuild the image."""
        with self._lock:
            sx = self.scan_shape[1]
            h, w = min(n_rows, FIT_MAX_PX), min(sx, FIT_MAX_PX)
            y0, x0 = row0 + (n_rows - h) // 2, (sx - w) // 2
            grid = (np.arange(y0, y0 + h)[:, None] * sx + np.arange(x0, x0 + w)[None, :]).ravel()
            lay = self.layout
            radius = np.hypot(*lay.offsets_xy.T)
            self.fit_bins = radius <= self.settings.fit_fraction * lay.bf_radius_px
            if self.fit_bins.sum() < MIN_FIT_BINS:
                self.fit_bins[np.argsort(radius)[:MIN_FIT_BINS]] = True
            images = self._store[grid][:, self.fit_bins].T.astype(np.float64).reshape(-1, h, w)
            search = self.settings.search_px or max(4.0, min(h, w) / 4)
            self.measured, self.fit = F.measure_shifts(images, lay.offsets_xy[self.fit_bins], search, self._lowpass())
            self.model = F.ShiftModel(self.fit.model.b.copy())
            self.n_fits += 1
            self.fit_rows_used = n_rows
            self.rebuild()

    def _lowpass(self) -> float | None:
        """Cycles per scan pixel below which every fitted bin sees both side bands:
        (1 − fit_fraction)·α/λ·step; None without the calibration."""
        cal = self.calibration
        if None in (cal.step_A, cal.pixel_size_mrad, cal.energy_keV):
            return None
        alpha = self.layout.bf_radius_px * cal.pixel_size_mrad * 1e-3
        return (1 - min(self.settings.fit_fraction, 1.0)) * alpha / wavelength_A(cal.energy_keV) * cal.step_A

    # ------------------------------------------------------------------ results
    def _px_to_A(self) -> float:
        cal = self.calibration
        if cal.step_A is None or cal.pixel_size_mrad is None:
            return _NAN
        return cal.step_A / (cal.pixel_size_mrad * 1e-3)

    def aberrations(self) -> dict[str, float]:
        """Defocus (Å), astigmatism (Å), its axis (°) and the rotation (°), each with its
        standard error (``…_sigma``): fitted, or as given (no error).  Lengths are NaN
        without the step and the pixel size; all NaN before the first fit."""
        s = self.settings
        if s.fit == "given":
            vals = (s.defocus_A, s.astigmatism_A, s.astigmatism_angle_deg % 180, self.rotation_deg)
            return {**dict(zip(_FIT_KEYS, vals, strict=True)), **{k + "_sigma": _NAN for k in _FIT_KEYS}}
        if self.fit is None:
            return {k: _NAN for key in _FIT_KEYS for k in (key, key + "_sigma")}
        value, sigma = F.decompose_with_errors(self.fit, self.geometry.flip, self.rotation_deg)
        scale = np.array([self._px_to_A(), self._px_to_A(), 1.0, 1.0])
        value, sigma = value * scale, sigma * scale
        return {**dict(zip(_FIT_KEYS, value.tolist(), strict=True)),
                **{k + "_sigma": float(v) for k, v in zip(_FIT_KEYS, sigma, strict=True)}}

    def contrast_matrix(self) -> np.ndarray | None:
        """``C`` of the shift model in Å (scan frame), None without calibration or shifts."""
        if self.model is None or math.isnan(self._px_to_A()):
            return None
        y = -self.model.b @ self._to_scan().inverse().as_array()
        return 0.5 * (y + y.T) * self._px_to_A()

    def image(self) -> np.ndarray:
        """The tcBF image: relative contrast with the potential positive (see the module)."""
        with self._lock:
            num, den = self._num.copy(), self._den.copy()
        out = np.zeros_like(num)
        covered = den > 1e-3 * den.max() if den.max() > 0 else np.zeros(den.shape, bool)
        if not covered.any():
            return out
        m = num[covered] / den[covered]
        mean = float(m.mean())
        if mean != 0:
            out[covered] = (m - mean) / mean
        if self.settings.phase_flip:
            return self._phase_flipped(out)
        trace = float(-np.trace(self.model.b @ self._to_scan().inverse().as_array()))
        return -out if trace > 0 else out

    def _phase_flipped(self, img: np.ndarray) -> np.ndarray:
        """Each frequency times −sign(sin(πλ qᵀCq)) (the sign of its weak-phase transfer)."""
        c = self.contrast_matrix()
        u = int(self.settings.upsample)
        qy = np.fft.fftfreq(img.shape[0], self.calibration.step_A / u)[:, None]
        qx = np.fft.fftfreq(img.shape[1], self.calibration.step_A / u)[None, :]
        arg = math.pi * wavelength_A(self.calibration.energy_keV) * (
            c[0, 0] * qx * qx + (c[0, 1] + c[1, 0]) * qx * qy + c[1, 1] * qy * qy)
        return np.fft.ifft2(np.fft.fft2(img) * -np.sign(np.sin(arg))).real

    def get_results(self) -> dict:
        with self._lock:
            lay = self.layout
            n = lay.n_bins if lay is not None else 0
            out = {"tcbf": self.image(), "weight": self._den.copy(), **self.aberrations(),
                   "shift_matrix": self.model.b.copy() if self.model is not None else np.full((2, 2), _NAN),
                   "shifts_px": (self.model.shifts(lay.offsets_xy) - self.model.t) if self.model is not None
                   and lay is not None else np.zeros((n, 2)),
                   "measured_shifts_px": self.measured.copy() if self.measured is not None else np.zeros((0, 2)),
                   "bin_offsets_px": lay.offsets_xy.copy() if lay is not None else np.zeros((0, 2)),
                   "fit_bins": self.fit_bins.copy() if self.fit_bins is not None else np.zeros(n, bool),
                   "fit_rms_px": self.fit.rms_px if self.fit is not None else _NAN,
                   "n_fits": self.n_fits, "fit_rows": self.fit_rows_used, "n_bins": n,
                   "bin_px": lay.bin_px if lay is not None else 0, "n_patterns": self.n_patterns}
        return out

    def summary(self) -> str:
        """One line for the operator: the fitted (or given) defocus and the rest, with errors."""
        a = self.aberrations()
        if math.isnan(a["rotation_deg"]):
            return "tcBF: waiting for the first complete rows to fit the shifts"

        def pm(k: str) -> str:
            return "" if math.isnan(a[k + "_sigma"]) else f" ± {a[k + '_sigma']:.2g}"

        return (f"tcBF defocus {a['defocus_A']:.1f}{pm('defocus_A')} Å, astigmatism {a['astigmatism_A']:.1f}"
                f"{pm('astigmatism_A')} Å at {a['astigmatism_angle_deg']:.0f}°, rotation {a['rotation_deg']:.1f}"
                f"{pm('rotation_deg')}°" + ("" if self.settings.fit == "given" else f" ({self.n_fits} fits)"))

    def merge(self, other: TcbfReducer) -> None:
        """Add another reducer's stored positions (same scan and layout); refit as due, rebuild."""
        with self._lock:
            if other.layout is None:
                return
            if self.layout is None:
                self._set_layout(other.layout)
            if not np.array_equal(self.layout.pixel_index, other.layout.pixel_index):
                raise SettingsError("tcBF partial results made with different bright-field bins cannot be merged; "
                                    "give both the same ", Param("center_yx"))
            self._store += other._store
            self._hits += other._hits
            self.n_patterns += other.n_patterns
            self.rebuild()
            self._maybe_fit()


def attach_tcbf(reconstruction, settings: TcbfSettings | None = None, *, center_yx=None,
                bf_radius_px: float | None = None) -> TcbfReducer:
    """Add a tcBF reducer to ``reconstruction`` (a `ricom.engine.Reconstruction` or any
    `ChunkReduction`), with its scan, detector, calibration and geometry.

    Parameters
    ----------
    reconstruction : ChunkReduction
    settings : TcbfSettings, optional
    center_yx, bf_radius_px : optional
        Instead of the reconstruction's centre (given or from a reference) and its
        bright-field radius; else estimated from the first chunk.

    Returns
    -------
    TcbfReducer
        Already added with ``reconstruction.add_reducer``; read it with ``get_results()``
        (``tcbf``, ``defocus_A`` …) or ``summary()``.
    """
    s = reconstruction.settings
    centre = center_yx if center_yx is not None else reconstruction.center_yx()
    radius = bf_radius_px if bf_radius_px is not None else getattr(reconstruction.lookups, "bf_radius_px", None)
    reducer = TcbfReducer(reconstruction.scan_shape, reconstruction.detector_shape, settings, s.calibration,
                          s.geometry, center_yx=centre, bf_radius_px=radius)
    reconstruction.add_reducer(reducer)
    return reducer


def reconstruct_tcbf(data, settings: TcbfSettings | None = None, calibration: Calibration | None = None,
                     geometry: DetectorGeometry | None = None, center_yx=None,
                     bf_radius_px: float | None = None) -> TcbfReducer:
    """tcBF of a whole 4D array ``(scan_y, scan_x, det_y, det_x)`` in one chunk (fits on
    the whole scan).  Returns the reducer; ``get_results()["tcbf"]`` is the image."""
    arr = np.asarray(data)
    if arr.ndim != 4:
        raise SettingsError(f"tcBF of an array needs (scan_y, scan_x, det_y, det_x), got shape {arr.shape}")
    reducer = TcbfReducer(arr.shape[:2], arr.shape[2:], settings, calibration, geometry, center_yx, bf_radius_px)
    n = arr.shape[0] * arr.shape[1]
    reducer.process(ReducedChunk(np.arange(n, dtype=np.int64), np.zeros((n, 3)), np.ones(n, bool),
                                 frames=arr.reshape(n, *arr.shape[2:])))
    return reducer


__all__ = ["FIT_MAX_PX", "TcbfReducer", "TcbfSettings", "attach_tcbf", "reconstruct_tcbf"]
