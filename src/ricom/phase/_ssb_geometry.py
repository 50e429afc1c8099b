"""The optics and detector geometry of single side-band ptychography, shared by the live and the offline path.

Owns: `SsbOptions` (convergence angle, aberrations, detector binning), `SsbOptics` (the
calibration resolved into a wavelength and spatial frequencies), the binned detector
pixels as scan-frame spatial frequencies and which of them are kept, the bound on the
number of kept pixels used by the memory plans, and `trotter_integrals` and `phase_image` — the trotter
integration of ``G(k, Q)`` and the inverse transform to the phase image.
"""
from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, replace

import numpy as np

from ricom.core.errors import Param, SettingsError
from ricom.core.params import Calibration, DetectorGeometry
from ricom.core.units import wavelength_A
from ricom.phase._ssb_kernels import trotter_sums

KEEP_MARGIN_PX = 2.0
"""Binned pixels kept beyond the bright-field disc by the live accumulator, so the running
centre may still move by this much before the final image."""


@dataclass(frozen=True)
class SsbOptions:
    """What SSB needs beyond the reconstruction's calibration.

    Parameters
    ----------
    convergence_mrad : float
        Probe convergence semi-angle α (mrad).
    defocus_A : float
        Defocus Δf (Å), positive = underfocus (Kirkland's Δf; C1 = −Δf), as
        `ricom.simulators.specimen.SimulationParams.defocus_A`.
    astigmatism_A, astigmatism_angle_deg : float
        Two-fold astigmatism |A1| (Å) and its axis from scan +x towards scan +y.
    cs_mm : float
        Spherical aberration C3 (mm).
    bin_factor : int
        Detector pixels summed per side (b×b) before the reconstruction.
    flat_transfer : bool
        Divide each spatial frequency by its trotter area (a flat transfer up to 2α, noisier
        near 0 and 2α) instead of the standard SSB's weighting by the area
        (Pennycook et al. 2015's phase-contrast transfer function).

    Examples
    --------
    >>> SsbOptions(20.0).with_defocus(120.0).defocus_A
    120.0
    """

    convergence_mrad: float
    defocus_A: float = 0.0
    astigmatism_A: float = 0.0
    astigmatism_angle_deg: float = 0.0
    cs_mm: float = 0.0
    bin_factor: int = 1
    flat_transfer: bool = False

    def __post_init__(self) -> None:
        a = self.convergence_mrad
        if not (isinstance(a, (int, float)) and math.isfinite(a) and a > 0):
            raise SettingsError(f"SSB needs the probe's convergence semi-angle as a positive number of mrad "
                                f"(convergence_mrad), got {a!r}")
        for name in ("defocus_A", "astigmatism_A", "astigmatism_angle_deg", "cs_mm"):
            if not math.isfinite(getattr(self, name)):
                raise SettingsError(f"SSB {name} must be a finite number, got {getattr(self, name)!r}")
        b = self.bin_factor
        if isinstance(b, bool) or not isinstance(b, (int, np.integer)) or b < 1:
            raise SettingsError(f"SSB bin_factor must be a whole number ≥ 1 (detector pixels per binned pixel "
                                f"side), got {b!r}")
        object.__setattr__(self, "bin_factor", int(b))

    def with_defocus(self, fit) -> SsbOptions:
        """These options with the defocus (and astigmatism, if it carries them) of ``fit``: a
        number of Å, or a fit result with ``defocus_A`` (tcBF's), optionally
        ``astigmatism_A`` and ``astigmatism_angle_deg``."""
        if isinstance(fit, (int, float, np.floating, np.integer)):
            return replace(self, defocus_A=float(fit))
        changes = {name: float(getattr(fit, name)) for name in ("defocus_A", "astigmatism_A", "astigmatism_angle_deg")
                   if getattr(fit, name, None) is not None}
        if "defocus_A" not in changes:
            raise SettingsError(f"SSB takes a defocus as a number of Å or a fit with defocus_A, "
                                f"got {type(fit).__name__}")
        return replace(self, **changes)

    def aberrations(self, wavelength: float) -> np.ndarray:
        """λ, Δf, |A1|, its angle (rad), Cs (Å): what the compiled trotter loop takes."""
        return np.array([wavelength, self.defocus_A, self.astigmatism_A, math.radians(self.astigmatism_angle_deg),
                         self.cs_mm * 1e7], np.float64)


@dataclass(frozen=True)
class SsbOptics:
    """The calibration SSB works from: wavelength (Å), scan step (Å), detector pixel (mrad), α (1/Å)."""

    wavelength_A: float
    step_A: float
    pixel_size_mrad: float
    alpha_inv_A: float

    @classmethod
    def from_calibration(cls, calibration: Calibration, options: SsbOptions) -> SsbOptics:
        """Resolve the calibration; a one-line `SettingsError` naming what is missing."""
        missing = [name for name in ("step_A", "pixel_size_mrad", "energy_keV") if getattr(calibration, name) is None]
        if missing:
            parts: list = ["SSB needs the scan step, detector pixel size and beam energy; give "]
            for i, name in enumerate(missing):
                parts += [", " if i else "", Param(name)]
            raise SettingsError(*parts)
        lam = wavelength_A(calibration.energy_keV)
        return cls(lam, calibration.step_A, calibration.pixel_size_mrad, options.convergence_mrad * 1e-3 / lam)

    def binned_pixel_inv_A(self, bin_factor: int) -> float:
        """One binned detector pixel as a spatial frequency (1/Å)."""
        return bin_factor * self.pixel_size_mrad * 1e-3 / self.wavelength_A


def binned_shape(detector_shape, bin_factor: int) -> tuple[int, int]:
    """The detector after b×b binning (a partial last row or column of blocks is left out)."""
    dy, dx = detector_shape
    by, bx = dy // bin_factor, dx // bin_factor
    if by < 1 or bx < 1:
        raise SettingsError(f"SSB bin_factor {bin_factor} is larger than the {dy}×{dx} detector")
    return by, bx


def pixel_frequencies(detector_shape, bin_factor: int, centre_yx, optics: SsbOptics,
                      geometry: DetectorGeometry) -> tuple[np.ndarray, np.ndarray]:
    """Scan-frame spatial frequency (ky, kx) in 1/Å of every binned pixel, flat in raster order.

    A binned pixel's centre lies at ``b·i + (b − 1)/2`` detector pixels; its offset from
    the pattern centre is turned into the scan frame by the detector geometry (flip, then
    rotation; `DetectorGeometry.transform`).
    """
    b = bin_factor
    by, bx = binned_shape(detector_shape, b)
    yy, xx = np.meshgrid(b * np.arange(by) + (b - 1) / 2 - centre_yx[0],
                         b * np.arange(bx) + (b - 1) / 2 - centre_yx[1], indexing="ij")
    scale = optics.pixel_size_mrad * 1e-3 / optics.wavelength_A
    xs, ys = geometry.transform().apply(xx.ravel() * scale, yy.ravel() * scale)
    return np.ascontiguousarray(ys, np.float64), np.ascontiguousarray(xs, np.float64)


def pixel_map(detector_shape, bin_factor: int, kept: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The detector pixels (flat indices) inside the binned pixels ``kept``, and for each the
    index of its binned pixel among ``kept`` (what `bin_pixels` takes)."""
    dy, dx = detector_shape
    by, bx = binned_shape(detector_shape, bin_factor)
    index = np.full(by * bx, -1, np.int64)
    index[kept] = np.arange(len(kept))
    rows, cols = np.arange(dy) // bin_factor, np.arange(dx) // bin_factor
    inside = (rows[:, None] < by) & (cols[None, :] < bx)
    flat = np.minimum(rows, by - 1)[:, None] * bx + np.minimum(cols, bx - 1)[None, :]
    target = np.where(inside, index[flat], -1).ravel()
    sources = np.flatnonzero(target >= 0).astype(np.int64)
    return sources, target[sources].astype(np.int64)


def disc_pixel_bound(detector_shape, options: SsbOptions, optics: SsbOptics, margin_px: float) -> int:
    """At most this many binned pixels lie within the disc (plus ``margin_px``) around any centre."""
    by, bx = binned_shape(detector_shape, options.bin_factor)
    radius = optics.alpha_inv_A / optics.binned_pixel_inv_A(options.bin_factor) + margin_px
    return int(min(by * bx, math.floor(math.pi * (radius + math.sqrt(0.5)) ** 2)))


def frames_2d(frames) -> np.ndarray:
    """Patterns (plain, packed or any array) as a native-order ``(k, ny·nx)`` array."""
    if hasattr(frames, "unpack"):
        frames = frames.unpack()
    arr = np.asarray(frames)
    if arr.dtype == np.bool_:
        arr = arr.view(np.uint8)
    if not arr.dtype.isnative:
        arr = arr.astype(arr.dtype.newbyteorder("="))
    return np.ascontiguousarray(arr.reshape(arr.shape[0], -1))


def trotter_integrals(blocks: Iterable[tuple[np.ndarray, np.ndarray, np.ndarray]], scan_shape,
                      optics: SsbOptics, options: SsbOptions) -> TrotterSums:
    """The trotter integrals of ``G(k_j, Q)`` given in blocks of pixels.

    ``blocks`` yields ``(spec (Ny, Nx//2+1, n), ky (n,), kx (n,))`` (`trotter_sums`).
    """
    ny, nx = scan_shape
    qy, qx = np.fft.fftfreq(ny, optics.step_A), np.fft.fftfreq(nx, optics.step_A)
    out = TrotterSums(np.zeros((ny, nx), np.complex128), np.zeros((ny, nx)))
    aber = options.aberrations(optics.wavelength_A)
    a = optics.alpha_inv_A
    for spec, ky, kx in blocks:
        trotter_sums(spec, ky, kx, qy, qx, a, aber, out.num, out.count)
        disc = ky * ky + kx * kx < a * a
        out.dc += float(spec[0, 0, disc].real.sum())
        out.n_disc += int(disc.sum())
        del spec  # a block is let go before the next is made
    return out


@dataclass
class TrotterSums:
    """Per Q: Σ_trotters G·W (``num``) and the trotter pixel count; Σ_disc G(k, 0) (``dc``) over ``n_disc`` pixels."""

    num: np.ndarray
    count: np.ndarray
    dc: float = 0.0
    n_disc: int = 0


def phase_image(sums: TrotterSums, n_patterns: int, flat_transfer: bool = False) -> np.ndarray:
    """The SSB phase image (rad) from the trotter integrals of ``n_patterns`` patterns.

    With ``I0`` the mean bright-field pixel of the mean pattern and ``N_disc`` the pixels of
    the disc, ``Φ(Q) = Σ_trotters G·W / (i N_disc I0)``: the phase's transform times the
    SSB transfer function N(Q)/N_disc (N(Q) the trotter pixels).  ``flat_transfer``
    divides by N(Q) instead of N_disc.  Φ is 0 at Q = 0; the phase is ``Re IFFT2[Φ]``.
    """
    if n_patterns == 0 or sums.n_disc == 0 or sums.dc == 0:
        return np.zeros(sums.num.shape)
    i0 = sums.dc / (n_patterns * sums.n_disc)
    area = np.maximum(sums.count, 1) if flat_transfer else float(sums.n_disc)
    phi = np.where(sums.count > 0, sums.num / (1j * area * i0), 0)
    phi[0, 0] = 0
    return np.fft.ifft2(phi).real
