"""The compiled loops of single side-band ptychography (numba, ``nogil``, cached).

Three loops, none of which allocates or calls back into Python per pattern:

* `bin_pixels` sums the detector pixels of each pattern's kept binned pixels;
* `accumulate_rows` adds binned patterns into the live accumulator, the scan's Fourier
  transform along x (``H[y, qx, j] += I_j · e^{−2πi qx x / Nx}``, real and imaginary planes);
* `trotter_sums` integrates the 4D spectrum ``G(k_j, Q)`` over the double-overlap
  regions ("trotters") of every spatial frequency Q, with the aberration correction.

The formulas and their sign conventions are those of `ricom.phase.ssb`.
"""
from __future__ import annotations

import math

import numba
import numpy as np

JIT = {"nogil": True, "cache": True}


@numba.njit(**JIT)
def bin_pixels(frames, rows, sources, targets, out):
    """``out[rows[p], targets[i]] += frames[p, sources[i]]`` for every pattern p with ``rows[p] ≥ 0``.

    ``frames (k, ny·nx)`` of any number type (native byte order); ``sources`` the detector
    pixels (flat) that belong to a kept binned pixel, ``targets`` its column of ``out
    (m, n_kept)`` float64 (`ricom.phase._ssb_geometry.pixel_map`).
    """
    k = frames.shape[0]
    n = sources.shape[0]
    for p in range(k):
        r = rows[p]
        if r < 0:
            continue
        for i in range(n):
            out[r, targets[i]] += frames[p, sources[i]]


@numba.njit(fastmath={"contract"}, **JIT)
def accumulate_rows(acc, values, positions, scan_x, twiddle):
    """``acc[y, q, 0/1, j] += Re/Im(twiddle[x, q]) · values[p, j]`` for pattern p at flat position ``y·scan_x + x``.

    ``acc (Ny, nq, 2, n)`` float64 (real and imaginary planes, so the inner loop vectorises);
    ``values (k, n)`` float64; ``positions (k,)`` (−1: skip); ``twiddle (Nx, nq)`` complex128
    = e^{−2πi q x / Nx}.
    """
    k, n = values.shape
    nq = acc.shape[1]
    for p in range(k):
        pos = positions[p]
        if pos < 0:
            continue
        y = pos // scan_x
        x = pos - y * scan_x
        v = values[p]
        for q in range(nq):
            tr = twiddle[x, q].real
            ti = twiddle[x, q].imag
            re = acc[y, q, 0]
            im = acc[y, q, 1]
            for j in range(n):
                re[j] += tr * v[j]
                im[j] += ti * v[j]


@numba.njit(inline="always")
def _chi(ky, kx, lam, defocus, astig, astig_angle, cs):
    """Aberration phase χ(k) (rad), k in 1/Å: πλk²(−Δf + A cos 2(φ − φ_A)) + (π/2) Cs λ³ k⁴."""
    k2 = ky * ky + kx * kx
    phi = math.atan2(ky, kx)
    return (math.pi * lam * k2 * (-defocus + astig * math.cos(2.0 * (phi - astig_angle)))
            + 0.5 * math.pi * cs * lam ** 3 * k2 * k2)


@numba.njit(**JIT)
def trotter_sums(spec, ky, kx, qy, qx, alpha, aber, num, count):
    """Add the trotter integrals of the kept pixels ``j`` into ``num`` and their pixel counts into ``count``.

    Parameters
    ----------
    spec : complex128 (Ny, Nx//2 + 1, n)
        ``G(k_j, Q)`` for the non-negative x frequencies (the rest follows from
        G(k, −Q) = G(k, Q)*, the patterns being real).
    ky, kx : float64 (n,)
        Scan-frame spatial frequency (1/Å) of each kept pixel.
    qy, qx : float64 (Ny,), (Nx,)
        The scan frequencies (1/Å), in FFT order.
    alpha : float
        Convergence semi-angle as a spatial frequency (1/Å).
    aber : float64 (5,)
        λ (Å), defocus Δf (Å), astigmatism |A| (Å), its angle (rad), Cs (Å).
    num : complex128 (Ny, Nx); count : float64 (Ny, Nx)
        Σ_j G·W and the number of trotter pixels, per Q (added to).

    Notes
    -----
    For pixel k inside the disc (|k| < α): in the trotter |k − Q| < α ≤ |k + Q| the weight
    is ``e^{i(χ(k−Q) − χ(k))}``; in |k + Q| < α ≤ |k − Q| it is ``−e^{i(χ(k) − χ(k+Q))}``;
    elsewhere 0.
    """
    ny, nx = num.shape
    n = ky.shape[0]
    half = nx // 2
    lam, df, ast, ang, cs = aber[0], aber[1], aber[2], aber[3], aber[4]
    plain = df == 0.0 and ast == 0.0 and cs == 0.0
    a2 = alpha * alpha
    for iy in range(ny):
        for ix in range(nx):
            if ix <= half:
                sy, sx, flip = iy, ix, False
            else:
                sy, sx, flip = (ny - iy) % ny, nx - ix, True
            Qy, Qx = qy[iy], qx[ix]
            acc = 0j
            cnt = 0.0
            for j in range(n):
                ky_j, kx_j = ky[j], kx[j]
                if ky_j * ky_j + kx_j * kx_j >= a2:
                    continue
                my, mx = ky_j - Qy, kx_j - Qx
                py, px = ky_j + Qy, kx_j + Qx
                minus = my * my + mx * mx < a2
                plus = py * py + px * px < a2
                if minus == plus:
                    continue
                g = spec[sy, sx, j]
                if flip:
                    g = g.conjugate()
                if plain:
                    w = 1.0 + 0j
                elif minus:
                    c = _chi(my, mx, lam, df, ast, ang, cs) - _chi(ky_j, kx_j, lam, df, ast, ang, cs)
                    w = complex(math.cos(c), math.sin(c))
                else:
                    c = _chi(ky_j, kx_j, lam, df, ast, ang, cs) - _chi(py, px, lam, df, ast, ang, cs)
                    w = complex(math.cos(c), math.sin(c))
                if plus:
                    w = -w
                acc += g * w
                cnt += 1.0
            num[iy, ix] += acc
            count[iy, ix] += cnt


def twiddles(scan_x: int) -> np.ndarray:
    """``e^{−2πi q x / Nx}`` for x in 0…Nx−1, q in 0…Nx//2 (complex128, (Nx, Nx//2 + 1))."""
    x = np.arange(scan_x)[:, None]
    q = np.arange(scan_x // 2 + 1)[None, :]
    return np.exp(-2j * np.pi * ((x * q) % scan_x) / scan_x)


@numba.njit(**JIT)
def bin_events(rows, pixels, full_map, out):
    """``out[rows[e], full_map[pixels[e]]] += 1`` for every event e with ``rows[e] ≥ 0``,
    ``pixels[e] ≥ 0`` and a kept binned pixel (``full_map`` ≥ 0)."""
    for e in range(rows.shape[0]):
        r = rows[e]
        p = pixels[e]
        if r < 0 or p < 0:
            continue
        m = full_map[p]
        if m >= 0:
            out[r, m] += 1.0
