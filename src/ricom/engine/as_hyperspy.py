"""A snapshot as HyperSpy signals: what `Snapshot.to_hyperspy` (and `ricom.to_hyperspy`) returns.

Owns the in-memory conversion; writing ``.hspy`` files is `ricom.io.hyperspy`'s.  Needs
HyperSpy (``pip install 'ricom[hyperspy]'``), imported only when a conversion is asked for.

Every image becomes a ``Signal2D`` whose two signal axes are the scan (``x``, ``y``) with
the scan step as scale in Å, or 1 in ``scan px`` when uncalibrated; its title is the
signal name and ``metadata.Signal.quantity`` says ``"name (unit)"``.  COM x and y become
one two-component ``Signal1D`` over the scan (navigation = scan, signal = the components
``x``, ``y``) with ``signal_type = "beam_shift"``, which pyxem loads as its ``BeamShift``
(``metadata.VectorMetadata`` names the columns and their unit, as pyxem's own
``get_direct_beam_position`` does).  Its values are ricom's COM, pointing along +∇V;
pyxem's ``get_direct_beam_position`` reports the opposite sign (origin − beam position).
The reconstruction parameters (`ricom.engine.snapshot.settings_attrs`) are kept in
``original_metadata.ricom``; the beam energy also in HyperSpy's usual
``metadata.Acquisition_instrument.TEM.beam_energy`` (keV).
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ricom.core.errors import SettingsError
from ricom.engine.snapshot import settings_attrs

if TYPE_CHECKING:
    from ricom.engine.snapshot import Snapshot

BEAM_SHIFT = "beam_shift"
"""pyxem's ``signal_type`` of a two-component shift over the scan (its ``BeamShift``)."""
COM_COLUMNS = ("x-shift", "y-shift")
"""Column names pyxem gives the two components of a beam shift."""
UNCALIBRATED_UNIT = "scan px"


def hyperspy_api():
    """`hyperspy.api`, or a one-line SettingsError saying how to install it."""
    try:
        import hyperspy.api as hs
    except ImportError:
        raise SettingsError("HyperSpy output needs HyperSpy: pip install 'ricom[hyperspy]'") from None
    return hs


def to_hyperspy(snap: Snapshot, names=None, attrs: dict | None = None) -> dict:
    """The signals of ``snap`` as calibrated HyperSpy signals.

    Parameters
    ----------
    snap : Snapshot
        The result.
    names : iterable of str, optional
        Signals to convert (aliases allowed); default every signal of the snapshot.
        ``com_x`` / ``com_y`` (or ``com``) become one two-component signal ``com``.
    attrs : dict, optional
        Parameters to record; default `ricom.engine.snapshot.settings_attrs` of ``snap``.

    Returns
    -------
    dict of str to hyperspy signal
        ``Signal2D`` per image, ``com`` as a ``beam_shift`` ``Signal1D``, in the order asked.
    """
    hs = hyperspy_api()
    if attrs is None:
        attrs = settings_attrs(snap)
    names = snap.expand(snap.names() if names is None else names)
    out: dict = {}
    for name in names:
        if name in ("com_x", "com_y"):
            if "com" not in out:
                out["com"] = _com_signal(hs, snap, attrs)
            continue
        s = hs.signals.Signal2D(np.asarray(snap.signal(name), np.float32))
        _calibrate_scan_axes(s.axes_manager.signal_axes, snap)
        _describe(s, name, snap.unit(name), attrs, snap)
        out[name] = s
    return out


def _com_signal(hs, snap: Snapshot, attrs: dict):
    data = np.stack([snap.signal("com_x"), snap.signal("com_y")], axis=-1).astype(np.float32)
    s = hs.signals.Signal1D(data)
    _calibrate_scan_axes(s.axes_manager.navigation_axes, snap)
    component = s.axes_manager.signal_axes[0]
    component.name = "Beam position"  # pyxem's name for this axis
    unit = snap.unit("com_x")
    _describe(s, "com", unit, attrs, snap)
    s.metadata.set_item("VectorMetadata.column_names", list(COM_COLUMNS))
    s.metadata.set_item("VectorMetadata.units", [unit, unit])
    s.original_metadata.set_item("ricom.com_sign", "COM along +grad V; pyxem's get_direct_beam_position "
                                                   "gives the opposite sign (origin - beam position)")
    if _known_signal_type(hs, BEAM_SHIFT):
        s.set_signal_type(BEAM_SHIFT)  # pyxem is installed: its BeamShift class
    else:
        s.metadata.Signal.signal_type = BEAM_SHIFT  # recorded; pyxem makes it a BeamShift on loading
    return s


def _known_signal_type(hs, signal_type: str) -> bool:
    from hyperspy.extensions import ALL_EXTENSIONS

    return any(spec.get("signal_type") == signal_type for spec in ALL_EXTENSIONS["signals"].values())


def _calibrate_scan_axes(axes, snap: Snapshot) -> None:
    """``axes`` = (x, y) of the scan: scale = step in Å, or 1 scan px."""
    step = snap.settings.calibration.step_A
    for axis, label in zip(axes, ("x", "y"), strict=True):
        axis.name = label
        axis.scale = float(step) if step is not None else 1.0
        axis.offset = 0.0
        axis.units = "Å" if step is not None else UNCALIBRATED_UNIT


def _describe(s, name: str, unit: str, attrs: dict, snap: Snapshot) -> None:
    s.metadata.General.title = name
    s.metadata.Signal.quantity = f"{name} ({unit})"
    energy = snap.settings.calibration.energy_keV
    if energy is not None:
        s.metadata.set_item("Acquisition_instrument.TEM.beam_energy", float(energy))
    s.original_metadata.set_item("ricom", {k: _plain(v) for k, v in attrs.items()})
    s.original_metadata.set_item("ricom.signal", name)
    s.original_metadata.set_item("ricom.unit", unit)


def _plain(value):
    """HDF5- and zarr-friendly attribute values (lists of numbers stay arrays)."""
    if isinstance(value, (list, tuple)):
        return np.asarray(value) if all(isinstance(v, (int, float)) for v in value) else [str(v) for v in value]
    return value
