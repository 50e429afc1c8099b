"""Descan: how the pattern centre moves over the scan, and its correction.

`fit_descan` / `fit_descan_model` fit a least-squares polynomial over the scan to the
COM maps; `descan_from_reference` takes a vacuum scan's COM map.  All results are in
detector pixels (row, column), as `Reconstruction.set_descan` takes them: the centre
used at scan position ``p`` is ``centre + (offset_y[p], offset_x[p])``.

Warning: fitting the descan on the specimen itself also removes any real field of the
same shape (a uniform tilt, a slowly varying charge or magnetic field).  Prefer a
vacuum reference where long-range fields matter.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ricom.calibration.centre import measure
from ricom.core.errors import SettingsError


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

