"""The riCOM kernel: construction, band-pass folding, frequency response, correlation.

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

import functools
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


def correlation_kernels(settings: KernelSettings, step: float) -> tuple[np.ndarray, np.ndarray]:
    """``W = −(h / 2π) K``: riCOM = Σ_d COM(r + d)·W(d) with COM in its own unit."""
    kx, ky = filtered_kernel(settings)
    f = -step / (2 * math.pi)
    return f * kx, f * ky


def scatter_kernels(settings: KernelSettings, step: float) -> tuple[np.ndarray, np.ndarray]:
    """``S(e) = W(−e)``: the live update adds ``COM(p)·S(e)`` at ``p + e``."""
    wx, wy = correlation_kernels(settings, step)
    return np.ascontiguousarray(wx[::-1, ::-1]), np.ascontiguousarray(wy[::-1, ::-1])


def correlate(com_x: np.ndarray, com_y: np.ndarray, wx: np.ndarray, wy: np.ndarray) -> np.ndarray:
    """``Σ_d COM(r + d)·W(d)`` with COM zero outside the scan (FFT, zero-padded)."""
    sy, sx = com_x.shape
    n = wx.shape[0]
    r = n // 2
    shape = (sy + n - 1, sx + n - 1)
    # correlation = convolution with the flipped kernel
    spec = (np.fft.rfft2(com_x, shape) * np.fft.rfft2(wx[::-1, ::-1], shape)
            + np.fft.rfft2(com_y, shape) * np.fft.rfft2(wy[::-1, ::-1], shape))
    full = np.fft.irfft2(spec, shape)
    return np.ascontiguousarray(full[r:r + sy, r:r + sx])


@functools.lru_cache(maxsize=256)
def fast_fft_size(n: int) -> int:
    """The smallest 2·3·5-smooth number ≥ ``n`` (sizes the FFT does fastest)."""
    best = 1 << max(0, (n - 1).bit_length())
    p5 = 1
    while p5 < best:
        p35 = p5
        while p35 < best:
            m = p35
            while m < n:
                m *= 2
            best = min(best, m)
            p35 *= 3
        p5 *= 5
    return best


class BlockScatter:
    """The riCOM scatter of a whole block of COM changes at once, by FFT.

    Equal to adding ``dx·Kx + dy·Ky`` around every position of the block (the full linear
    convolution, nothing wraps), at a cost that does not grow with the kernel size per
    position: for chunks covering whole scan rows and kernels of tens of pixels this is
    several times faster than the direct scatter.  Kernel spectra are cached per FFT size.
    """

    FFT_COST = 6.0
    """Cost of one FFT point·log2(points) relative to one direct kernel multiply-add."""

    def __init__(self, sx_kernel: np.ndarray, sy_kernel: np.ndarray) -> None:
        self.kx, self.ky = sx_kernel, sy_kernel
        self.n = sx_kernel.shape[0]
        self._spectra: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}

    def fft_shape(self, block_shape: tuple[int, int]) -> tuple[int, int]:
        return (fast_fft_size(block_shape[0] + self.n - 1), fast_fft_size(block_shape[1] + self.n - 1))

    def pays(self, n_positions: int, block_shape: tuple[int, int]) -> bool:
        """True when the FFT is expected to beat the direct scatter of ``n_positions``."""
        h, w = self.fft_shape(block_shape)
        return n_positions * self.n * self.n > self.FFT_COST * h * w * math.log2(h * w)

    def __call__(self, dx: np.ndarray, dy: np.ndarray) -> np.ndarray:
        """``(h + n − 1, w + n − 1)`` image of the block ``(h, w)``; element ``[0, 0]`` lies
        ``n // 2`` rows and columns before the block's first position."""
        shape = self.fft_shape(dx.shape)
        spectra = self._spectra.get(shape)
        if spectra is None:
            if len(self._spectra) > 8:
                self._spectra.clear()
            spectra = (np.fft.rfft2(self.kx, shape), np.fft.rfft2(self.ky, shape))
            self._spectra[shape] = spectra
        full = np.fft.irfft2(np.fft.rfft2(dx, shape) * spectra[0] + np.fft.rfft2(dy, shape) * spectra[1], shape)
        return full[:dx.shape[0] + self.n - 1, :dx.shape[1] + self.n - 1]


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
