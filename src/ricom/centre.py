"""Pattern centre and descan: where the undeflected beam lands on the detector.

Owns the measurement pass used by calibration (`measure`: per-position uncentred COM
and the mean pattern from one pass over the data), the three ways to find the centre
(`center_from_mean_com`, `center_from_disc`, `center_from_reference`) and the descan
correction (`fit_descan`, a least-squares polynomial over the scan, and
`descan_from_reference`, a vacuum scan's COM map).  All results are in detector pixels
(row, column), as `ricom.params.DetectorGeometry` and `Reconstruction.set_descan` take
them: the centre used at scan position ``p`` is ``centre + (offset_y[p], offset_x[p])``.

Warning: fitting the descan on the specimen itself also removes any real field of the
same shape (a uniform tilt, a slowly varying charge or magnetic field).  Prefer a
vacuum reference where long-range fields matter.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .errors import SettingsError


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

    A source without a scan shape (e.g. a 3D reference stack) is treated as one line.
    An interrupted or broken-off pass returns what was read (``complete=False``).
    """
    if isinstance(data, Measurement):
        return data
    from .api import open_input
    from .engine import Reconstruction
    from .params import KernelSettings, Settings
    from .run import run

    opts = dict(source_options)
    if scan_shape is not None:
        opts["scan_shape"] = tuple(scan_shape)
    src = open_input(data, **opts)
    shape = src.scan_shape or (1, src.n_frames or 1)
    rec = Reconstruction(shape, src.detector_shape, Settings(kernel=KernelSettings(3)))
    tap = _PatternTap(src)
    result = run(tap, rec, chunk_size=chunk_size, progress=progress, description="calibrating")
    cy, cx, t = rec.uncentred_com()
    mean = tap.total / tap.n if tap.n else None
    return Measurement(cy, cx, t, mean, rec.n_patterns, result.complete)


class _PatternTap:
    """Wraps a source and sums its frames (skipped and non-finite frames excluded)."""

    def __init__(self, source) -> None:
        self.source = source
        self.total = np.zeros(source.detector_shape)
        self.n = 0

    def __getattr__(self, name):
        return getattr(self.source, name)

    def chunks(self, chunk_size: int = 256):
        for chunk in self.source.chunks(chunk_size):
            frames = getattr(chunk, "frames", None)
            if frames is not None:
                f = np.asarray(frames).reshape(-1, *self.total.shape)
                keep = np.asarray(chunk.positions).ravel() >= 0
                if f.dtype.kind == "f":
                    keep &= np.isfinite(f).all(axis=(1, 2))
                self.total += f[keep].sum(axis=0, dtype=np.float64)
                self.n += int(keep.sum())
            yield chunk

    def close(self) -> None:
        self.source.close()


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
    hint = "; use the mean-COM centre (--center com) or give --center CY CX"
    t = _otsu(np.minimum(p, np.quantile(p, 0.999)))  # a few hot pixels must not set the threshold
    inside = p > t if t is not None else np.zeros(p.shape, bool)
    area = int(inside.sum())
    if area < 5 or area > 0.9 * p.size:
        raise SettingsError("no bright-field disc found in the mean pattern" + hint)
    yy, xx = np.nonzero(inside)
    cy, cx, r0 = float(yy.mean()), float(xx.mean()), math.sqrt(area / math.pi)
    rad = np.hypot(*np.indices(p.shape) - np.array([cy, cx])[:, None, None])
    disc_level = float(np.median(p[rad < 0.6 * r0])) if (rad < 0.6 * r0).any() else float(p[inside].mean())
    ring = (rad > 1.4 * r0) & (rad < 2.0 * r0)
    background = float(np.median(p[ring])) if ring.any() else float(np.median(p[~inside]))
    half = 0.5 * (disc_level + background)
    if not disc_level > background:
        raise SettingsError("no bright-field disc found in the mean pattern" + hint)
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
            raise SettingsError("the bright-field disc edge could not be traced" + hint)
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
        total = pattern.sum()
        if not total > 0:
            raise SettingsError("the reference pattern has no counts; cannot find the centre from it")
        yy, xx = np.indices(pattern.shape)
        return float((pattern * yy).sum() / total), float((pattern * xx).sum() / total)
    m = measure(reference, **source_options)
    if method == "disc":
        if m.mean_pattern is None:
            raise SettingsError("the reference has no frames to fit a disc to; use method='com'")
        return center_from_disc(m.mean_pattern)
    return center_from_mean_com(m.com_y, m.com_x)


# ---------------------------------------------------------------------- descan
@dataclass(frozen=True)
class DescanFit:
    """Polynomial descan model: uncentred COM as a function of the scan position.

    ``terms[k] = (py, px)`` stands for ``iy**py * ix**px`` with ``iy``, ``ix`` in scan
    pixels from the scan centre ``origin_yx``; ``coef_y``/``coef_x`` are in detector
    pixels (per scan pixel to the power of the term's degree).
    """

    order: int
    scan_shape: tuple[int, int]
    terms: tuple[tuple[int, int], ...]
    coef_y: tuple[float, ...]
    coef_x: tuple[float, ...]
    rms_residual_px: float

    @property
    def origin_yx(self) -> tuple[float, float]:
        return ((self.scan_shape[0] - 1) / 2, (self.scan_shape[1] - 1) / 2)

    def evaluate(self) -> tuple[np.ndarray, np.ndarray]:
        """The fitted COM (row, column) maps over the whole scan."""
        iy, ix = _centred_grid(self.scan_shape)
        fy = sum(c * iy**a * ix**b for c, (a, b) in zip(self.coef_y, self.terms, strict=True))
        fx = sum(c * iy**a * ix**b for c, (a, b) in zip(self.coef_x, self.terms, strict=True))
        return np.broadcast_to(fy, self.scan_shape).copy(), np.broadcast_to(fx, self.scan_shape).copy()

    def offsets(self) -> tuple[np.ndarray, np.ndarray]:
        """Fitted maps minus their scan mean: what `Reconstruction.set_descan` takes."""
        fy, fx = self.evaluate()
        return fy - fy.mean(), fx - fx.mean()

    def to_dict(self) -> dict:
        names = [_term_name(a, b) for a, b in self.terms]
        return {"order": self.order, "origin_yx": list(self.origin_yx),
                "com_y_px": dict(zip(names, self.coef_y, strict=True)),
                "com_x_px": dict(zip(names, self.coef_x, strict=True)),
                "rms_residual_px": self.rms_residual_px}


def fit_descan_model(com_y_map: np.ndarray, com_x_map: np.ndarray, order: int = 1,
                     robust: bool = True) -> DescanFit:
    """Least-squares polynomial of degree ``order`` (0–3) to the COM maps; NaN positions ignored.

    With ``robust`` a few iterations of Huber re-weighting (on the length of the residual
    vector) keep strong local fields, e.g. at a grain boundary, from tilting the fit.
    """
    cy, cx = np.asarray(com_y_map, np.float64), np.asarray(com_x_map, np.float64)
    if cy.shape != cx.shape or cy.ndim != 2:
        raise SettingsError(f"descan needs two COM maps of the same 2D shape, got {cy.shape} and {cx.shape}")
    if isinstance(order, bool) or int(order) != order or not 0 <= order <= 3:
        raise SettingsError(f"descan polynomial order must be 0, 1, 2 or 3, got {order!r}")
    order = int(order)
    terms = tuple((d - b, b) for d in range(order + 1) for b in range(d + 1))
    ok = np.isfinite(cy) & np.isfinite(cx)
    if ok.sum() < 2 * len(terms):
        raise SettingsError(f"descan fit of order {order} needs at least {2 * len(terms)} non-empty "
                            f"positions, got {int(ok.sum())}")
    iy, ix = _centred_grid(cy.shape)
    iy, ix = np.broadcast_to(iy, cy.shape)[ok], np.broadcast_to(ix, cy.shape)[ok]
    sy, sx = max(1.0, (cy.shape[0] - 1) / 2), max(1.0, (cy.shape[1] - 1) / 2)
    a = np.stack([(iy / sy) ** p * (ix / sx) ** q for p, q in terms], axis=1)
    b = np.stack([cy[ok], cx[ok]], axis=1)
    w = np.ones(len(b))
    for _ in range(6 if robust else 1):
        sol = np.linalg.lstsq(a * w[:, None], b * w[:, None], rcond=None)[0]
        res = np.hypot(*(b - a @ sol).T)
        s = float(np.median(res)) / 1.1774  # σ per component: a 2D Gaussian's |r| has median 1.1774 σ
        if not robust or s <= 0:
            break
        k = 2.0 * s  # Huber on |r|: ~86 % of Gaussian residuals keep full weight
        w = np.sqrt(np.where(res <= k, 1.0, k / np.maximum(res, 1e-300)))
    scale = np.array([sy ** -p * sx ** -q for p, q in terms])
    rms = float(np.sqrt(np.mean(res ** 2)))
    return DescanFit(order, cy.shape, terms, tuple(float(v) for v in sol[:, 0] * scale),
                     tuple(float(v) for v in sol[:, 1] * scale), rms)


def fit_descan(com_y_map: np.ndarray, com_x_map: np.ndarray, order: int = 1,
               robust: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Descan offsets (row, column) in detector pixels: a fitted polynomial minus its mean.

    Parameters
    ----------
    com_y_map, com_x_map : ndarray
        Uncentred (or centred) COM maps ``(scan_y, scan_x)`` in detector pixels, NaN
        where a position is empty, e.g. from `Reconstruction.uncentred_com`.
    order : int
        0 (nothing but the mean), 1 (a plane, the default), 2 or 3.
    robust : bool
        Huber re-weighting against local strong fields.

    Returns
    -------
    offset_y, offset_x : ndarray
        Zero-mean maps for `Reconstruction.set_descan`; the constant part belongs to the
        centre (the mean COM).

    Examples
    --------
    >>> iy, ix = np.mgrid[0:5, 0:6].astype(float)
    >>> oy, ox = fit_descan(20 + 0.1 * ix, 16 - 0.2 * iy)
    >>> bool(np.allclose(oy, 0.1 * (ix - 2.5)) and np.allclose(ox, -0.2 * (iy - 2)))
    True
    """
    return fit_descan_model(com_y_map, com_x_map, order, robust).offsets()


def descan_from_reference(reference, *, scan_shape=None, order: int | None = None,
                          **source_options) -> tuple[np.ndarray, np.ndarray]:
    """Descan offsets from a vacuum reference scan: its COM maps minus their mean.

    ``reference`` is a 4D array, a file name, a `Source` or a `Measurement` of the same
    scan as the data; ``scan_shape`` (the data's) is checked, and used to open a
    reference that does not carry its own (a 3D stack).  With ``order`` the reference
    maps are smoothed by a polynomial fit (less noise, but only that shape); without it
    empty positions of the reference are filled by a plane fit.
    """
    fallback = source_options.pop("scan_shape", None) or scan_shape
    try:
        m = measure(reference, **source_options)  # the reference's own layout first
    except SettingsError:
        if fallback is None:
            raise
        m = measure(reference, scan_shape=fallback, **source_options)
    if scan_shape is not None and tuple(scan_shape) != m.scan_shape:
        raise SettingsError(f"the descan reference has scan shape {m.scan_shape[0]}×{m.scan_shape[1]}, "
                            f"the data {scan_shape[0]}×{scan_shape[1]}; record the reference with the same scan")
    if order is not None:
        return fit_descan(m.com_y, m.com_x, order)
    ok = np.isfinite(m.com_y) & np.isfinite(m.com_x)
    if not ok.any():
        raise SettingsError("the descan reference has no counts")
    oy, ox = m.com_y - m.com_y[ok].mean(), m.com_x - m.com_x[ok].mean()
    if not ok.all():
        py, px = fit_descan(m.com_y, m.com_x, 1 if ok.sum() >= 6 else 0)
        oy, ox = np.where(ok, oy, py), np.where(ok, ox, px)
    return oy, ox


# ---------------------------------------------------------------------- helpers
def _centred_grid(shape) -> tuple[np.ndarray, np.ndarray]:
    iy = np.arange(shape[0], dtype=np.float64)[:, None] - (shape[0] - 1) / 2
    ix = np.arange(shape[1], dtype=np.float64)[None, :] - (shape[1] - 1) / 2
    return iy, ix


def _term_name(py: int, px: int) -> str:
    parts = [f"iy^{py}" if py > 1 else "iy"] * (py > 0) + [f"ix^{px}" if px > 1 else "ix"] * (px > 0)
    return "*".join(parts) or "1"


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
