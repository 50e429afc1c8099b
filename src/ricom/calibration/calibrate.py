"""Automatic calibration: one pass over the data, and applying calibrations to an engine.

`calibrate` finds rotation, flip, pattern centre and descan from one pass over the data
and returns a `CalibrationReport` (JSON, a summary for people, `CalibrationReport.apply`
for an engine).  `apply_auto_rotation` and `apply_descan` work on an engine's stored
moments without re-reading data.  The pieces live elsewhere and are re-exported here:
rotation and flip in `ricom.calibration.rotation`, the measurement pass and the centre in
`ricom.calibration.centre`, the descan in `ricom.calibration.descan`.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from ricom.calibration.centre import (
    DiscFit,
    Measurement,
    center_from_disc,
    center_from_mean_com,
    center_from_reference,
    fit_disc,
    measure,
)
from ricom.calibration.descan import DescanFit, descan_from_reference, fit_descan, fit_descan_model
from ricom.calibration.rotation import UNIFORM_PX, RotationResult, find_rotation
from ricom.core.errors import Param, Phrase, SettingsError, render
from ricom.core.geometry import Matrix2
from ricom.core.params import DetectorGeometry

__all__ = ["CalibrationReport", "DescanFit", "DiscFit", "Measurement", "RotationResult", "apply_auto_rotation",
           "apply_descan", "calibrate", "center_from_disc", "center_from_mean_com", "center_from_reference",
           "descan_from_reference", "find_rotation", "fit_descan", "fit_descan_model", "fit_disc", "measure"]


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
    to_output = Matrix2.scale(settings.calibration.com_scale) @ geo.transform()  # detector px → COM unit
    dx, dy = to_output.inverse().apply(snap.com_x, snap.com_y)
    empty = ~(snap.counts > 0)
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
            raise SettingsError("descan 'reference' needs a vacuum reference scan: give ",
                                Param("reference", form=True))
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

    def summary(self, phrase: Phrase | None = None) -> str:
        """What was found, for people; ``phrase`` words the advice of an undetermined rotation
        (a frontend's `ricom.core.errors.Phrasebook`; default: Python keyword arguments)."""
        r = self.rotation
        if r.determined:
            lines = [f"rotation: {r.rotation_deg:.2f}°  flip: {'yes' if r.flip else 'no'}  "
                     f"confidence: {r.confidence:.2f}  (residual curl {100 * r.curl_fraction:.1f} %)"]
        else:
            lines = [f"rotation: {render(r.reason, phrase)}",
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
        return "\n".join(lines)


def _disc_fit(m: Measurement, required: bool) -> DiscFit | None:
    """The bright-field disc of the mean pattern, if there are frames and a disc."""
    if m.mean_pattern is None:
        if required:
            raise SettingsError("the input has no frames to fit a disc to; use the mean-COM centre")
        return None
    try:
        return fit_disc(m.mean_pattern)
    except SettingsError:
        if required:
            raise
        return None


def _centre(center, center_com, disc: DiscFit | None, ref: Measurement | None) -> tuple[str, tuple[float, float]]:
    """(how, centre): the mean COM, the disc fit, the reference's mean COM, or given."""
    if not isinstance(center, str):
        return "given", (float(center[0]), float(center[1]))
    methods = {"com": ("mean COM", lambda: center_com), "disc": ("disc fit", lambda: disc.center_yx),
               "reference": ("reference mean COM", lambda: center_from_mean_com(ref.com_y, ref.com_x))}
    if center not in methods:
        raise SettingsError(f"centre must be 'com', 'disc', 'reference' or (cy, cx), got {center!r}")
    return methods[center][0], methods[center][1]()


def _descan(descan, m: Measurement, ref: Measurement | None):
    """(fit or None, zero-mean offset maps or None, description) of the descan choice."""
    orders = {"none": None, "plane": 1, "quadratic": 2}
    if descan == "reference":
        return None, descan_from_reference(ref, scan_shape=m.scan_shape), descan
    if isinstance(descan, str) and descan in orders:
        if orders[descan] is None:
            return None, None, descan
        fit = fit_descan_model(m.com_y, m.com_x, orders[descan])
        return fit, fit.offsets(), descan
    if not isinstance(descan, str):
        fit = fit_descan_model(m.com_y, m.com_x, int(descan))
        return fit, fit.offsets(), f"polynomial order {int(descan)}"
    raise SettingsError(f"descan must be 'plane', 'quadratic', 'none' or 'reference', got {descan!r}")


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
    >>> from ricom.simulators.specimen import simulate, SimulationParams
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
            raise SettingsError("centre or descan 'reference' needs a vacuum reference scan (",
                                Param("reference", form=True), ")")
        ref = measure(reference, chunk_size=chunk_size, **source_options)
    center_com = center_from_mean_com(m.com_y, m.com_x)
    disc = _disc_fit(m, required=center == "disc")
    center_method, centre = _centre(center, center_com, disc, ref)
    fit, offsets, descan = _descan(descan, m, ref)
    oy, ox = offsets if offsets is not None else (0.0, 0.0)
    rot = find_rotation(m.com_x - centre[1] - ox, m.com_y - centre[0] - oy, flip=flip, min_rms=UNIFORM_PX)
    return CalibrationReport(rot, centre, center_method, center_com, disc, str(descan), fit, offsets,
                             m.scan_shape, m.n_patterns, m.complete)
