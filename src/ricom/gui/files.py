"""Everything the GUI writes or reads: panels, all signals, settings files.

Owns the file formats of the GUI's Save menus: one panel as float32 TIFF with its
calibration (`ricom.io.outputs.write_tiff`), as PNG (the colour-mapped image as shown) or
as ``.npy``; all signals of a snapshot as one HDF5 file (`ricom.io.outputs.save`); and the
reconstruction settings as JSON (`settings_to_dict` / `settings_from_dict`, which
`load_settings` reads back); the calibration of a settings file or of a data file's
``.ricom.json`` sidecar (`load_calibration`).  Every file is written atomically (`ricom.io.outputs.atomic_path`).
"""
from __future__ import annotations

import json
import math
import os

import numpy as np

from ricom.api import DEFAULT_VIRTUAL_DETECTORS
from ricom.core.errors import SettingsError
from ricom.core.params import Calibration, DetectorGeometry, KernelSettings, Settings, VirtualDetector
from ricom.core.sidecar import find_sidecar
from ricom.engine.snapshot import Snapshot
from ricom.io.outputs import atomic_path, save, settings_attrs, write_tiff

SETTINGS_FORMAT = "ricom-gui-settings/1"
PANEL_FORMATS = {"tif": "TIFF (*.tif *.tiff)", "png": "PNG (*.png)", "npy": "NumPy (*.npy)"}


def settings_to_dict(s: Settings) -> dict:
    """JSON-ready description of ``s`` (∞ radii as None)."""
    return {
        "kernel": {"size": s.kernel.size, "band_pass": list(s.kernel.band_pass) if s.kernel.band_pass else None},
        "geometry": {"center_yx": list(s.geometry.center_yx) if s.geometry.center_yx is not None else None,
                     "rotation_deg": s.geometry.rotation_deg, "flip": s.geometry.flip},
        "calibration": {"step_A": s.calibration.step_A, "pixel_size_mrad": s.calibration.pixel_size_mrad,
                        "energy_keV": s.calibration.energy_keV},
        "virtual_detectors": [{"name": v.name, "inner": v.inner, "outer": v.outer if math.isfinite(v.outer) else None,
                               "unit": v.unit} for v in s.virtual_detectors],
        "com_mask_px": list(s.com_mask_px) if s.com_mask_px is not None else None,
    }


def settings_from_dict(d: dict) -> Settings:
    """Inverse of `settings_to_dict`; missing parts take their defaults.

    Raises
    ------
    SettingsError
        If a value is invalid or of the wrong type.
    """
    try:
        k, g, c = d.get("kernel", {}), d.get("geometry", {}), d.get("calibration", {})
        band = k.get("band_pass")
        kernel = KernelSettings(int(k.get("size", 21)), tuple(band) if band else None)
        centre = g.get("center_yx")
        geometry = DetectorGeometry(tuple(centre) if centre is not None else None,
                                    float(g.get("rotation_deg", 0.0)), bool(g.get("flip", False)))
        calibration = Calibration(c.get("step_A"), c.get("pixel_size_mrad"), c.get("energy_keV"))
        vds = tuple(VirtualDetector(v["name"], float(v["inner"]),
                                    math.inf if v.get("outer") is None else float(v["outer"]), v.get("unit", "px"))
                    for v in d.get("virtual_detectors", ()))
        if "virtual_detectors" not in d:
            vds = DEFAULT_VIRTUAL_DETECTORS
        mask = d.get("com_mask_px")
        return Settings(kernel=kernel, geometry=geometry, calibration=calibration, virtual_detectors=vds,
                        com_mask_px=tuple(mask) if mask is not None else None)
    except SettingsError:
        raise
    except (TypeError, ValueError, KeyError, AttributeError) as exc:
        raise SettingsError(f"the settings file is not valid ({type(exc).__name__}: {exc})") from None


def save_settings(path: str, settings: Settings, scan_shape=None) -> None:
    """Write ``settings`` (and the scan shape) as JSON."""
    doc = {"format": SETTINGS_FORMAT, **settings_to_dict(settings)}
    if scan_shape is not None:
        doc["scan_shape"] = [int(v) for v in scan_shape]
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as fh:
        json.dump(doc, fh, indent=1)


def load_settings(path: str) -> tuple[Settings, tuple[int, int] | None]:
    """Read a file of `save_settings`: ``(settings, scan_shape or None)``.

    Raises
    ------
    SettingsError
        If the file cannot be read or is not a settings file.
    """
    try:
        with open(path, encoding="utf-8") as fh:
            doc = json.load(fh)
    except OSError as exc:
        raise SettingsError(f"cannot read the settings file {path!r} ({exc.strerror or exc})") from None
    except json.JSONDecodeError as exc:
        raise SettingsError(f"{path!r} is not a JSON settings file ({exc})") from None
    if not isinstance(doc, dict) or doc.get("format") != SETTINGS_FORMAT:
        raise SettingsError(f"{path!r} is not a ricom GUI settings file (no \"format\": \"{SETTINGS_FORMAT}\")")
    shape = doc.get("scan_shape")
    return settings_from_dict(doc), (tuple(int(v) for v in shape) if shape else None)


CALIBRATION_KEYS = ("step_A", "pixel_size_mrad", "energy_keV")


def calibration_file(path: str) -> str:
    """The JSON that holds the calibration of ``path``: ``path`` itself if it is a ``.json``,
    else its sidecar ``<path>.ricom.json`` or ``<stem>.ricom.json`` (whichever exists)."""
    if path.lower().endswith(".json"):
        return path
    side = find_sidecar(path)
    if side is not None:
        return side
    raise SettingsError(f"{path!r} has no calibration sidecar ({os.path.basename(path)}.ricom.json); "
                        "choose a .json file with a \"calibration\" section")


def load_calibration(path: str) -> dict[str, float]:
    """The calibration values a JSON file (or a data file's sidecar) carries.

    Reads the ``"calibration"`` section of a GUI settings file or of a ``.ricom.json``
    sidecar (as ``ricom simulate`` writes), or the same keys at the top level.

    Returns
    -------
    dict
        Those of ``step_A``, ``pixel_size_mrad``, ``energy_keV`` that are given.

    Raises
    ------
    SettingsError
        If the file cannot be read, is not JSON or gives none of the three.
    """
    side = calibration_file(path)
    try:
        with open(side, encoding="utf-8") as fh:
            doc = json.load(fh)
    except OSError as exc:
        raise SettingsError(f"cannot read the calibration file {side!r} ({exc.strerror or exc})") from None
    except json.JSONDecodeError as exc:
        raise SettingsError(f"{side!r} is not a JSON file ({exc})") from None
    section = doc.get("calibration", doc) if isinstance(doc, dict) else {}
    section = section if isinstance(section, dict) else {}
    try:
        found = {k: float(section[k]) for k in CALIBRATION_KEYS if section.get(k) is not None}
    except (TypeError, ValueError):
        raise SettingsError(f"{side!r}: the calibration values must be numbers") from None
    if not found:
        raise SettingsError(f"{side!r} gives no calibration (step_A, pixel_size_mrad, energy_keV)")
    Calibration(**found)  # positive numbers, or a SettingsError naming the parameter
    return found


def save_panel(path: str, fmt: str, export, qimage=None, snap: Snapshot | None = None) -> None:
    """Save one panel.

    Parameters
    ----------
    path : str
        Output file.
    fmt : {"tif", "png", "npy"}
        TIFF: ImageJ float32, pixel size in Å, the calibration and settings as JSON in
        its ``Info`` (`ricom.io.outputs.write_tiff`);
        PNG: ``qimage`` (the image as displayed); NPY: the float array.
    export : (str, ndarray, str)
        The panel's ``(signal name, data, unit)`` (see `ricom.gui.panels.Panel.export`).
    qimage : QImage, optional
        Needed for PNG.
    snap : Snapshot, optional
        Settings and counters recorded in the TIFF.
    """
    if export is None:
        raise SettingsError("the panel shows nothing yet; start a source first")
    name, data, unit = export
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise SettingsError(f"folder {folder!r} does not exist")
    if fmt == "png":
        if qimage is None or qimage.isNull():
            raise SettingsError("the panel has no image to save yet")
        with atomic_path(path) as tmp:
            if not qimage.save(tmp, "PNG"):
                raise OSError(f"could not write {path}")
    elif fmt == "npy":
        with atomic_path(path) as tmp, open(tmp, "wb") as fh:
            np.save(fh, np.asarray(data, np.float64))
    elif fmt == "tif":
        meta = settings_attrs(snap) if snap is not None else {}
        scan_image = snap is not None and (name in snap.names() or name == "efield")  # not FFT, kernel, pattern
        with atomic_path(path) as tmp:
            write_tiff(tmp, data, {**meta, "signal": name, "unit": unit, "software": "ricom gui"},
                       step_A=snap.settings.calibration.step_A if scan_image else None)
    else:
        raise SettingsError(f"unknown panel format {fmt!r}; use tif, png or npy")


def save_all(path: str, snap: Snapshot, extra: dict | None = None) -> list[str]:
    """Every signal of ``snap`` (riCOM, iCOM, COM, divergence, curl, E-field, counts,
    virtual detectors) in one HDF5 file; returns the names written."""
    return save(path, snap, snap.names(), {"software": "ricom gui", **(extra or {})})
