"""tcBF settings and the bright-field bin layout: which detector pixels are summed into
which bin, and where each bin sits on the detector.

Owns `TcbfSettings` (the options of the tcBF reducer, validated) and `BinLayout` (built
once per scan from the pattern centre and the bright-field disc radius).
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np

from ricom.core.errors import SettingsError

FIT_MODES = ("given", "first", "auto")
"""``given``: shifts from the given aberrations; ``first``: fitted once, from the first
complete rows of the scan; ``auto``: refitted as complete rows double, and on the whole
scan once every position has a pattern (the image is rebuilt after each fit)."""
BINS_ACROSS = 12
"""Without a given bin size, bins of ⌊R/6⌋ pixels: about 12 across the used disc."""
MIN_BINS = 4


@dataclass(frozen=True)
class TcbfSettings:
    """Options of tilt-corrected bright field (`ricom.phase.tcbf`).

    Parameters
    ----------
    fit : {"auto", "first", "given"}
        Where the shifts come from (see `FIT_MODES`).
    defocus_A, astigmatism_A, astigmatism_angle_deg : float
        With ``fit="given"``: defocus Δf (Å, > 0 underfocus, C1 = −Δf), two-fold
        astigmatism |A1| (Å) and its axis (degrees from scan +x towards scan +y).
    rotation_deg : float or None
        Scan–detector rotation used with ``fit="given"``, and the branch the fit's
        rotation (known only up to 180°) is reported nearest to; None: the
        reconstruction's (`ricom.core.params.DetectorGeometry.rotation_deg`).
    bin_px : int or None
        Side of the square bins of detector pixels; None: ⌊R/6⌋ for a bright-field disc
        of radius R (at least 1).
    bf_fraction : float
        Bins whose every pixel lies within this fraction of the bright-field radius are used.
    fit_fraction : float
        Only bins within this fraction of the radius (at least the 12 nearest the
        centre) are cross-correlated for the fit, and — with the calibration — only at
        frequencies below (1 − fit_fraction)·α/λ, where they see both side bands of the
        aperture (one side band shifts a frequency by an extra πλΔf q²/2πq); the fitted
        shifts apply to every bin.
    upsample : int
        The image is made on a grid this many times finer than the scan.
    phase_flip : bool
        Flip the sign of the contrast transfer per spatial frequency (needs the step,
        the pixel size and the energy); otherwise the image's sign is that of the
        transfer at low frequencies, so the potential shows positive.
    fit_rows : int or None
        Complete scan rows before the first fit; None: max(16, scan rows // 4) (at most
        the scan's rows).
    search_px : float or None
        How far (scan px) the first, central bins' shifts are looked for; None: a quarter
        of the fitted region's smaller side.
    """

    fit: str = "auto"
    defocus_A: float = 0.0
    astigmatism_A: float = 0.0
    astigmatism_angle_deg: float = 0.0
    rotation_deg: float | None = None
    bin_px: int | None = None
    bf_fraction: float = 0.9
    fit_fraction: float = 0.3
    upsample: int = 1
    phase_flip: bool = False
    fit_rows: int | None = None
    search_px: float | None = None

    def __post_init__(self) -> None:
        if self.fit not in FIT_MODES:
            raise SettingsError(f"tcBF fit must be one of {', '.join(FIT_MODES)}, got {self.fit!r}")
        for name in ("defocus_A", "astigmatism_A", "astigmatism_angle_deg"):
            if not math.isfinite(getattr(self, name)):
                raise SettingsError(f"tcBF {name} must be a finite number, got {getattr(self, name)!r}")
        if self.rotation_deg is not None and not math.isfinite(self.rotation_deg):
            raise SettingsError(f"tcBF rotation_deg must be finite or None, got {self.rotation_deg!r}")
        for name, low in (("bin_px", 1), ("upsample", 1), ("fit_rows", 4)):
            v = getattr(self, name)
            if v is not None and (int(v) != v or v < low):
                raise SettingsError(f"tcBF {name} must be a whole number ≥ {low}, got {v!r}")
        if not 0 < self.bf_fraction <= 1.5:
            raise SettingsError(f"tcBF bf_fraction must lie in (0, 1.5], got {self.bf_fraction!r}")
        if not 0 < self.fit_fraction <= 1.5:
            raise SettingsError(f"tcBF fit_fraction must lie in (0, 1.5], got {self.fit_fraction!r}")
        if self.search_px is not None and not self.search_px > 0:
            raise SettingsError(f"tcBF search_px must be positive, got {self.search_px!r}")


@dataclass(frozen=True)
class BinLayout:
    """The bright-field bins of one scan.

    Attributes
    ----------
    pixel_index, pixel_bin : ndarray of int64
        Flat detector index of every pixel used and the bin it is summed into.
    offsets_xy : ndarray (n_bins, 2)
        Mean detector offset (x, y) of each bin's pixels from the centre, in pixels.
    bin_px : int
    center_yx : (float, float)
    bf_radius_px : float
    detector_x : int
        Pixels per detector row.
    """

    pixel_index: np.ndarray
    pixel_bin: np.ndarray
    offsets_xy: np.ndarray
    bin_px: int
    center_yx: tuple[float, float]
    bf_radius_px: float
    detector_x: int

    @property
    def n_bins(self) -> int:
        return len(self.offsets_xy)

    @functools.cached_property
    def bands(self) -> tuple:
        """``(det_x, b, row0, col0, n_in_band, bin0)`` for `ricom.phase._tcbf_kernels.bin_patterns`:
        the bins grouped into bands of side-by-side bins in one row of bins."""
        first = np.full(self.n_bins, np.iinfo(np.int64).max)
        np.minimum.at(first, self.pixel_bin, self.pixel_index)
        top, left = np.divmod(first, self.detector_x)
        b = self.bin_px
        new_band = np.ones(self.n_bins, bool)
        new_band[1:] = (top[1:] != top[:-1]) | (left[1:] != left[:-1] + b)
        starts = np.flatnonzero(new_band)
        counts = np.diff(np.append(starts, self.n_bins))
        return (self.detector_x, b, top[starts].astype(np.int64), left[starts].astype(np.int64),
                counts.astype(np.int64), starts.astype(np.int64))


def bin_layout(detector_shape, center_yx, bf_radius_px: float, settings: TcbfSettings) -> BinLayout:
    """Square bins of ``bin_px`` pixels on a grid centred on the pattern centre, kept when
    whole and within ``bf_fraction`` of the bright-field radius.

    Examples
    --------
    >>> lay = bin_layout((16, 16), (7.5, 7.5), 6.0, TcbfSettings(bin_px=2))
    >>> lay.n_bins, lay.offsets_xy.mean(axis=0).tolist()
    (21, [0.0, 0.0])
    """
    ny, nx = (int(v) for v in detector_shape)
    cy, cx = (float(v) for v in center_yx)
    b = int(settings.bin_px) if settings.bin_px else max(1, int(bf_radius_px // (BINS_ACROSS / 2)))
    yy, xx = np.indices((ny, nx), dtype=np.float64)
    by = np.floor((yy - cy) / b + 0.5).astype(np.int64)
    bx = np.floor((xx - cx) / b + 0.5).astype(np.int64)
    inside = np.hypot(yy - cy, xx - cx) <= settings.bf_fraction * bf_radius_px
    key = (by - by.min()) * (bx.max() - bx.min() + 1) + (bx - bx.min())
    n_keys = int(key.max()) + 1
    whole = np.bincount(key.ravel(), minlength=n_keys) == b * b
    all_in = np.bincount(key.ravel(), inside.ravel(), minlength=n_keys) == b * b
    keep_keys = np.nonzero(whole & all_in)[0]
    if len(keep_keys) < MIN_BINS:
        raise SettingsError(f"the bright-field disc (radius {bf_radius_px:.1f} px) holds only {len(keep_keys)} whole "
                            f"tcBF bins of {b}×{b} pixels, fewer than {MIN_BINS}; use a smaller tcBF bin_px or a "
                            "larger bf_fraction")
    lookup = np.full(n_keys, -1, np.int64)
    lookup[keep_keys] = np.arange(len(keep_keys))
    bins = lookup[key.ravel()]
    used = np.nonzero(bins >= 0)[0]
    counts = np.bincount(bins[used], minlength=len(keep_keys))
    ox = np.bincount(bins[used], (xx.ravel() - cx)[used], minlength=len(keep_keys)) / counts
    oy = np.bincount(bins[used], (yy.ravel() - cy)[used], minlength=len(keep_keys)) / counts
    return BinLayout(used.astype(np.int64), bins[used].astype(np.int64), np.column_stack([ox, oy]), b,
                     (cy, cx), float(bf_radius_px), nx)


__all__ = ["BINS_ACROSS", "FIT_MODES", "BinLayout", "TcbfSettings", "bin_layout"]
