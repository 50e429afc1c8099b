"""Automatic calibration: scan–detector rotation, flip, pattern centre and descan.

The rotation θ and flip are those that make the corrected COM field a gradient field:
its curl is minimised and the 180° ambiguity is resolved by the sign of its divergence
(atomic columns attract the beam, so the deflection has strongly *negative* divergence
at the columns — a negatively skewed distribution — and riCOM shows them bright).  The
convention is that of `ricom.params`: the measured detector vector is mirrored in x if
``flip``, then turned by θ from detector +x towards detector +y.

Whether the data can decide at all is a permutation test: the same statistics are
computed on copies of the field whose positions are shuffled (same values, no spatial
structure) and each decision must stand ``Z_MIN`` null standard deviations clear of
them.  Vacuum, pure noise, a field with no preferred handedness, or one without atomic
contrast give ``determined=False`` with a one-line reason rather than an angle.

Centre and descan live in `ricom.centre` and are re-exported here; `calibrate` does
everything from one pass over the data and `apply_auto_rotation` works on an engine's
stored moments without re-reading data.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np

from .centre import (
    DescanFit,
    DiscFit,
    Measurement,
    center_from_disc,
    center_from_mean_com,
    center_from_reference,
    descan_from_reference,
    fit_descan,
    fit_descan_model,
    fit_disc,
    measure,
)
from .errors import SettingsError
from .params import DetectorGeometry

__all__ = ["CalibrationReport", "DescanFit", "DiscFit", "Measurement", "RotationResult", "apply_auto_rotation",
           "apply_descan", "calibrate", "center_from_disc", "center_from_mean_com", "center_from_reference",
           "descan_from_reference", "find_rotation", "fit_descan", "fit_descan_model", "fit_disc", "measure"]

Z_MIN = 5.0
"""Each decision (curl minimum, flip, sign) must exceed this many null standard deviations;
for the curl minimum (Rayleigh-distributed under the null) that is a false-alarm
probability of exp(−Z_MIN²/2) ≈ 4·10⁻⁶.  ``confidence = z/(z + Z_MIN)`` of the weakest
decision, so 0.5 is the threshold."""

SMOOTHING_PX = (0.0, 0.5, 0.7, 1.0, 1.5, 2.0)
"""Gaussian widths (scan pixels) tried before taking derivatives; the one giving the
clearest curl minimum is used.  Any scalar smoothing keeps a gradient field curl-free."""

SIGN_QUANTILE = 0.02
"""Quantile skewness (q₀.₉₈ + q₀.₀₂ − 2·median)/(q₀.₉₈ − q₀.₀₂) of the divergence decides θ vs θ+180°."""

UNIFORM_PX = 1e-4
"""A COM field varying by less than this (detector pixels rms, after removing a plane) is uniform."""

OUTLIER_CLIP = 4.0
"""COM vectors longer than this multiple of the 99th percentile of |COM| are shortened to it."""

_MIN_POSITIONS = 25


@dataclass(frozen=True)
class RotationResult:
    """Outcome of `find_rotation`.

    Attributes
    ----------
    rotation_deg : float
        θ in [0, 360) for ``DetectorGeometry(rotation_deg=θ, flip=flip)``; NaN if not determined.
    flip : bool or None
        Mirror detector x before rotating; None if not determined.
    confidence : float
        ``z/(z + Z_MIN)`` for the weakest of the three decisions; ≥ 0.5 means determined.
    determined : bool
        False for vacuum, noise, or fields that cannot decide; ``reason`` says why.
    best_guess_deg, best_guess_flip
        The estimate even when it is not significant (for display only).
    error_deg : float
        Predicted standard error of θ from the residual curl and the null spread
        (statistical only; the smoothing is chosen to make it smallest).
    curl_fraction : float
        Share of the derivative power left in the curl at the optimum (0 = pure gradient).
    z_rotation, z_flip, z_sign : float
        Significance of the curl minimum, the flip choice and the 180° choice.
    curl_profile : ndarray
        ``(2, 360)``: curl fraction vs θ = 0…359° without (row 0) and with (row 1) flip.
    """

    rotation_deg: float
    flip: bool | None
    confidence: float
    determined: bool
    reason: str
    best_guess_deg: float
    best_guess_flip: bool
    error_deg: float
    curl_fraction: float
    z_rotation: float
    z_flip: float
    z_sign: float
    smoothing_px: float
    n_positions: int
    curl_profile: np.ndarray = field(repr=False)

    def as_dict(self) -> dict:
        """JSON-friendly summary (no profile); ``rotation_deg``/``flip`` are None if undetermined."""
        d = {"rotation_deg": self.rotation_deg if self.determined else None,
             "flip": self.flip, "confidence": self.confidence, "determined": self.determined,
             "best_guess_deg": self.best_guess_deg, "best_guess_flip": self.best_guess_flip,
             "error_deg": self.error_deg, "curl_fraction": self.curl_fraction,
             "z_rotation": self.z_rotation, "z_flip": self.z_flip, "z_sign": self.z_sign,
             "smoothing_px": self.smoothing_px, "n_positions": self.n_positions}
        if not self.determined:
            d["reason"] = self.reason
        return {k: (_finite_or_none(v) if isinstance(v, float) else v) for k, v in d.items()}


def find_rotation(com_x: np.ndarray, com_y: np.ndarray, *, flip: bool | None = None, detrend: int = 1,
                  smoothing_px: float | None = None, n_shuffles: int = 24, seed: int = 0,
                  min_rms: float = 0.0) -> RotationResult:
    """Rotation θ and flip that turn a detector-frame COM field into a gradient field.

    Parameters
    ----------
    com_x, com_y : ndarray
        ``(scan_y, scan_x)`` COM measured on the detector (rotation 0, no flip), in any
        unit, NaN where a position is empty (partial scans are fine).
    flip : bool, optional
        Fix the flip instead of finding it.
    detrend : int
        Polynomial order removed from each component first (1: a plane, i.e. uniform
        descan and tilt, which would otherwise give a constant curl and divergence).
    smoothing_px : float, optional
        Gaussian σ in scan pixels before differentiating; default: best of `SMOOTHING_PX`.
    n_shuffles : int
        Shuffled copies for the null distribution.
    min_rms : float
        A detrended field with an rms below this (in the unit of the COM) counts as
        uniform; `calibrate` and `apply_auto_rotation` use `UNIFORM_PX` detector pixels.

    Examples
    --------
    A field rotated by −30° on the detector needs θ = +30° to be undone:

    >>> y, x = np.mgrid[0:32, 0:32] * 0.6
    >>> v = np.exp(2 * np.cos(x) + 2 * np.cos(y))    # sharp columns on a square grid
    >>> gx, gy = -2 * v * np.sin(x), -2 * v * np.sin(y)   # COM = +∇V
    >>> t = np.radians(-30)
    >>> dx, dy = np.cos(t) * gx - np.sin(t) * gy, np.sin(t) * gx + np.cos(t) * gy
    >>> r = find_rotation(dx, dy)
    >>> round(r.rotation_deg, 1), r.flip, r.determined
    (30.0, False, True)
    """
    fx, fy = np.array(com_x, np.float64), np.array(com_y, np.float64)
    if fx.shape != fy.shape or fx.ndim != 2:
        raise SettingsError(f"com_x and com_y must be 2D maps of the same shape, got {fx.shape} and {fy.shape}")
    bad = ~(np.isfinite(fx) & np.isfinite(fy))
    fx[bad], fy[bad] = np.nan, np.nan
    n_ok = int((~bad).sum())
    if n_ok < _MIN_POSITIONS or min(fx.shape) < 3:
        return _undetermined(f"cannot determine the rotation: a {fx.shape[0]}×{fx.shape[1]} scan with {n_ok} "
                             f"non-empty positions is too small; scan at least 8×8 positions", n_ok)
    scale = float(np.nanmax(np.abs(np.concatenate([fx[~bad], fy[~bad]]))))
    if detrend is not None and detrend >= 0 and n_ok >= 4 * (detrend + 1) ** 2:
        py, px = fit_descan_model(fy, fx, detrend, robust=False).evaluate()
        fx, fy = fx - px, fy - py
    mag = np.hypot(fx, fy)
    if not np.sqrt(np.nanmean(mag**2)) > max(1e-9 * scale, min_rms):
        return _undetermined("cannot determine the rotation: the COM field is uniform (vacuum or no "
                             "specimen); give --rotation DEG [--flip]", n_ok)
    limit = OUTLIER_CLIP * float(np.nanquantile(mag, 0.99))  # a few hot positions must not decide
    shrink = np.minimum(1.0, limit / np.maximum(mag, 1e-300))
    fx, fy = fx * shrink, fy * shrink
    flips = (False, True) if flip is None else (bool(flip),)
    sigmas = SMOOTHING_PX if smoothing_px is None else (float(smoothing_px),)
    rng = np.random.default_rng(seed)
    cands = []
    for s in sigmas:
        st = _stats(fx, fy, s, flips)
        if st is None:
            continue
        fl = max(st["c"], key=st["c"].get)
        sig_c, sig_d, sig_g = _null(fx, fy, st, flips, fl, rng, max(4, int(n_shuffles)))
        c = st["c"][fl]
        r = (1 - c) / (1 + c)  # λmin/λmax of the curl quadratic form
        z = (c / sig_c, (c - st["c"][not fl]) / sig_d if len(flips) == 2 else math.inf,
             abs(st["skew"][fl]) / sig_g)
        cands.append({"st": st, "flip": fl, "z": z, "se": sig_c * math.sqrt(r) / max(1 - r, 1e-12)})
    if not cands:
        return _undetermined("cannot determine the rotation: too few positions remain after "
                             "differentiation; scan at least 8×8 positions", n_ok)
    # decide (flip, θ vs θ+180°) at the smoothing where the weakest decision is clearest;
    # estimate θ at the one with the smallest predicted error (same flip)
    dec = max(cands, key=lambda k: min(k["z"]))
    fl = dec["flip"]
    est = min((k for k in cands if k["flip"] == fl), key=lambda k: k["se"])
    theta_dec = dec["st"]["theta"][fl] + (180.0 if dec["st"]["skew"][fl] > 0 else 0.0)
    theta = est["st"]["theta"][fl]
    if abs((theta - theta_dec + 180) % 360 - 180) > 90:
        theta += 180.0
    theta %= 360.0
    best = est["st"]
    c_best = best["c"][fl]
    error_deg = math.degrees(est["se"])
    z_rot, z_flip, z_sign = dec["z"]
    z = min(dec["z"])
    confidence = max(z, 0.0) / (max(z, 0.0) + Z_MIN)
    reason = ""
    if z_rot < Z_MIN:
        reason = ("cannot determine the rotation: the COM field shows no curl-free structure above the "
                  "noise (vacuum or noise only?); give --rotation DEG [--flip]")
    elif z_flip < Z_MIN:
        reason = ("cannot determine the flip: the field is too noisy or too one-dimensional to tell whether "
                  "the detector is mirrored; give --rotation DEG [--flip]")
    elif z_sign < Z_MIN:
        reason = ("cannot tell θ from θ+180°: the divergence shows no clear sign (no atomic columns?); "
                  "give --rotation DEG [--flip]")
    determined = not reason
    profile = np.full((2, 360), np.nan)
    deg = np.radians(np.arange(360.0))
    for f, (a, b, d) in best["abd"].items():
        profile[int(f)] = ((a + b) / 2 + (a - b) / 2 * np.cos(2 * deg) + d * np.sin(2 * deg)) / (a + b)
    return RotationResult(theta if determined else math.nan, fl if determined else None, float(confidence),
                          determined, reason, float(theta), bool(fl), float(error_deg), float((1 - c_best) / 2),
                          float(z_rot), float(z_flip), float(z_sign), float(best["sigma"]), n_ok, profile)


def apply_auto_rotation(rec, *, flip: bool | None = None, require: bool = True, **options) -> dict:
    """Find rotation and flip from an engine's stored moments and apply them (rebuilds).

    Works on what the engine has seen so far (a partial scan is fine) with its current
    centre and descan; the current rotation and flip are undone first, so it can be
    called again at any time.  ``options`` go to `find_rotation`.

    Returns
    -------
    dict
        ``rotation_deg``, ``flip``, ``confidence``, ``determined``, ``curl_fraction``,
        ``z_rotation``, ``z_flip``, ``z_sign`` (all scalars, HDF5-attribute friendly).

    Raises
    ------
    SettingsError
        If the data cannot determine them and ``require`` (the default); with
        ``require=False`` the settings are left unchanged and ``determined`` is False.
    """
    snap = rec.snapshot()
    settings = snap.settings
    geo = settings.geometry
    m00, m01, m10, m11 = geo.matrix()
    det = m00 * m11 - m01 * m10
    scale = settings.calibration.com_scale
    empty = ~(snap.counts > 0)
    sx, sy = snap.com_x / scale, snap.com_y / scale
    dx, dy = (m11 * sx - m01 * sy) / det, (-m10 * sx + m00 * sy) / det
    dx[empty], dy[empty] = np.nan, np.nan
    res = find_rotation(dx, dy, flip=flip, **{"min_rms": UNIFORM_PX, **options})
    out = {k: v for k, v in res.as_dict().items() if v is not None and k not in ("best_guess_deg", "best_guess_flip")}
    if not res.determined:
        if require:
            raise SettingsError(res.reason)
        return out
    rec.update_settings(settings.with_(geometry=replace(geo, rotation_deg=res.rotation_deg, flip=res.flip)))
    return out


def apply_descan(rec, mode: str = "plane", reference=None, order: int | None = None, **source_options) -> dict:
    """Set an engine's descan: ``"plane"`` (or ``"quadratic"``) fitted to its COM, or ``"reference"``.

    ``"plane"``/``"quadratic"`` fit the stored per-position COM (call it after the data
    are in; it removes real long-range fields of the same shape too).  ``"reference"``
    uses a vacuum scan's COM map (``reference``: file, array or `Measurement`) and can
    be set before the data arrive.  ``"none"`` clears it.  Returns HDF5-friendly parameters.
    """
    if mode == "none":
        rec.set_descan(None)
        return {"descan": "none"}
    if mode == "reference":
        if reference is None:
            raise SettingsError("descan 'reference' needs a vacuum reference scan: --descan reference FILE")
        opts = {k: v for k, v in source_options.items() if k != "scan_shape"}  # the engine's scan is checked
        rec.set_descan(*descan_from_reference(reference, scan_shape=rec.scan_shape, order=order, **opts))
        return {"descan": "reference"}
    orders = {"plane": 1, "quadratic": 2}
    if mode not in orders:
        raise SettingsError(f"descan must be 'none', 'plane', 'quadratic' or 'reference', got {mode!r}")
    cy, cx, _ = rec.uncentred_com()
    fit = fit_descan_model(cy, cx, orders[mode] if order is None else order)
    rec.set_descan(*fit.offsets())
    d = fit.to_dict()
    return {"descan": mode, "descan_terms": list(d["com_y_px"]), "descan_com_y_px": list(fit.coef_y),
            "descan_com_x_px": list(fit.coef_x)}


@dataclass
class CalibrationReport:
    """Everything `calibrate` found; `to_dict` for JSON, `summary` for people, `apply` for an engine."""

    rotation: RotationResult
    center_yx: tuple[float, float]
    center_method: str
    center_com_yx: tuple[float, float]
    disc: DiscFit | None
    descan_method: str
    descan: DescanFit | None
    descan_offsets: tuple[np.ndarray, np.ndarray] | None = field(repr=False)
    scan_shape: tuple[int, int]
    n_patterns: int
    complete: bool = True

    def geometry(self) -> DetectorGeometry:
        """`DetectorGeometry` with the found centre, rotation and flip (raises if undetermined)."""
        if not self.rotation.determined:
            raise SettingsError(self.rotation.reason)
        return DetectorGeometry(self.center_yx, self.rotation.rotation_deg, bool(self.rotation.flip))

    def apply(self, rec) -> None:
        """Set centre, rotation, flip and descan on a `Reconstruction` of the same scan."""
        rec.update_settings(rec.settings.with_(geometry=self.geometry()))
        rec.set_descan(*(self.descan_offsets or (None,)))

    def to_dict(self) -> dict:
        return {"rotation": self.rotation.as_dict(), "center_yx": list(self.center_yx),
                "center_method": self.center_method, "center_com_yx": list(self.center_com_yx),
                "disc": None if self.disc is None else {"center_yx": list(self.disc.center_yx),
                                                        "radius_px": self.disc.radius_px,
                                                        "residual_px": self.disc.residual_px},
                "descan": {"method": self.descan_method,
                           **({} if self.descan is None else self.descan.to_dict())},
                "scan_shape": list(self.scan_shape), "n_patterns": self.n_patterns, "complete": self.complete,
                "units": "detector pixels (row, column); angles in degrees"}

    def summary(self) -> str:
        r = self.rotation
        if r.determined:
            lines = [f"rotation: {r.rotation_deg:.2f}°  flip: {'yes' if r.flip else 'no'}  "
                     f"confidence: {r.confidence:.2f}  (residual curl {100 * r.curl_fraction:.1f} %)"]
        else:
            lines = [f"rotation: {r.reason}",
                     f"  best guess, not significant: {r.best_guess_deg:.1f}° flip "
                     f"{'yes' if r.best_guess_flip else 'no'}  confidence: {r.confidence:.2f}"]
        lines.append(f"centre: {self.center_yx[0]:.2f} {self.center_yx[1]:.2f} px (row col, {self.center_method})")
        if self.disc is not None:
            lines.append(f"  disc fit: {self.disc.center_yx[0]:.2f} {self.disc.center_yx[1]:.2f} px, "
                         f"radius {self.disc.radius_px:.2f} px; mean COM: {self.center_com_yx[0]:.2f} "
                         f"{self.center_com_yx[1]:.2f} px")
        if self.descan is not None:
            names = list(self.descan.to_dict()["com_y_px"])
            for comp, coef in (("COM_y", self.descan.coef_y), ("COM_x", self.descan.coef_x)):
                terms = " ".join(f"{v:+.4g}" + ("" if n == "1" else f"·{n}") for n, v in zip(names, coef, strict=True))
                lines.append(f"descan ({self.descan_method}): {comp} = {terms} px")
            lines.append(f"  iy, ix in scan pixels from the scan centre; rms residual "
                         f"{self.descan.rms_residual_px:.3g} px")
        else:
            lines.append(f"descan: {self.descan_method}")
        if r.determined:
            opts = f"--rotation {r.rotation_deg:.2f}" + (" --flip" if r.flip else "")
            opts += f" --center {self.center_yx[0]:.2f} {self.center_yx[1]:.2f}"
            if self.descan_method in ("plane", "reference"):
                opts += " --descan " + self.descan_method + (" FILE" if self.descan_method == "reference" else "")
            lines.append(f"use: ricom reconstruct INPUT {opts}")
        return "\n".join(lines)


def calibrate(data, *, center="com", descan: str | int = "plane", reference=None, flip: bool | None = None,
              scan_shape=None, chunk_size: int = 512, progress=False, **source_options) -> CalibrationReport:
    """Rotation, flip, centre and descan from one pass over the data.

    Parameters
    ----------
    data : ndarray, str, Source or Measurement
        The scan (a 4D array, a file name, ``"demo"`` …).
    center : "com", "disc", "reference" or (cy, cx)
        Mean COM (what ``--center auto`` uses), bright-field disc fit of the mean
        pattern, the reference's mean COM, or given.
    descan : "plane", "quadratic", "none", "reference" or int
        Polynomial fitted to the data's COM (order 1, 2 or the int), none, or the
        reference's COM map.  Fitting on the specimen also removes real fields of that shape.
    reference : ndarray, str or Measurement, optional
        Vacuum reference scan for ``center="reference"`` / ``descan="reference"``.
    flip : bool, optional
        Fix the flip instead of finding it.

    Examples
    --------
    >>> from ricom.simulate import simulate, SimulationParams
    >>> sim = simulate(SimulationParams(scan_shape=(24, 24), detector_shape=(32, 32), rotation_deg=40))
    >>> rep = calibrate(sim.data)
    >>> abs(rep.rotation.rotation_deg - 40) < 1, rep.rotation.flip
    (True, False)
    """
    m = measure(data, scan_shape=scan_shape, chunk_size=chunk_size, progress=progress, **source_options)
    ref = None
    needs_ref = (isinstance(center, str) and center == "reference") or descan == "reference"
    if needs_ref:
        if reference is None:
            raise SettingsError("centre or descan 'reference' needs a vacuum reference scan (--reference FILE)")
        ref = measure(reference, chunk_size=chunk_size, **source_options)
    center_com = center_from_mean_com(m.com_y, m.com_x)
    disc = None
    if m.mean_pattern is not None:
        try:
            disc = fit_disc(m.mean_pattern)
        except SettingsError:
            if center == "disc":
                raise
    if isinstance(center, str):
        methods = {"com": ("mean COM", lambda: center_com), "disc": ("disc fit", lambda: disc.center_yx),
                   "reference": ("reference mean COM", lambda: center_from_mean_com(ref.com_y, ref.com_x))}
        if center not in methods:
            raise SettingsError(f"centre must be 'com', 'disc', 'reference' or (cy, cx), got {center!r}")
        if center == "disc" and disc is None:
            raise SettingsError("the input has no frames to fit a disc to; use the mean-COM centre")
        center_method, centre = methods[center][0], methods[center][1]()
    else:
        center_method, centre = "given", (float(center[0]), float(center[1]))
    fit, offsets = None, None
    orders = {"none": None, "plane": 1, "quadratic": 2}
    if descan == "reference":
        offsets = descan_from_reference(ref, scan_shape=m.scan_shape)
    elif isinstance(descan, str) and descan in orders:
        if orders[descan] is not None:
            fit = fit_descan_model(m.com_y, m.com_x, orders[descan])
            offsets = fit.offsets()
    elif not isinstance(descan, str):
        fit = fit_descan_model(m.com_y, m.com_x, int(descan))
        offsets, descan = fit.offsets(), f"polynomial order {int(descan)}"
    else:
        raise SettingsError(f"descan must be 'plane', 'quadratic', 'none' or 'reference', got {descan!r}")
    oy, ox = offsets if offsets is not None else (0.0, 0.0)
    rot = find_rotation(m.com_x - centre[1] - ox, m.com_y - centre[0] - oy, flip=flip, min_rms=UNIFORM_PX)
    return CalibrationReport(rot, centre, center_method, center_com, disc, str(descan), fit, offsets,
                             m.scan_shape, m.n_patterns, m.complete)


# ---------------------------------------------------------------------- internals
def _stats(fx: np.ndarray, fy: np.ndarray, sigma: float, flips) -> dict | None:
    """Curl/divergence quadratic forms, best θ (mod 180°) and divergence skew per flip."""
    if sigma > 0:
        fx, fy = _smooth_valid(fx, sigma), _smooth_valid(fy, sigma)
    if min(fx.shape) < 3:
        return None
    out = {"sigma": sigma, "c": {}, "theta": {}, "skew": {}, "abd": {}}
    for f in flips:
        ux = -fx if f else fx
        cu = (fy[1:-1, 2:] - fy[1:-1, :-2] - ux[2:, 1:-1] + ux[:-2, 1:-1]) / 2
        dv = (ux[1:-1, 2:] - ux[1:-1, :-2] + fy[2:, 1:-1] - fy[:-2, 1:-1]) / 2
        ok = np.isfinite(cu) & np.isfinite(dv)
        if ok.sum() < _MIN_POSITIONS:
            return None
        cu, dv = cu[ok] - cu[ok].mean(), dv[ok] - dv[ok].mean()
        a, b, d = float(cu @ cu), float(dv @ dv), float(cu @ dv)
        m = (a + b) / 2
        if not m > 0:
            return None
        r = math.hypot((a - b) / 2, d)
        theta = ((math.atan2(d, (a - b) / 2) + math.pi) / 2) % math.pi
        div = math.cos(theta) * dv - math.sin(theta) * cu
        q = np.quantile(div, [SIGN_QUANTILE, 0.5, 1 - SIGN_QUANTILE])
        out["c"][f] = r / m
        out["theta"][f] = math.degrees(theta) % 180.0
        out["skew"][f] = float((q[2] + q[0] - 2 * q[1]) / (q[2] - q[0])) if q[2] > q[0] else 0.0
        out["abd"][f] = (a, b, d)
        out["n"] = int(ok.sum())
    return out


_NULL_MAX_POSITIONS = 128 * 128


def _null(fx, fy, st: dict, flips, fl: bool, rng, k: int) -> tuple[float, float, float]:
    """Null spreads of (curl contrast, flip difference, divergence skew) from shuffled copies.

    Large scans are represented by a random 128×128 sample of their vectors; the spreads
    are scaled by √(n_sample/n_data) since each statistic averages over the positions.
    """
    ok = np.flatnonzero(np.isfinite(fx))
    vx, vy = fx.flat[ok], fy.flat[ok]
    small = ok.size <= _NULL_MAX_POSITIONS
    cs, ds, gs, ns = [], [], [], []
    for _ in range(k):
        if small:
            perm = rng.permutation(ok.size)
            sx_, sy_ = np.full(fx.shape, np.nan), np.full(fx.shape, np.nan)
            sx_.flat[ok], sy_.flat[ok] = vx[perm], vy[perm]
        else:
            pick = rng.choice(ok.size, _NULL_MAX_POSITIONS, replace=False)
            sx_, sy_ = vx[pick].reshape(128, 128), vy[pick].reshape(128, 128)
        s = _stats(sx_, sy_, st["sigma"], flips)
        if s is None:
            continue
        cs.extend(s["c"].values())
        gs.append(s["skew"][fl])
        ns.append(s["n"])
        if len(flips) == 2:
            ds.append(s["c"][False] - s["c"][True])
    f = math.sqrt(np.mean(ns) / st["n"]) if ns else 1.0
    return f * _rms(cs) / math.sqrt(2), f * _rms(ds), f * _rms(gs)


def _smooth_valid(a: np.ndarray, sigma: float) -> np.ndarray:
    """Separable Gaussian (truncated at 2σ), only where the kernel fits; NaN spreads."""
    r = max(1, math.ceil(2 * sigma))
    k = np.exp(-np.arange(-r, r + 1) ** 2 / (2 * sigma * sigma))
    k /= k.sum()
    if min(a.shape) <= 2 * r + 2:
        return np.empty((0, 0))
    out = sum(w * a[:, i:a.shape[1] - 2 * r + i] for i, w in enumerate(k))
    return sum(w * out[i:a.shape[0] - 2 * r + i] for i, w in enumerate(k))


def _rms(values) -> float:
    v = float(np.sqrt(np.mean(np.square(values)))) if len(values) else 0.0
    return v if v > 0 else 1e-300


def _finite_or_none(v: float):
    return v if math.isfinite(v) else None


def _undetermined(reason: str, n: int) -> RotationResult:
    nan = math.nan
    return RotationResult(nan, None, 0.0, False, reason, nan, False, nan, nan, 0.0, 0.0, 0.0, 0.0, n,
                          np.full((2, 360), np.nan))
