"""The riCOM kernel: construction, band-pass folding, frequency response.

The kernels as the image update uses them (scaled by the step, flipped for the scatter)
and the correlation that rebuilds a whole image are in `ricom.engine.ricom_update`.

Conventions: the correlation form of the contract,

    riCOM(r) = −(h² / 2π) · Σ_d COM(r + d) · d / |d|²,

is written with the dimensionless base kernel ``K(i, j) = (i, j) / (i² + j²)`` over scan
offsets ``d = h·(i, j)`` so that ``riCOM = Σ COM(r + d) · W(d)`` with
``W = −(h / 2π) K``.  Arrays are indexed ``[j + r, i + r]`` (row = y offset) with
``r = n // 2``.  The scatter form used live is ``image[p + e] += COM(p) · W(−e)``.

Band-pass cut-offs are in cycles per scan pixel (0.5 is the Nyquist frequency along an
axis); multiply 1/Å by the step in Å to convert.
"""
from __future__ import annotations

import math

import numpy as np

from ricom.core.params import KernelSettings


def base_kernel(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Unfiltered ``K = d / |d|²`` on an n×n grid of scan-pixel offsets, K(0) = 0.

    Examples
    --------
    >>> kx, ky = base_kernel(3)
    >>> kx[1].tolist(), ky[:, 1].tolist()
    ([-1.0, 0.0, 1.0], [-1.0, 0.0, 1.0])
    """
    r = size // 2
    j, i = np.mgrid[-r:r + 1, -r:r + 1].astype(np.float64)
    d2 = i * i + j * j
    d2[r, r] = 1.0
    kx, ky = i / d2, j / d2
    kx[r, r] = ky[r, r] = 0.0
    return kx, ky


def annulus_mask(shape: tuple[int, int], k_min: float, k_max: float) -> np.ndarray:
    """Boolean mask ``k_min ≤ |k| ≤ k_max`` on an unshifted FFT grid (cycles/pixel)."""
    ky = np.fft.fftfreq(shape[0])[:, None]
    kx = np.fft.fftfreq(shape[1])[None, :]
    k = np.hypot(kx, ky)
    return (k >= k_min) & (k <= k_max)


def band_pass(kernel: np.ndarray, k_min: float, k_max: float, grid: int | None = None) -> np.ndarray:
    """Fold an annular band-pass into a centred odd-sized kernel.

    The kernel is embedded at the centre of a ``grid × grid`` zero map (odd, default
    ``2n + 1``), transformed with its centre moved to index 0, multiplied by the annulus,
    transformed back, and the central n×n cropped out.  With an odd grid the centre maps
    exactly to the zero-frequency origin, so odd kernels stay exactly odd.

    Examples
    --------
    >>> kx, _ = base_kernel(5)
    >>> np.allclose(band_pass(kx, 0.0, 1.0), kx)
    True
    """
    n = kernel.shape[0]
    g = grid if grid is not None else 2 * n + 1
    if g % 2 == 0 or g < n:
        raise ValueError("the band-pass grid must be odd and at least the kernel size")
    big = np.zeros((g, g))
    o = (g - n) // 2
    big[o:o + n, o:o + n] = kernel
    spec = np.fft.fft2(np.fft.ifftshift(big)) * annulus_mask((g, g), k_min, k_max)
    out = np.fft.fftshift(np.real(np.fft.ifft2(spec)))
    return np.ascontiguousarray(out[o:o + n, o:o + n])


def filtered_kernel(settings: KernelSettings) -> tuple[np.ndarray, np.ndarray]:
    """Base kernel of the given size with its band-pass (if any) folded in."""
    kx, ky = base_kernel(settings.size)
    if settings.band_pass is not None:
        lo, hi = settings.band_pass
        kx, ky = band_pass(kx, lo, hi), band_pass(ky, lo, hi)
    return kx, ky


def frequency_response(settings: KernelSettings, map_size: int | None = None) -> dict:
    """Radially averaged response of the kernel next to the line-integration estimate.

    The kernel is placed at the centre of an N×N map; the response at frequency k is
    ``|k̂ · F[K](k)| / 2π`` averaged over rings one frequency bin wide, and the
    approximation is ``(N / 2πκ)·[1 − cos(((n − 1)/2)·2πκ/N)]`` with κ the bin index.

    Returns
    -------
    dict
        ``k`` (cycles per scan pixel), ``response``, ``approximation`` (lists) and
        ``kernel_size``, ``map_size``, ``band_pass``.
    """
    n = settings.size
    big_n = map_size if map_size is not None else max(256, 4 * n + 1)
    if big_n < n:
        raise ValueError(f"map size {big_n} is smaller than the kernel ({n})")
    kx, ky = filtered_kernel(settings)
    fx, fy = (np.fft.fft2(np.fft.ifftshift(_embed(k, big_n))) for k in (kx, ky))
    qy = np.fft.fftfreq(big_n)[:, None] * big_n
    qx = np.fft.fftfreq(big_n)[None, :] * big_n
    q = np.hypot(qx, qy)
    with np.errstate(invalid="ignore", divide="ignore"):
        proj = np.abs((qx * fx + qy * fy) / q) / (2 * math.pi)
    proj[0, 0] = 0.0
    bins = np.rint(q).astype(int)
    kmax = big_n // 2
    sel = bins <= kmax
    sums = np.bincount(bins[sel], proj[sel], minlength=kmax + 1)
    counts = np.bincount(bins[sel], minlength=kmax + 1)
    response = sums / np.maximum(counts, 1)
    kappa = np.arange(kmax + 1, dtype=float)
    approx = np.zeros_like(kappa)
    rr = (n - 1) / 2
    approx[1:] = big_n / (2 * math.pi * kappa[1:]) * (1 - np.cos(rr * 2 * math.pi * kappa[1:] / big_n))
    return {"k": (kappa / big_n).tolist(), "response": response.tolist(),
            "approximation": approx.tolist(), "kernel_size": n, "map_size": big_n,
            "band_pass": list(settings.band_pass) if settings.band_pass else None}


def _embed(kernel: np.ndarray, size: int) -> np.ndarray:
    """Place an odd kernel at the centre (index size//2) of a size×size map."""
    n = kernel.shape[0]
    big = np.zeros((size, size))
    o = size // 2 - n // 2
    big[o:o + n, o:o + n] = kernel
    return big
