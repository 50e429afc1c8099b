"""Scan–detector rotation and flip from the COM field alone (`find_rotation`, `RotationResult`).

The rotation θ and flip are those that make the corrected COM field a gradient field:
its curl is minimised and the 180° ambiguity is resolved by the sign of its divergence
(atomic columns attract the beam, so the deflection has strongly *negative* divergence
at the columns — a negatively skewed distribution — and riCOM shows them bright).  The
convention is that of `ricom.core.params`: the measured detector vector is mirrored in x if
``flip``, then turned by θ from detector +x towards detector +y.

Whether the data can decide at all is a permutation test: the same statistics are
computed on copies of the field whose positions are shuffled (same values, no spatial
structure) and each decision must stand ``Z_MIN`` null standard deviations clear of
them.  Vacuum, pure noise, a field with no preferred handedness, or one without atomic
contrast give ``determined=False`` with a one-line reason rather than an angle.

`ricom.calibration.calibrate` applies the result to an engine and re-exports these names.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from ricom.calibration.descan import fit_descan_model
from ricom.core.errors import Message, Param, SettingsError
from ricom.core.geometry import Matrix2

Z_MIN = 5.0
"""Each decision (curl minimum, flip, sign) must exceed this many null standard deviations;
for the curl minimum (Rayleigh-distributed under the null) that is a false-alarm
probability of exp(−Z_MIN²/2) ≈ 4·10⁻⁶.  ``confidence = z/(z + Z_MIN)`` of the weakest
decision, so 0.5 is the threshold."""

GIVE_ROTATION = ("; give ", Param("rotation_deg", form=True), " [", Param("flip", True), "]")
"""Advice of a `RotationResult.reason` when the data cannot decide (message parts)."""

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
    reason : Message
        Why not determined and what to give instead (empty if determined); raise it as a
        `SettingsError`, or ``str(reason)``.
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
    reason: Message
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
        Fix the flip instead of finding it.  If the data cannot decide with it but would
        with the other flip, ``reason`` says that the data look (un)flipped.
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
    >>> dx, dy = Matrix2.rotation(-30).apply(gx, gy)
    >>> r = find_rotation(dx, dy)
    >>> round(r.rotation_deg, 1), r.flip, r.determined
    (30.0, False, True)
    """
    fx, fy, n_ok, why = _prepared(com_x, com_y, detrend, min_rms)
    if why is not None:
        return _undetermined(why, n_ok)
    flips = (False, True) if flip is None else (bool(flip),)
    sigmas = SMOOTHING_PX if smoothing_px is None else (float(smoothing_px),)
    cands = _candidates(fx, fy, flips, sigmas, np.random.default_rng(seed), max(4, int(n_shuffles)))
    if not cands:
        return _undetermined("cannot determine the rotation: too few positions remain after "
                             "differentiation; scan at least 8×8 positions", n_ok)
    dec, est, theta = _decide(cands)
    fl, best = dec["flip"], est["st"]
    c_best = best["c"][fl]
    error_deg = math.degrees(est["se"])
    z_rot, z_flip, z_sign = dec["z"]
    z = min(dec["z"])
    confidence = max(z, 0.0) / (max(z, 0.0) + Z_MIN)
    reason = _reason(z_rot, z_flip, z_sign)
    if reason and flip is not None and _fits_with(fx, fy, not flip, sigmas, seed, n_shuffles):
        reason = _wrong_flip(bool(flip))
    determined = not reason
    profile = np.full((2, 360), np.nan)
    deg = np.radians(np.arange(360.0))
    for f, (a, b, d) in best["abd"].items():
        profile[int(f)] = ((a + b) / 2 + (a - b) / 2 * np.cos(2 * deg) + d * np.sin(2 * deg)) / (a + b)
    return RotationResult(theta if determined else math.nan, fl if determined else None, float(confidence),
                          determined, reason, float(theta), bool(fl), float(error_deg), float((1 - c_best) / 2),
                          float(z_rot), float(z_flip), float(z_sign), float(best["sigma"]), n_ok, profile)


# ---------------------------------------------------------------------- internals
def _prepared(com_x, com_y, detrend, min_rms: float) -> tuple[np.ndarray, np.ndarray, int, Message | str | None]:
    """The field to analyse: NaN where empty, detrended, the few largest vectors clipped.

    Returns ``(fx, fy, n_ok, why)`` with ``why`` the reason the rotation cannot be found
    from it (too few positions, uniform field), or None.
    """
    fx, fy = np.array(com_x, np.float64), np.array(com_y, np.float64)
    if fx.shape != fy.shape or fx.ndim != 2:
        raise SettingsError(f"com_x and com_y must be 2D maps of the same shape, got {fx.shape} and {fy.shape}")
    bad = ~(np.isfinite(fx) & np.isfinite(fy))
    fx[bad], fy[bad] = np.nan, np.nan
    n_ok = int((~bad).sum())
    if n_ok < _MIN_POSITIONS or min(fx.shape) < 3:
        return fx, fy, n_ok, (f"cannot determine the rotation: a {fx.shape[0]}×{fx.shape[1]} scan with {n_ok} "
                              f"non-empty positions is too small; scan at least 8×8 positions")
    scale = float(np.nanmax(np.abs(np.concatenate([fx[~bad], fy[~bad]]))))
    if detrend is not None and detrend >= 0 and n_ok >= 4 * (detrend + 1) ** 2:
        py, px = fit_descan_model(fy, fx, detrend, robust=False).evaluate()
        fx, fy = fx - px, fy - py
    mag = np.hypot(fx, fy)
    if not np.sqrt(np.nanmean(mag**2)) > max(1e-9 * scale, min_rms):
        return fx, fy, n_ok, Message("cannot determine the rotation: the COM field is uniform (vacuum or no "
                                     "specimen)", *GIVE_ROTATION)
    limit = OUTLIER_CLIP * float(np.nanquantile(mag, 0.99))  # a few hot positions must not decide
    shrink = np.minimum(1.0, limit / np.maximum(mag, 1e-300))
    return fx * shrink, fy * shrink, n_ok, None


def _candidates(fx, fy, flips, sigmas, rng, n_shuffles: int) -> list[dict]:
    """Per smoothing: the statistics, the better flip, the z-scores of the three decisions
    (rotation, flip, θ vs θ+180°) against shuffled copies, and θ's predicted error."""
    cands = []
    for s in sigmas:
        st = _stats(fx, fy, s, flips)
        if st is None:
            continue
        fl = max(st["c"], key=st["c"].get)
        sig_c, sig_d, sig_g = _null(fx, fy, st, flips, fl, rng, n_shuffles)
        c = st["c"][fl]
        r = (1 - c) / (1 + c)  # λmin/λmax of the curl quadratic form
        z = (c / sig_c, (c - st["c"][not fl]) / sig_d if len(flips) == 2 else math.inf,
             abs(st["skew"][fl]) / sig_g)
        cands.append({"st": st, "flip": fl, "z": z, "se": sig_c * math.sqrt(r) / max(1 - r, 1e-12)})
    return cands


def _decide(cands: list[dict]) -> tuple[dict, dict, float]:
    """(deciding candidate, estimating candidate, θ in [0, 360)).

    Flip and θ vs θ+180° are decided at the smoothing where the weakest decision is
    clearest; θ is estimated at the one with the smallest predicted error (same flip).
    """
    dec = max(cands, key=lambda k: min(k["z"]))
    fl = dec["flip"]
    est = min((k for k in cands if k["flip"] == fl), key=lambda k: k["se"])
    theta_dec = dec["st"]["theta"][fl] + (180.0 if dec["st"]["skew"][fl] > 0 else 0.0)
    theta = est["st"]["theta"][fl]
    if abs((theta - theta_dec + 180) % 360 - 180) > 90:
        theta += 180.0
    return dec, est, theta % 360.0


def _reason(z_rot: float, z_flip: float, z_sign: float) -> Message:
    """Why the result is undetermined (empty when all three decisions are clear)."""
    if z_rot < Z_MIN:
        return Message("cannot determine the rotation: the COM field shows no curl-free structure above the "
                       "noise (vacuum or noise only?)", *GIVE_ROTATION)
    if z_flip < Z_MIN:
        return Message("cannot determine the flip: the field is too noisy or too one-dimensional to tell "
                       "whether the detector is mirrored", *GIVE_ROTATION)
    if z_sign < Z_MIN:
        return Message("cannot tell θ from θ+180°: the divergence shows no clear sign (no atomic columns?)",
                       *GIVE_ROTATION)
    return Message()


def _fits_with(fx, fy, flip: bool, sigmas, seed: int, n_shuffles: int) -> bool:
    """Whether the field gives a clear rotation with ``flip`` fixed."""
    cands = _candidates(fx, fy, (flip,), sigmas, np.random.default_rng(seed), max(4, int(n_shuffles)))
    return bool(cands) and not _reason(*_decide(cands)[0]["z"])


def _wrong_flip(flip: bool) -> Message:
    """The reason when the fixed flip is the wrong one (the other one fits)."""
    looks = "flipped (detector x mirrored)" if not flip else "not flipped"
    return Message(f"cannot determine the rotation with the flip fixed to {'yes' if flip else 'no'}: the data look "
                   f"{looks}; try ", Param("flip", not flip), " (or let the flip be found)")


def _stats(fx: np.ndarray, fy: np.ndarray, sigma: float, flips) -> dict | None:
    """Curl/divergence quadratic forms, best θ (mod 180°) and divergence skew per flip."""
    if sigma > 0:
        fx, fy = _smooth_valid(fx, sigma), _smooth_valid(fy, sigma)
    if min(fx.shape) < 3:
        return None
    out = {"sigma": sigma, "c": {}, "theta": {}, "skew": {}, "abd": {}}
    for f in flips:
        ux, uy = Matrix2.flip_x().apply(fx, fy) if f else (fx, fy)
        cu = (uy[1:-1, 2:] - uy[1:-1, :-2] - ux[2:, 1:-1] + ux[:-2, 1:-1]) / 2
        dv = (ux[1:-1, 2:] - ux[1:-1, :-2] + uy[2:, 1:-1] - uy[:-2, 1:-1]) / 2
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
        # divergence of the field turned by θ, from the unturned (div, curl): a projection in
        # (div, curl) space with θ in radians from the fit, not a detector → scan map
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


def _undetermined(reason: str | Message, n: int) -> RotationResult:
    nan = math.nan
    return RotationResult(nan, None, 0.0, False, Message(reason), nan, False, nan, nan, 0.0, 0.0, 0.0, 0.0, n,
                          np.full((2, 360), np.nan))
