"""How the riCOM image grows: the one place that updates it.

Every new COM vector adds the n×n kernel ``K = r/|r|²`` (scaled, band-pass folded in)
into the image around its scan position — the real-time form of the contract's
correlation (`ricom.engine.kernels` has the conventions and the kernel itself).
`RicomImage` owns the image and the COM each position was last scattered with, and
chooses per chunk between

* the **direct scatter** (`ricom.engine.compiled.ricom_update.scatter_touched`): for each
  touched position, the change of its COM times the kernel, added clipped at the edges;
* the **block scatter** (`BlockScatter`): when the positions fill a block of the scan
  well (whole or partial scan rows), one FFT convolution of the block of COM changes;

by a cost model measured on the reference machine (`BlockScatter.pays`).  Positions that
fill rows densely wait (`RicomImage.update`) until they span as many rows as the kernel is
wide, so many small chunks share one block FFT; any read of the image brings them in
first (`RicomImage.flush`).  It rebuilds the whole image (`RicomImage.rebuild`: COM maps
correlated with the kernel by FFT) when the kernel, calibration, centre or descan change.
All three give the same image to float rounding: the cross-correlation of the final COM
maps with the kernel, whatever the order and chunking of the data.
"""
from __future__ import annotations

import functools
import math

import numpy as np

from ricom.core.params import KernelSettings
from ricom.engine import compiled as C
from ricom.engine.kernels import filtered_kernel


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

    The cost model (`pays`) is measured: on the reference machine (AVX-512, NumPy's
    pocketfft) the direct scatter costs 0.25–0.45 ns per position and kernel pixel, and
    the block FFT 0.65–0.85 ns per FFT point·log2(points) plus ≈ 30 µs per call (its NumPy
    calls), for 21–101 pixel kernels on 128² and 256² scans.
    """

    FFT_COST = 2.3
    """Cost of one FFT point·log2(points) relative to one direct kernel multiply-add."""

    CALL_POINTS = 40_000.0
    """The fixed cost of one block FFT (its NumPy calls), in FFT point·log2(points)."""

    def __init__(self, sx_kernel: np.ndarray, sy_kernel: np.ndarray) -> None:
        self.kx, self.ky = sx_kernel, sy_kernel
        self.n = sx_kernel.shape[0]
        self._spectra: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}

    def fft_shape(self, block_shape: tuple[int, int]) -> tuple[int, int]:
        return (fast_fft_size(block_shape[0] + self.n - 1), fast_fft_size(block_shape[1] + self.n - 1))

    def pays(self, n_positions: int, block_shape: tuple[int, int]) -> bool:
        """True when the FFT is expected to beat the direct scatter of ``n_positions``."""
        h, w = self.fft_shape(block_shape)
        return n_positions * self.n * self.n > self.FFT_COST * (h * w * math.log2(h * w) + self.CALL_POINTS)

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


class RicomImage:
    """The riCOM image of one scan, kept up to date from the per-position moments.

    Parameters
    ----------
    scan_shape : (int, int)
        (scan_y, scan_x).
    kernel : KernelSettings
        Kernel size and band-pass.
    step : float
        Scan step in the distance unit of the output (Å, or 1 for scan pixels).

    Notes
    -----
    The image is in (COM unit × distance unit); the calibration's potential scale is
    applied by the snapshot.  ``com_x``/``com_y`` hold, per position, the calibrated COM
    the image currently includes.

    Updates of positions that fill scan rows densely are deferred (`update`) until their
    rows are as many as the kernel is wide, so that one block FFT serves many small
    chunks; reading `image`, `com_x` or `com_y` (a snapshot) brings everything pending
    in first (`flush`), so what is read is always up to date.
    """

    def __init__(self, scan_shape: tuple[int, int], kernel: KernelSettings, step: float) -> None:
        self.scan_shape = scan_shape
        n_pos = scan_shape[0] * scan_shape[1]
        self._image = np.zeros(scan_shape)
        self._com_x = np.zeros(n_pos)
        self._com_y = np.zeros(n_pos)
        self._pending = np.zeros(n_pos, np.int64)
        self._is_pending = np.zeros(n_pos, np.bool_)
        self._n_pending = 0
        self._box = np.zeros(4, np.int64)
        C.clear_pending(self._pending, 0, self._is_pending, self._box)
        self._source: tuple[np.ndarray, C.ComFrame] | None = None
        self.set_kernel(kernel, step)

    image = property(lambda self: self.flush()._image, doc="The riCOM image, up to date.")
    com_x = property(lambda self: self.flush()._com_x, doc="Flat calibrated COM x the image includes.")
    com_y = property(lambda self: self.flush()._com_y, doc="Flat calibrated COM y the image includes.")

    @property
    def n_pending(self) -> int:
        """Positions whose update waits (`update`)."""
        return self._n_pending

    def set_kernel(self, kernel: KernelSettings, step: float) -> None:
        """Use another kernel or step from now on (call `rebuild` to redo the image)."""
        if self._n_pending:
            self.flush()
        self.kernel, self.step = kernel, float(step)
        self._sx_kernel, self._sy_kernel = scatter_kernels(kernel, self.step)
        self._block = BlockScatter(self._sx_kernel, self._sy_kernel)

    def update(self, state: np.ndarray, touched: np.ndarray, n_touched: int, frame: C.ComFrame) -> None:
        """Add the COM changes of the ``n_touched`` positions listed in ``touched``.

        ``state`` holds the moments (`ricom.engine.moments.Moments`), ``frame`` how they
        become calibrated COM (the same frame until the next `rebuild`).  The positions
        join those pending; they are scattered now (`flush`) unless the pending ones fill
        their rows densely (raster order: whole rows, the first and last may be partial)
        and are fewer rows than the kernel is wide — then waiting for more rows makes the
        block FFT cheaper per position (an FFT of h + n − 1 rows serves h rows).
        """
        self._source = (state, frame)
        if n_touched == 0:
            return
        self._n_pending = C.add_pending(touched, n_touched, self._pending, self._n_pending, self._is_pending,
                                        self.scan_shape[1], self._box)
        y0, y1, x0, x1 = (int(v) for v in self._box)
        rows = y1 - y0
        dense = 2 * self._n_pending >= (rows - 2) * (x1 - x0)  # the first and last rows may be partial
        if not (dense and rows < min(self._block.n, self.scan_shape[0])):
            self.flush()

    def flush(self) -> RicomImage:
        """Scatter every pending position now (by the cheaper of the two scatters); returns self."""
        n = self._n_pending
        if n == 0:
            return self
        state, frame = self._source
        box = tuple(int(v) for v in self._box)
        block = (box[1] - box[0], box[3] - box[2])
        if self._block.pays(n, block):
            self._scatter_block(state, self._pending, n, frame, box, block)
        else:
            C.scatter_touched(self._pending, n, state, frame, self._com_x, self._com_y, self._image,
                              self._sx_kernel, self._sy_kernel)
        self._drop_pending()
        return self

    def _drop_pending(self) -> None:
        C.clear_pending(self._pending, self._n_pending, self._is_pending, self._box)
        self._n_pending = 0

    def _scatter_block(self, state, touched, n_touched, frame, box, block) -> None:
        """COM changes into a dense block, one FFT convolution with the kernels, the result
        added clipped at the scan edges."""
        dx, dy = np.empty(block), np.empty(block)
        C.take_deltas(touched, n_touched, state, frame, self._com_x, self._com_y, self.scan_shape[1],
                      box[0], box[2], dx, dy)
        full = self._block(dx, dy)
        r = self._sx_kernel.shape[0] // 2
        sy, sx = self.scan_shape
        top, left = box[0] - r, box[2] - r  # scan pixel of full[0, 0]
        y0, y1 = max(0, top), min(sy, top + full.shape[0])
        x0, x1 = max(0, left), min(sx, left + full.shape[1])
        self._image[y0:y1, x0:x1] += full[y0 - top:y1 - top, x0 - left:x1 - left]

    def rebuild(self, state: np.ndarray, frame: C.ComFrame) -> None:
        """Recompute every position's COM and the whole image from the moments (nothing
        stays pending)."""
        self._drop_pending()
        self._source = (state, frame)
        cx, cy = com_maps(state, frame)
        self._com_x, self._com_y = cx, cy
        wx, wy = correlation_kernels(self.kernel, self.step)
        self._image = correlate(cx.reshape(self.scan_shape), cy.reshape(self.scan_shape), wx, wy)

    def warm_up(self, state: np.ndarray, frame: C.ComFrame) -> None:
        """Run both scatters once on a throwaway copy, so their compiled code is loaded."""
        twin = RicomImage(self.scan_shape, self.kernel, self.step)
        one = np.zeros(1, np.int64)
        twin.update(state, one, 1, frame)
        twin.flush()
        twin._scatter_block(state, one, 1, frame, (0, 1, 0, 1), (1, 1))


def com_maps(state: np.ndarray, frame: C.ComFrame) -> tuple[np.ndarray, np.ndarray]:
    """Flat calibrated COM (x, y) of every position of ``state`` (0 where empty)."""
    n = state.shape[1]
    cx, cy = np.zeros(n), np.zeros(n)
    C.com_maps(state, frame, cx, cy)
    return cx, cy
