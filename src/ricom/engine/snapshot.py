"""A frozen copy of a reconstruction's images, and every signal derived from them.

`Snapshot` is what the engine hands to frontends and writers: plain NumPy arrays plus
the settings that made them.  `Snapshot.signal` derives iCOM, divergence, curl and the
E-field on demand (from `ricom.signals.derived`), with units from the calibration.
Images of further reducers beside riCOM — the phase-contrast methods ``tcbf`` and ``ssb``
(`PHASE_SIGNALS`) — arrive made (`extra`, with their units and any fitted values in
`metadata`); the engine does not know how they are made.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np

from ricom.core.errors import Param, SettingsError
from ricom.core.params import Settings
from ricom.signals import derived as S

SIGNALS = ("ricom", "icom", "com_x", "com_y", "divergence", "curl", "efield_magnitude",
           "efield_direction", "counts", "hits")
"""Names `Snapshot.signal` knows besides the virtual detectors (``vbf``, ``vadf``, ...)."""

PHASE_SIGNALS = ("tcbf", "ssb")
"""Names of images further reducers add to a snapshot when asked for (`ricom.phase`):
tilt-corrected bright field and single side-band ptychography."""

PHASE_UNITS = {"tcbf": "relative contrast", "ssb": "rad"}

ALIASES = {"com": ("com_x", "com_y"), "efield": ("efield_magnitude", "efield_direction")}


def expand_signals(names, virtual_names=()) -> list[str]:
    """Resolve aliases (``com`` → ``com_x, com_y``); unknown names raise `SettingsError`."""
    out: list[str] = []
    known = [*SIGNALS, *PHASE_SIGNALS, *virtual_names]
    for name in names:
        for n in ALIASES.get(name, (name,)):
            if n not in known:
                raise SettingsError(f"unknown signal {n!r}; choose from {', '.join(known)}, "
                                    f"{', '.join(ALIASES)}")
            if n not in out:
                out.append(n)
    return out


@dataclass
class Snapshot:
    """Images of a reconstruction at one moment.

    Attributes
    ----------
    ricom : ndarray
        riCOM image in `units` ``["ricom"]`` (V·Å with full calibration).
    com_x, com_y : ndarray
        Calibrated COM in the scan frame (mrad, or detector pixels).
    counts : ndarray
        Total counts per position; ``hits`` patterns per position.
    virtual : dict of str to ndarray
        Virtual-detector images (summed counts).
    complete : bool
        False if the run that made it ended early (Ctrl-C or a stop request, a broken
        input, a truncated file or stream); ``reason`` then says why.  A snapshot taken
        while a run goes on is complete until that run says otherwise.
    reason : str or None
        Why the result is partial (None when complete).
    extra : dict of str to ndarray
        Images of further reducers (``tcbf``, ``ssb``) by name, with their units in
        ``extra_units``; `signal` and the writers treat them as any other signal.
    metadata : dict of str to object
        Flat values those reducers report (``tcbf_defocus_A``, ``tcbf_defocus_A_sigma`` …,
        ``ssb_convergence_mrad`` …); the writers save them as attributes.
    """

    ricom: np.ndarray
    com_x: np.ndarray
    com_y: np.ndarray
    counts: np.ndarray
    hits: np.ndarray
    virtual: dict[str, np.ndarray]
    settings: Settings
    center_yx: tuple[float, float] | None
    n_patterns: int = 0
    n_empty: int = 0
    n_invalid: int = 0
    n_outside: int = 0
    seconds_processing: float = 0.0
    virtual_radii_px: dict[str, tuple[float, float]] = field(default_factory=dict)
    complete: bool = True
    reason: str | None = None
    extra: dict[str, np.ndarray] = field(default_factory=dict)
    extra_units: dict[str, str] = field(default_factory=dict)
    metadata: dict[str, object] = field(default_factory=dict)

    @property
    def scan_shape(self) -> tuple[int, int]:
        return self.ricom.shape

    @property
    def progress(self) -> float:
        """Fraction of scan positions that received at least one pattern."""
        return float((self.hits > 0).mean())

    @property
    def tcbf(self) -> np.ndarray:
        """The tcBF image (relative contrast); a `SettingsError` if the run did not make one."""
        return self.signal("tcbf")

    @property
    def ssb(self) -> np.ndarray:
        """The SSB phase image (rad); a `SettingsError` if the run did not make one."""
        return self.signal("ssb")

    def names(self) -> list[str]:
        return [*SIGNALS, *self.extra, *self.virtual]

    def expand(self, names) -> list[str]:
        """Resolve aliases (``com`` → ``com_x, com_y``) and check the names."""
        return expand_signals(names, [*self.virtual, *self.extra])

    def signal(self, name: str) -> np.ndarray:
        """One image by name (see `SIGNALS`, `PHASE_SIGNALS` and the virtual-detector names)."""
        if name in self.virtual:
            return self.virtual[name]
        if name in self.extra:
            return self.extra[name]
        if name in PHASE_SIGNALS:
            raise SettingsError(f"signal {name!r} was not computed in this run; ask for it with ", Param("signals"),
                                " when the run starts")
        cal = self.settings.calibration
        h = cal.step
        cx, cy = self.com_x, self.com_y
        derived = {
            "ricom": lambda: self.ricom,
            "icom": lambda: S.icom(cx, cy, h) * cal.potential_scale,
            "com_x": lambda: cx,
            "com_y": lambda: cy,
            "divergence": lambda: S.divergence(cx, cy, h),
            "curl": lambda: S.curl(cx, cy, h),
            "efield_magnitude": lambda: S.field_magnitude(cx, cy),
            "efield_direction": lambda: S.field_direction(cx, cy),
            "counts": lambda: self.counts,
            "hits": lambda: self.hits,
        }
        if name not in derived:
            raise SettingsError(f"unknown signal {name!r}; choose from {', '.join(self.names())}")
        return derived[name]()

    def unit(self, name: str) -> str:
        if name in self.extra_units:
            return self.extra_units[name]
        cal = self.settings.calibration
        per = f"{cal.com_unit}/{cal.distance_unit}"
        return {"ricom": cal.potential_unit, "icom": cal.potential_unit, "com_x": cal.com_unit,
                "com_y": cal.com_unit, "divergence": per, "curl": per,
                "efield_magnitude": cal.com_unit, "efield_direction": "rad"}.get(name, "counts")

    def signals(self, names) -> dict[str, np.ndarray]:
        """Several images by name, aliases allowed, in order."""
        return {n: self.signal(n) for n in self.expand(names)}

    def to_hyperspy(self, names=None) -> dict:
        """The signals as calibrated HyperSpy signals (``pip install 'ricom[hyperspy]'``).

        Scan axes in Å (scan px when uncalibrated), units and `settings_attrs` in the
        metadata; COM x and y as one ``beam_shift`` signal ``com`` (pyxem's ``BeamShift``).
        See `ricom.engine.as_hyperspy.to_hyperspy`.

        Parameters
        ----------
        names : iterable of str, optional
            Signals to convert (aliases allowed); default all.

        Returns
        -------
        dict of str to hyperspy signal
        """
        from ricom.engine.as_hyperspy import to_hyperspy  # HyperSpy is imported only when asked

        return to_hyperspy(self, names)


def settings_attrs(snap: Snapshot) -> dict:
    """Flat, HDF5-friendly description of the parameters behind a snapshot."""
    s = snap.settings
    cal, geo, ker = s.calibration, s.geometry, s.kernel
    attrs = {
        "kernel_size": ker.size,
        "band_pass_cycles_per_pixel": list(ker.band_pass) if ker.band_pass else "none",
        "rotation_deg": geo.rotation_deg,
        "flip": bool(geo.flip),
        "flip_convention": "True: detector x (columns) mirrored before the rotation",
        "rotation_convention": "measured COM turned by rotation_deg from detector +x towards +y",
        "center_yx": list(snap.center_yx) if snap.center_yx is not None else "none",
        "center_mode": "given" if geo.center_yx is not None else "auto",
        "step_A": cal.step_A if cal.step_A is not None else "none",
        "pixel_size_mrad": cal.pixel_size_mrad if cal.pixel_size_mrad is not None else "none",
        "energy_keV": cal.energy_keV if cal.energy_keV is not None else "none",
        "n_patterns": snap.n_patterns,
        "n_empty_patterns": snap.n_empty,
        "n_invalid_patterns": snap.n_invalid,
        "seconds_processing": snap.seconds_processing,
        "scan_shape": list(snap.scan_shape),
        "virtual_detectors_px": json.dumps({k: list(v) for k, v in snap.virtual_radii_px.items()}),
        "software": "ricom",
        "complete": bool(snap.complete),
        "partial_reason": str(snap.reason) if snap.reason else "",
    }
    if s.com_mask_px is not None:
        attrs["com_mask_px"] = list(s.com_mask_px)
    attrs.update(snap.metadata)  # the phase-contrast methods' fit and options (tcbf_defocus_A, …)
    return attrs
