"""Pattern centre: where the undeflected beam lands on the detector.

Owns the measurement pass used by calibration (`measure`: per-position uncentred COM
and the mean pattern from one pass over the data) and the three ways to find the centre
(`center_from_mean_com`, `center_from_disc`, `center_from_reference`).  All results are
in detector pixels (row, column), as `ricom.core.params.DetectorGeometry` takes them.  The
descan correction (how the centre moves over the scan) is in `ricom.calibration.descan`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ricom.core.errors import Param, SettingsError
from ricom.engine.detector import pattern_centre_of_mass
from ricom.engine.pipeline import run
from ricom.engine.reducer import PatternSum
from ricom.engine.reduction import ChunkReduction
from ricom.sources import open_input


# ---------------------------------------------------------------------- one pass
@dataclass
class Measurement:
    """What one pass over a scan gives calibration (detector pixels, NaN where empty).

    ``com_y``/``com_x`` are the *uncentred* per-position COM (row, column from the top-left
    pixel); ``mean_pattern`` is the mean of all frames (None for event data).
    """

    com_y: np.ndarray
    com_x: np.ndarray
    counts: np.ndarray
    mean_pattern: np.ndarray | None
    n_patterns: int
    complete: bool = True

    @property
    def scan_shape(self) -> tuple[int, int]:
        return self.com_y.shape


def measure(data, *, scan_shape=None, chunk_size: int = 512, progress=False, **source_options) -> Measurement:
    """One pass over ``data`` (array, file name, ``"demo"`` or `Source`): COM maps and mean pattern.

    The moments reducer gives the COM maps and a pattern sum beside it the mean pattern
    (`ricom.engine.reducer.PatternSum`); no image is made.  A source without a scan shape
    (e.g. a 3D reference stack) is treated as one line.  An interrupted or broken-off
    pass returns what was read (``complete=False``).
    """
    if isinstance(data, Measurement):
        return data
    opts = dict(source_options)
    if scan_shape is not None:
        opts["scan_shape"] = tuple(scan_shape)
    src = open_input(data, **opts)
    shape = src.scan_shape or (1, src.n_frames or 1)
    reduction = ChunkReduction(shape, src.detector_shape)
    patterns = PatternSum(src.detector_shape)
    reduction.add_reducer(patterns)
    result = run(src, reduction, chunk_size=chunk_size, progress=progress, description="calibrating")
    cy, cx, t = reduction.uncentred_com()
    return Measurement(cy, cx, t, patterns.mean(), reduction.n_patterns, result.complete)


# ---------------------------------------------------------------------- centre
def center_from_mean_com(com_y: np.ndarray, com_x: np.ndarray) -> tuple[float, float]:
    """Centre as the mean uncentred COM over all non-empty positions (NaN = empty).

    Over a periodic specimen the deflections average out, so this is the beam centre
    plus the mean descan.  It is what ``--center auto`` uses.

    Examples
    --------
    >>> center_from_mean_com(np.array([[10.0, 12.0, np.nan]]), np.array([[5.0, 7.0, np.nan]]))
    (11.0, 6.0)
    """
    cy = np.asarray(com_y, np.float64)
    cx = np.asarray(com_x, np.float64)
    ok = np.isfinite(cy) & np.isfinite(cx)
    if not ok.any():
        raise SettingsError("no scan position has counts; cannot find the centre from the mean COM")
    return float(cy[ok].mean()), float(cx[ok].mean())


@dataclass(frozen=True)
class DiscFit:
    """Bright-field disc: centre (row, column) and radius in detector pixels.

    ``residual_px`` is the rms distance of the edge points from the fitted circle.
    """

    center_yx: tuple[float, float]
    radius_px: float
    residual_px: float
    n_edge_points: int


def fit_disc(pattern: np.ndarray, n_rays: int = 180) -> DiscFit:
    """Sub-pixel circle fit to the edge of the bright-field disc of one (mean) pattern.

    The disc is first segmented with Otsu's threshold; then, along ``n_rays`` rays from
    its centroid, the edge is the point where the pattern crosses half-way between the
    disc level and the background (linear interpolation between 0.05-px samples); a
    circle is fitted to these points by least squares, outliers (> 3 robust σ) dropped,
    and the rays recast from the new centre twice.  Rays that leave the detector before
    crossing are ignored, so a disc cut by the detector edge still fits.

    Raises
    ------
    SettingsError
        If the pattern shows no disc.
    """
    p = np.nan_to_num(np.asarray(pattern, np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    if p.ndim != 2 or min(p.shape) < 4:
        raise SettingsError(f"the disc fit needs a 2D pattern of at least 4×4 pixels, got shape {p.shape}")
    hint = ("; use the mean-COM centre (", Param("center", "com"), ") or give ", Param("center", form=True))
    t = _otsu(np.minimum(p, np.quantile(p, 0.999)))  # a few hot pixels must not set the threshold
    inside = p > t if t is not None else np.zeros(p.shape, bool)
    area = int(inside.sum())
    if area < 5 or area > 0.9 * p.size:
        raise SettingsError("no bright-field disc found in the mean pattern", *hint)
    yy, xx = np.nonzero(inside)
    cy, cx, r0 = float(yy.mean()), float(xx.mean()), math.sqrt(area / math.pi)
    rad = np.hypot(*np.indices(p.shape) - np.array([cy, cx])[:, None, None])
    disc_level = float(np.median(p[rad < 0.6 * r0])) if (rad < 0.6 * r0).any() else float(p[inside].mean())
    ring = (rad > 1.4 * r0) & (rad < 2.0 * r0)
    background = float(np.median(p[ring])) if ring.any() else float(np.median(p[~inside]))
    half = 0.5 * (disc_level + background)
    if not disc_level > background:
        raise SettingsError("no bright-field disc found in the mean pattern", *hint)
    phi = np.linspace(0, 2 * np.pi, n_rays, endpoint=False)
    r_fit, resid, n_pts = r0, float("nan"), 0
    for _ in range(3):
        r = np.arange(0.3 * r_fit, 1.8 * r_fit + 1.0, 0.05)
        ys = cy + np.sin(phi)[:, None] * r[None, :]
        xs = cx + np.cos(phi)[:, None] * r[None, :]
        vals, valid = _bilinear(p, ys, xs)
        edge = _first_crossings(vals, valid, r, half)
        ok = np.isfinite(edge)
        if ok.sum() < 8:
            raise SettingsError("the bright-field disc edge could not be traced", *hint)
        ey, ex = cy + np.sin(phi[ok]) * edge[ok], cx + np.cos(phi[ok]) * edge[ok]
        keep = np.ones(ey.size, bool)
        for _ in range(3):
            cy, cx, r_fit = _fit_circle(ey[keep], ex[keep])
            d = np.hypot(ey - cy, ex - cx) - r_fit
            mad = 1.4826 * float(np.median(np.abs(d[keep] - np.median(d[keep]))))
            new_keep = np.abs(d) <= max(3 * mad, 0.05)
            if new_keep.sum() < 8 or (new_keep == keep).all():
                break
            keep = new_keep
        resid, n_pts = float(np.sqrt(np.mean(d[keep] ** 2))), int(keep.sum())
    return DiscFit((float(cy), float(cx)), float(r_fit), resid, n_pts)


def center_from_disc(mean_pattern: np.ndarray) -> tuple[float, float]:
    """Centre (row, column) of the bright-field disc, sub-pixel; see `fit_disc`.

    Examples
    --------
    >>> yy, xx = np.indices((32, 32))
    >>> disc = (np.hypot(yy - 14.3, xx - 17.6) < 7).astype(float)
    >>> cy, cx = center_from_disc(disc)
    >>> round(cy, 1), round(cx, 1)
    (14.3, 17.6)
    """
    return fit_disc(mean_pattern).center_yx


def center_from_reference(reference, method: str = "com", **source_options) -> tuple[float, float]:
    """Centre from a vacuum reference: its mean COM (``method="com"``) or its disc fit (``"disc"``).

    ``reference`` is a 2D pattern, a 3D/4D array, a file name, a `Source` or a
    `Measurement`.  A 2D array is taken as the (mean) pattern itself.
    """
    if method not in ("com", "disc"):
        raise SettingsError(f"reference centre method must be 'com' or 'disc', got {method!r}")
    if isinstance(reference, np.ndarray) and reference.ndim == 2:
        pattern = reference.astype(np.float64)
        if method == "disc":
            return center_from_disc(pattern)
        centre = pattern_centre_of_mass(pattern)
        if centre is None:
            raise SettingsError("the reference pattern has no counts; cannot find the centre from it")
        return centre
    m = measure(reference, **source_options)
    if method == "disc":
        if m.mean_pattern is None:
            raise SettingsError("the reference has no frames to fit a disc to; use method='com'")
        return center_from_disc(m.mean_pattern)
    return center_from_mean_com(m.com_y, m.com_x)


# ---------------------------------------------------------------------- helpers
def _otsu(p: np.ndarray) -> float | None:
    lo, hi = float(p.min()), float(p.max())
    if not hi > lo:
        return None
    hist, edges = np.histogram(p, bins=256, range=(lo, hi))
    mids = 0.5 * (edges[1:] + edges[:-1])
    w0 = np.cumsum(hist)
    w1 = w0[-1] - w0
    m0 = np.cumsum(hist * mids)
    with np.errstate(invalid="ignore", divide="ignore"):
        between = w0 * w1 * (m0 / w0 - (m0[-1] - m0) / w1) ** 2
    between = np.nan_to_num(between[:-1], nan=-1.0)
    return float(edges[int(np.argmax(between)) + 1])


def _bilinear(img: np.ndarray, y: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    ny, nx = img.shape
    valid = (y >= 0) & (y <= ny - 1) & (x >= 0) & (x <= nx - 1)
    yc, xc = np.clip(y, 0, ny - 1), np.clip(x, 0, nx - 1)
    y0, x0 = np.minimum(np.floor(yc).astype(int), ny - 2), np.minimum(np.floor(xc).astype(int), nx - 2)
    fy, fx = yc - y0, xc - x0
    v = (img[y0, x0] * (1 - fy) * (1 - fx) + img[y0, x0 + 1] * (1 - fy) * fx
         + img[y0 + 1, x0] * fy * (1 - fx) + img[y0 + 1, x0 + 1] * fy * fx)
    return v, valid


def _first_crossings(vals: np.ndarray, valid: np.ndarray, r: np.ndarray, level: float) -> np.ndarray:
    """Per ray, the first radius where the profile drops below ``level`` (NaN if none)."""
    above = vals >= level
    down = above[:, :-1] & ~above[:, 1:]
    first = np.argmax(down, axis=1)
    has = down.any(axis=1)
    rows = np.arange(vals.shape[0])
    # the ray must stay on the detector up to the crossing
    inside = np.cumprod(valid, axis=1).astype(bool)
    has &= inside[rows, np.minimum(first + 1, vals.shape[1] - 1)]
    v0, v1 = vals[rows, first], vals[rows, first + 1]
    frac = np.clip((v0 - level) / np.where(v0 != v1, v0 - v1, 1.0), 0, 1)
    edge = r[first] + frac * (r[1] - r[0])
    return np.where(has, edge, np.nan)


def _fit_circle(y: np.ndarray, x: np.ndarray) -> tuple[float, float, float]:
    """Algebraic (Kåsa) least-squares circle through points; returns (cy, cx, r)."""
    my, mx = y.mean(), x.mean()
    u, v = x - mx, y - my
    a = np.stack([u, v, np.ones_like(u)], axis=1)
    sol = np.linalg.lstsq(a, u * u + v * v, rcond=None)[0]
    cx, cy = sol[0] / 2, sol[1] / 2
    r = math.sqrt(max(sol[2] + cx * cx + cy * cy, 0.0))
    return float(cy + my), float(cx + mx), r
