"""A slow, plain-NumPy single side-band reconstruction written from the formulas, for the tests.

Independent of ``ricom.phase``: it bins the 4D array by reshaping, takes the full 2D FFT
over the scan of every binned pixel, and for every spatial frequency Q (a Python loop)
integrates the two double-overlap regions of the bright-field disc with the conjugate
aberration factors (Pennycook et al., Ultramicroscopy 151 (2015) 160; probe
A(k) = e^{−iχ(k)}, χ(k) = πλk²(−Δf + A1 cos 2(φ − φ_A)) + π/2·Cs·λ³k⁴):

    Φ(Q) = [Σ_{|k−Q|<α≤|k+Q|} G(k,Q) e^{i(χ(k−Q) − χ(k))} − Σ_{|k+Q|<α≤|k−Q|} G(k,Q) e^{i(χ(k) − χ(k+Q))}]
           / (i · N · I0),

N the pixels of the disc (or, with ``flat_transfer``, N(Q) the pixels of both regions),
I0 the mean bright-field pixel of the mean pattern,
Φ(0) = 0; the phase is Re IFFT2[Φ].
"""
from __future__ import annotations

import math

import numpy as np

_H, _M0, _E, _C = 6.62607015e-34, 9.1093837015e-31, 1.602176634e-19, 299792458.0


def wavelength(energy_keV: float) -> float:
    """Relativistic electron wavelength (Å)."""
    u = energy_keV * 1e3
    return _H / math.sqrt(2 * _M0 * _E * u * (1 + _E * u / (2 * _M0 * _C ** 2))) * 1e10


def chi(ky, kx, lam, defocus, astig=0.0, astig_angle_rad=0.0, cs_A=0.0):
    k2 = ky ** 2 + kx ** 2
    return (np.pi * lam * k2 * (-defocus + astig * np.cos(2 * (np.arctan2(ky, kx) - astig_angle_rad)))
            + np.pi / 2 * cs_A * lam ** 3 * k2 ** 2)


def reference_ssb(data, step_A, pixel_size_mrad, energy_keV, convergence_mrad, centre_yx, bin_factor=1,
                  defocus_A=0.0, astigmatism_A=0.0, astigmatism_angle_deg=0.0, cs_mm=0.0,
                  rotation_deg=0.0, flip=False, flat_transfer=False):
    """The SSB phase (rad) of a 4D array ``(sy, sx, dy, dx)``."""
    sy, sx, dy, dx = data.shape
    b = bin_factor
    by, bx = dy // b, dx // b
    binned = np.asarray(data, np.float64)[:, :, :by * b, :bx * b].reshape(sy, sx, by, b, bx, b).sum(axis=(3, 5))
    lam = wavelength(energy_keV)
    # detector offsets of the binned pixels' centres from the pattern centre, in 1/Å
    row = b * np.arange(by) + (b - 1) / 2 - centre_yx[0]
    col = b * np.arange(bx) + (b - 1) / 2 - centre_yx[1]
    dyy, dxx = np.meshgrid(row, col, indexing="ij")
    dxx = -dxx if flip else dxx
    th = math.radians(rotation_deg)
    scale = pixel_size_mrad * 1e-3 / lam
    kx = (dxx * math.cos(th) - dyy * math.sin(th)) * scale
    ky = (dxx * math.sin(th) + dyy * math.cos(th)) * scale
    alpha = convergence_mrad * 1e-3 / lam
    disc = kx ** 2 + ky ** 2 < alpha ** 2
    G = np.fft.fft2(binned, axes=(0, 1))
    i0 = G[0, 0][disc].real.sum() / (sy * sx * disc.sum())
    ab = dict(astig=astigmatism_A, astig_angle_rad=math.radians(astigmatism_angle_deg), cs_A=cs_mm * 1e7)
    qy, qx = np.fft.fftfreq(sy, step_A), np.fft.fftfreq(sx, step_A)
    phi = np.zeros((sy, sx), complex)
    for iy in range(sy):
        for ix in range(sx):
            if iy == 0 and ix == 0:
                continue
            Q = (qy[iy], qx[ix])
            minus = disc & ((ky - Q[0]) ** 2 + (kx - Q[1]) ** 2 < alpha ** 2)
            plus = disc & ((ky + Q[0]) ** 2 + (kx + Q[1]) ** 2 < alpha ** 2)
            left, right = minus & ~plus, plus & ~minus
            n = left.sum() + right.sum()
            if n == 0:
                continue
            here = chi(ky, kx, lam, defocus_A, **ab)
            w_left = np.exp(1j * (chi(ky - Q[0], kx - Q[1], lam, defocus_A, **ab) - here))
            w_right = -np.exp(1j * (here - chi(ky + Q[0], kx + Q[1], lam, defocus_A, **ab)))
            total = (G[iy, ix][left] * w_left[left]).sum() + (G[iy, ix][right] * w_right[right]).sum()
            phi[iy, ix] = total / (1j * (n if flat_transfer else disc.sum()) * i0)
    return np.fft.ifft2(phi).real
