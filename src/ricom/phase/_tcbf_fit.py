"""tcBF shifts from the data: cross-correlation of the bright-field virtual images, the
linear shift model and its reading as defocus, two-fold astigmatism and scan rotation.

Owns the physics of the shift model (docs/howto/phase-contrast.md, "tcBF").  For a probe
with aberration function χ(k) (wave ``A(k)·exp(−iχ(k))``, Kirkland's convention, defocus
Δf > 0 underfocus), the weak-phase image seen by the detector pixel at scattering angle θ
is the specimen's image moved by ``s = ∇χ/2π``: with χ quadratic,

    s = −C θ,   C = Δf·I − A·[[cos 2φ, sin 2φ], [sin 2φ, −cos 2φ]]

(Å; θ in rad in the scan frame, |A| and φ the two-fold astigmatism and its axis from
scan +x towards +y), i.e. ``I_θ(r) = W(r + s)``.  With the detector → scan map ``M``
(`ricom.core.params.DetectorGeometry.transform`), a detector offset ``k`` (pixels) gives
the shift in scan pixels ``B·k`` with ``B = −C·M·pixel_rad / step``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from ricom.core.geometry import Matrix2

MIN_BINS_PER_STAGE = 8
"""The first stage of the measurement uses at least this many bins nearest the centre."""
STAGE_GROWTH = 1.6
"""Each stage reaches this factor further out on the detector than the one before."""
FINAL_PASSES = 2
"""Passes over every bin once the last stage is done (each against the image the one before aligned)."""
UPSAMPLE_PEAK = 20
"""Sub-pixel steps per scan pixel of the refined cross-correlation peak."""


@dataclass(frozen=True)
class ShiftModel:
    """Shift (scan px, (x, y)) of a bin at detector offset ``k`` (px, (x, y)): ``B·k + t``."""

    b: np.ndarray
    """(2, 2): row 0 gives the x shift, row 1 the y shift."""
    t: np.ndarray = field(default_factory=lambda: np.zeros(2))

    def shifts(self, offsets_xy: np.ndarray) -> np.ndarray:
        """(n, 2) shifts (x, y) of bins at ``offsets_xy`` (n, 2)."""
        return offsets_xy @ self.b.T + self.t


def aberration_matrix(defocus_A: float, astigmatism_A: float, astigmatism_angle_deg: float) -> np.ndarray:
    """``C`` (Å, scan frame) of the module docstring."""
    t = math.radians(2 * astigmatism_angle_deg)
    return defocus_A * np.eye(2) - astigmatism_A * np.array([[math.cos(t), math.sin(t)], [math.sin(t), -math.cos(t)]])


def model_from_aberrations(c_A: np.ndarray, to_scan: Matrix2, pixel_size_mrad: float, step_A: float) -> ShiftModel:
    """The shift model ``B = −C·M·pixel_rad/step`` of known aberrations."""
    return ShiftModel(-c_A @ to_scan.as_array() * (pixel_size_mrad * 1e-3 / step_A))


# ----------------------------------------------------------------------------- measuring
def _prepare(images: np.ndarray, lowpass: float | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """FFTs of the mean-free images (n, ny, nx), low-passed to ``lowpass`` cycles per
    scan pixel (a cos² edge from 0.7×), the Hann window and its power spectrum (the
    window's autocorrelation divides the cross-correlation: no pull towards lag 0)."""
    ny, nx = images.shape[1:]
    window = np.outer(np.hanning(ny + 2)[1:-1], np.hanning(nx + 2)[1:-1])
    centred = images - images.mean(axis=(1, 2), keepdims=True)
    spectra = np.fft.fft2(centred)
    if lowpass is not None and lowpass < 0.75:
        q = np.hypot(np.fft.fftfreq(ny)[:, None], np.fft.fftfreq(nx)[None, :]) / lowpass
        spectra *= np.where(q < 0.7, 1.0, np.cos(0.5 * np.pi * np.clip((q - 0.7) / 0.3, 0, 1)) ** 2)
    return spectra, window, np.abs(np.fft.fft2(window)) ** 2


def _phase_ramp(shape, shift_xy: np.ndarray) -> np.ndarray:
    """exp(−2πi q·s): multiplying an FFT by it moves the image by +s."""
    qy = np.fft.fftfreq(shape[0])[:, None]
    qx = np.fft.fftfreq(shape[1])[None, :]
    return np.exp(-2j * np.pi * (qx * shift_xy[0] + qy * shift_xy[1]))


def _windowed(spectrum: np.ndarray, window: np.ndarray) -> np.ndarray:
    """Spectrum of the image of ``spectrum`` times the window."""
    return np.fft.fft2(np.fft.ifft2(spectrum).real * window)


def _reference(spectra: np.ndarray, shifts_xy: np.ndarray, window: np.ndarray) -> np.ndarray:
    """Windowed spectrum of the images moved back by their shifts and averaged:
    ``V(r − s) = W(r)``."""
    ref = np.zeros(spectra.shape[1:], complex)
    for f, s in zip(spectra, shifts_xy, strict=True):
        ref += f * _phase_ramp(f.shape, s)
    return _windowed(ref / len(spectra), window)


def _peak_near(cc: np.ndarray, centre_xy: np.ndarray, radius: float) -> np.ndarray:
    """Integer (x, y) lag of the cross-correlation maximum nearest ``centre_xy`` within
    ``radius``: of the local maxima at least half as high as the highest there, the
    nearest (a crystal repeats its peak one lattice vector away)."""
    ny, nx = cc.shape
    lag_y = (np.arange(ny) + ny // 2) % ny - ny // 2
    lag_x = (np.arange(nx) + nx // 2) % nx - nx // 2
    dist = np.hypot(lag_x[None, :] - centre_xy[0], lag_y[:, None] - centre_xy[1])
    inside = dist <= radius
    if not inside.any():
        inside = dist <= dist.min()
    local = np.ones_like(inside)
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            if dy or dx:
                local &= cc >= np.roll(np.roll(cc, dy, 0), dx, 1)
    cand = inside & local
    if not cand.any():
        cand = inside
    top = cc[cand].max()
    cand &= cc >= top - 0.5 * (top - cc[inside].min())
    iy, ix = np.nonzero(cand)
    best = np.argmin(dist[iy, ix])
    return np.array([lag_x[ix[best]], lag_y[iy[best]]], float)


def _real_product(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    """``Re(a @ b @ c)`` of complex matrices with real products only (complex BLAS is
    far slower than real BLAS on some machines)."""
    tr = a.real @ b.real - a.imag @ b.imag
    ti = a.real @ b.imag + a.imag @ b.real
    return tr @ c.real - ti @ c.imag


def _refine(cross: np.ndarray, window_power: np.ndarray, lag_xy: np.ndarray) -> np.ndarray:
    """Sub-pixel lag: the cross-correlation over the window's autocorrelation, evaluated
    by DFT on a 1/`UPSAMPLE_PEAK` grid within ±1 px of ``lag_xy``, then a parabola
    through the finest maximum."""
    ny, nx = cross.shape
    d = np.arange(-UPSAMPLE_PEAK, UPSAMPLE_PEAK + 1) / UPSAMPLE_PEAK
    ey = np.exp(2j * np.pi * np.outer(lag_xy[1] + d, np.fft.fftfreq(ny)))
    ex = np.exp(2j * np.pi * np.outer(np.fft.fftfreq(nx), lag_xy[0] + d))
    fine = _real_product(ey, cross, ex) / np.maximum(_real_product(ey, window_power + 0j, ex), 1e-12)
    iy, ix = np.unravel_index(np.argmax(fine), fine.shape)
    out = np.array([lag_xy[0] + d[ix], lag_xy[1] + d[iy]])
    for axis, i, line in ((0, ix, fine[iy, :]), (1, iy, fine[:, ix])):
        if 0 < i < len(line) - 1:
            a, b, c = line[i - 1], line[i], line[i + 1]
            curv = a - 2 * b + c
            if curv < 0:
                out[axis] += 0.5 * (a - c) / curv / UPSAMPLE_PEAK
    return out


def measure(spectra: np.ndarray, window: np.ndarray, window_power: np.ndarray, ref: np.ndarray,
            predicted_xy: np.ndarray, radius: float) -> np.ndarray:
    """Shift (x, y) of each image against the windowed reference ``R``: the image is moved
    back by its predicted shift first (so the two windows coincide and the residual lag
    is small), then ``V(r − p) = R(r + s − p)`` puts the cross-correlation peak at
    lag p − s, looked for within ``radius`` of 0."""
    overlap = np.maximum(np.fft.ifft2(window_power).real, 1e-3 * window_power.sum() / window_power.size)
    out = np.empty((len(spectra), 2))
    for j, f in enumerate(spectra):
        cross = _windowed(f * _phase_ramp(f.shape, predicted_xy[j]), window) * np.conj(ref)
        lag = _peak_near(np.fft.ifft2(cross).real / overlap, np.zeros(2), radius)
        out[j] = predicted_xy[j] - _refine(cross, window_power, lag)
    return out


# ----------------------------------------------------------------------------- fitting
@dataclass(frozen=True)
class LinearFit:
    """Least-squares shift model with the covariance of ``b`` (order b00, b01, b10, b11)."""

    model: ShiftModel
    cov_b: np.ndarray
    used: np.ndarray
    rms_px: float


def fit_linear(offsets_xy: np.ndarray, shifts_xy: np.ndarray, reject_px: float = 0.5) -> LinearFit:
    """Fit ``shift = B·k + t`` (both axes), dropping outliers beyond 3 robust σ (and
    beyond ``reject_px``) once; the covariance comes from the residual scatter."""
    design = np.column_stack([offsets_xy, np.ones(len(offsets_xy))])
    used = np.ones(len(offsets_xy), bool)
    for _ in range(2):
        coef, *_ = np.linalg.lstsq(design[used], shifts_xy[used], rcond=None)
        res = np.hypot(*(design @ coef - shifts_xy).T)
        mad = 1.4826 * np.median(res[used])
        keep = res <= max(3 * mad, reject_px)
        if keep.sum() < 4 or np.array_equal(keep, used):
            break
        used = keep
    coef, *_ = np.linalg.lstsq(design[used], shifts_xy[used], rcond=None)
    resid = design[used] @ coef - shifts_xy[used]
    dof = max(int(used.sum()) - 3, 1)
    inv = np.linalg.pinv(design[used].T @ design[used])[:2, :2]
    cov = np.zeros((4, 4))
    for axis in range(2):
        var = float((resid[:, axis] ** 2).sum()) / dof
        cov[2 * axis:2 * axis + 2, 2 * axis:2 * axis + 2] = var * inv
    model = ShiftModel(np.ascontiguousarray(coef[:2].T), coef[2].copy())
    return LinearFit(model, cov, used, float(np.sqrt((resid**2).sum(axis=1).mean())))


def measure_shifts(images: np.ndarray, offsets_xy: np.ndarray, search_px: float,
                   lowpass: float | None = None) -> tuple[np.ndarray, LinearFit]:
    """Measured shifts (n, 2) of the images of bins at ``offsets_xy`` and the fit to them.

    Staged from the centre out: the bins nearest the centre (small shifts) against their
    mean image, each further stage against the images aligned so far (the tcBF image),
    searching near the shifts the previous fit predicts; a last pass measures every bin
    against the full aligned image.  ``lowpass`` (cycles per scan pixel) keeps the
    frequencies whose both side bands lie in the aperture for every bin measured: the
    shift of a frequency with one side band is off by πλΔf q²/(2πq).
    """
    spectra, win, win_power = _prepare(images, lowpass)
    radius = np.hypot(*offsets_xy.T)
    order = np.sort(radius)
    reach = order[min(len(order), MIN_BINS_PER_STAGE) - 1] + 1e-9
    model = ShiftModel(np.zeros((2, 2)))
    window, ref_set = search_px, radius <= reach
    ref = _reference(spectra[ref_set], np.zeros((int(ref_set.sum()), 2)), win)
    while True:
        sel = radius <= reach
        measured = measure(spectra[sel], win, win_power, ref, model.shifts(offsets_xy[sel]), window)
        fit = fit_linear(offsets_xy[sel], measured)
        model = fit.model
        done = reach >= order[-1]
        reach = reach * STAGE_GROWTH
        window = max(2.0, 4 * fit.rms_px + 1.0)
        ref = _reference(spectra[sel], model.shifts(offsets_xy[sel]), win)
        if done:
            break
    for _ in range(FINAL_PASSES):
        measured = measure(spectra, win, win_power, ref, model.shifts(offsets_xy), window)
        fit = fit_linear(offsets_xy, measured)
        model = fit.model
        ref = _reference(spectra, model.shifts(offsets_xy), win)
    return measured, fit


# ----------------------------------------------------------------------------- reading
def decompose(b: np.ndarray, flip: bool, near_rotation_deg: float) -> np.ndarray:
    """(defocus, astigmatism, astigmatism angle °, rotation °) from ``B`` in units where
    ``−B = C'·M`` (C' = C·pixel_rad/step).  ``M = rotation(θ)·flip``; θ is fixed only up to
    180° (with the sign of C'), so the branch nearest ``near_rotation_deg`` is taken."""
    y = -b @ (Matrix2.flip_x().as_array() if flip else np.eye(2))
    theta = math.degrees(math.atan2(y[1, 0] - y[0, 1], y[0, 0] + y[1, 1]))
    if abs((theta - near_rotation_deg + 180) % 360 - 180) > 90:
        theta += 180
    theta = (theta + 180) % 360 - 180
    c = y @ Matrix2.rotation(theta).as_array().T
    defocus = 0.5 * (c[0, 0] + c[1, 1])
    ac, as_ = -0.5 * (c[0, 0] - c[1, 1]), -0.5 * (c[0, 1] + c[1, 0])
    return np.array([defocus, math.hypot(ac, as_), math.degrees(0.5 * math.atan2(as_, ac)) % 180, theta])


def decompose_with_errors(fit: LinearFit, flip: bool, near_rotation_deg: float) -> tuple[np.ndarray, np.ndarray]:
    """`decompose` of the fitted ``B`` and the standard errors propagated from its covariance
    (numerical Jacobian; angle differences wrapped)."""
    b = fit.model.b
    value = decompose(b, flip, near_rotation_deg)
    jac = np.zeros((4, 4))
    h = 1e-6 * max(1e-12, float(np.abs(b).max()))
    periods = np.array([0.0, 0.0, 180.0, 360.0])
    for i in range(4):
        d = np.zeros(4)
        d[i] = h
        hi = decompose(b + d.reshape(2, 2), flip, value[3]) - value
        lo = decompose(b - d.reshape(2, 2), flip, value[3]) - value
        for diff in (hi, lo):
            wrap = periods > 0
            diff[wrap] = (diff[wrap] + periods[wrap] / 2) % periods[wrap] - periods[wrap] / 2
        jac[:, i] = (hi - lo) / (2 * h)
    sigma = np.sqrt(np.maximum(np.diag(jac @ fit.cov_b @ jac.T), 0.0))
    return value, sigma


__all__ = ["LinearFit", "ShiftModel", "aberration_matrix", "decompose", "decompose_with_errors", "fit_linear",
           "measure", "measure_shifts", "model_from_aberrations"]
