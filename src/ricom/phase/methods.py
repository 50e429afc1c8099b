"""The phase-contrast methods of one run as signals: which to compute, their reducers on a
reconstruction, and their images and fitted values in its snapshots.

Owns `PhaseMethods` (what a run computes beside riCOM: tcBF settings, SSB options and the
SSB memory limit), `phase_methods` (those from signal names and flat keyword arguments, as
every frontend takes them; what is missing is a one-line `SettingsError` naming the
parameter), and `attach_methods`, which puts the tcBF and SSB reducers on a
reconstruction — so one pass over the chunk stream gives riCOM, tcBF and SSB — followed by
a `PhaseSignals` reducer that hands their images and the tcBF fit to every snapshot
(`ricom.engine.reducer.Reducer.snapshot_part`).  During a live display it remakes the
images between chunks, at most every ``refresh_s`` and never more than a tenth of the time.
"""
from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass, replace

import numpy as np

from ricom.core.errors import Param, SettingsError
from ricom.engine.reducer import ReducedChunk, Reducer, SnapshotPart
from ricom.engine.snapshot import PHASE_UNITS
from ricom.phase._ssb_geometry import SsbOptions
from ricom.phase._tcbf_layout import FIT_MODES, TcbfSettings
from ricom.phase.ssb import SsbReducer, attach_ssb, live_plan
from ricom.phase.tcbf import TcbfReducer, attach_tcbf

KEYWORDS = ("signals", "tcbf", "ssb", "convergence_mrad", "defocus_A", "tcbf_fit", "tcbf_bin_px", "tcbf_upsample",
            "ssb_bin_factor", "ssb_max_memory_bytes")
"""The keyword arguments of `phase_methods` (the Python API and the frontends pass them through)."""
SSB_BINNED_PX = 64
"""Without a given SSB bin factor, the detector is binned to at most about this many pixels across."""
IMAGE_SHARE = 0.1
"""A live display's image remaking takes at most this share of the run's time."""
_TCBF_FIT_KEYS = ("defocus_A", "astigmatism_A", "astigmatism_angle_deg", "rotation_deg")


@dataclass(frozen=True)
class PhaseMethods:
    """What a run computes beside riCOM.

    Parameters
    ----------
    tcbf : TcbfSettings or None
        Tilt-corrected bright field with these settings (None: not computed).
    ssb : SsbOptions or None
        Single side-band ptychography with these options (None: not computed).
    ssb_max_memory_bytes : int or None
        What SSB's accumulators may take (None: a quarter of this machine's memory).
    ssb_defocus_from_tcbf : bool
        SSB takes the defocus and astigmatism tcBF fits (no defocus was given).
    ssb_bin_auto : bool
        SSB's bin factor is chosen from the detector (`SSB_BINNED_PX`) when attached.
    """

    tcbf: TcbfSettings | None = None
    ssb: SsbOptions | None = None
    ssb_max_memory_bytes: int | None = None
    ssb_defocus_from_tcbf: bool = False
    ssb_bin_auto: bool = False

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(n for n, v in (("tcbf", self.tcbf), ("ssb", self.ssb)) if v is not None)

    def __bool__(self) -> bool:
        return bool(self.names)


def phase_methods(signals=(), *, tcbf=None, ssb=None, convergence_mrad=None, defocus_A=None, tcbf_fit=None,
                  tcbf_bin_px=None, tcbf_upsample=None, ssb_bin_factor=None,
                  ssb_max_memory_bytes=None) -> PhaseMethods:
    """The methods asked for, from signal names or settings objects and flat options.

    Parameters
    ----------
    signals : iterable of str
        ``"tcbf"`` and ``"ssb"`` among them switch those methods on (other names are ignored).
    tcbf : TcbfSettings or bool, optional
        tcBF with these settings (True: from the flat options).
    ssb : SsbOptions or bool, optional
        SSB with these options (True: from the flat options).
    convergence_mrad : float, optional
        Probe convergence semi-angle; SSB needs it.
    defocus_A : float, optional
        Defocus (Å, positive = underfocus): SSB's aberration correction, and tcBF's shifts
        with ``tcbf_fit="given"``.  Without it SSB takes tcBF's fitted defocus when both run.
    tcbf_fit : {"auto", "first", "given"}, optional
        Where tcBF's shifts come from (default ``"auto"``).
    tcbf_bin_px, tcbf_upsample : int, optional
        tcBF's bins of detector pixels and its image's upsampling.
    ssb_bin_factor : int, optional
        Detector pixels binned per side for SSB; default: to about `SSB_BINNED_PX` across.
    ssb_max_memory_bytes : int, optional
        The limit of SSB's accumulators (checked before the run).

    Examples
    --------
    >>> m = phase_methods(["ricom", "tcbf", "ssb"], convergence_mrad=20.0, defocus_A=150.0)
    >>> m.names, m.ssb.defocus_A, m.tcbf.fit
    (('tcbf', 'ssb'), 150.0, 'auto')
    """
    names = set(signals or ())
    want_tcbf = "tcbf" in names or tcbf not in (None, False)
    want_ssb = "ssb" in names or ssb not in (None, False)
    t = _tcbf_settings(tcbf, defocus_A, tcbf_fit, tcbf_bin_px, tcbf_upsample) if want_tcbf else None
    s = _ssb_options(ssb, convergence_mrad, defocus_A, ssb_bin_factor) if want_ssb else None
    if ssb_max_memory_bytes is not None and not (math.isfinite(ssb_max_memory_bytes) and ssb_max_memory_bytes > 0):
        raise SettingsError(f"the SSB memory limit must be positive, got {ssb_max_memory_bytes!r}; give ",
                            Param("ssb_max_memory_bytes"))
    from_tcbf = (s is not None and t is not None and t.fit != "given" and defocus_A is None
                 and not isinstance(ssb, SsbOptions))
    return PhaseMethods(t, s, None if ssb_max_memory_bytes is None else int(ssb_max_memory_bytes), from_tcbf,
                        want_ssb and not isinstance(ssb, SsbOptions) and ssb_bin_factor is None)


def _tcbf_settings(tcbf, defocus_A, fit, bin_px, upsample) -> TcbfSettings:
    if isinstance(tcbf, TcbfSettings):
        return tcbf
    fit = fit or "auto"
    if fit not in FIT_MODES:
        raise SettingsError(f"tcBF fit must be one of {', '.join(FIT_MODES)}, got {fit!r}; give ",
                            Param("tcbf_fit", form=True))
    if fit == "given" and defocus_A is None:
        raise SettingsError("tcBF shifts from given aberrations need the defocus; give ", Param("defocus_A", form=True),
                            " (Å, positive = underfocus) or let the data give it with ", Param("tcbf_fit", "auto"))
    for name, v in (("tcbf_bin_px", bin_px), ("tcbf_upsample", upsample)):
        if v is not None and (int(v) != v or v < 1):
            raise SettingsError(f"{name} must be a whole number ≥ 1, got {v!r}; give ", Param(name, form=True))
    return TcbfSettings(fit=fit, defocus_A=float(defocus_A or 0.0), bin_px=bin_px, upsample=int(upsample or 1))


def _ssb_options(ssb, convergence_mrad, defocus_A, bin_factor) -> SsbOptions:
    if isinstance(ssb, SsbOptions):
        return ssb
    if convergence_mrad is None:
        raise SettingsError("SSB needs the probe's convergence semi-angle; give ",
                            Param("convergence_mrad", form=True))
    if not (math.isfinite(convergence_mrad) and convergence_mrad > 0):
        raise SettingsError(f"the convergence semi-angle must be a positive number of mrad, got {convergence_mrad!r}; "
                            "give ", Param("convergence_mrad"))
    if bin_factor is not None and (int(bin_factor) != bin_factor or bin_factor < 1):
        raise SettingsError(f"the SSB bin factor must be a whole number ≥ 1, got {bin_factor!r}; give ",
                            Param("ssb_bin_factor", form=True))
    return SsbOptions(float(convergence_mrad), float(defocus_A or 0.0), bin_factor=int(bin_factor or 1))


def auto_bin_factor(detector_shape) -> int:
    """Detector pixels per binned SSB pixel side: about `SSB_BINNED_PX` binned pixels across."""
    return max(1, min(int(v) for v in detector_shape) // SSB_BINNED_PX)


def attach_methods(reconstruction, methods: PhaseMethods, source=None,
                   refresh_s: float | None = None) -> PhaseSignals | None:
    """Put the reducers of ``methods`` on ``reconstruction`` and a `PhaseSignals` after them.

    Parameters
    ----------
    reconstruction : ricom.engine.Reconstruction
    methods : PhaseMethods
    source : Source, optional
        The input: tcBF needs whole patterns, so a source of single electrons is refused.
    refresh_s : float, optional
        A live display: remake the images between chunks at most this often (None: only
        when a snapshot asks for them).

    Returns
    -------
    PhaseSignals or None
        None when ``methods`` asks for nothing.  SSB's memory plan is checked first: past
        its limit, a one-line `SettingsError` before any pattern is read.
    """
    if not methods:
        return None
    if methods.tcbf is not None and getattr(source, "kind", "frames") == "events":
        raise SettingsError("tcBF needs whole patterns and this input sends single electrons; leave tcbf out of ",
                            Param("signals"))
    ssb_options = methods.ssb
    if ssb_options is not None and methods.ssb_bin_auto:
        ssb_options = replace(ssb_options, bin_factor=auto_bin_factor(reconstruction.detector_shape))
    if ssb_options is not None:
        plan = live_plan(reconstruction.scan_shape, reconstruction.detector_shape, ssb_options,
                         reconstruction.settings.calibration, methods.ssb_max_memory_bytes)
        if not plan.fits:
            raise SettingsError(plan.describe().replace("SSB live: ", "SSB of a ", 1) + "; that is too much: bin the "
                                "detector more with ", Param("ssb_bin_factor", form=True), ", raise ",
                                Param("ssb_max_memory_bytes"), " or leave ssb out of ", Param("signals"))
    tcbf = attach_tcbf(reconstruction, methods.tcbf) if methods.tcbf is not None else None
    ssb = attach_ssb(reconstruction, ssb_options, methods.ssb_max_memory_bytes) if ssb_options is not None else None
    signals = PhaseSignals(tcbf, ssb, methods.ssb_defocus_from_tcbf, refresh_s)
    reconstruction.add_reducer(signals)
    return signals


def methods_of(reconstruction) -> PhaseSignals | None:
    """The `PhaseSignals` of a reconstruction, or None."""
    return next((r for r in getattr(reconstruction, "reducers", ()) if isinstance(r, PhaseSignals)), None)


class PhaseSignals(Reducer):
    """Hands the tcBF and SSB images (and the tcBF fit) to the reconstruction's snapshots.

    It comes after the tcBF and SSB reducers, which take the chunks themselves; it only
    remakes their images between chunks when a live display asks (``refresh_s``).

    Parameters
    ----------
    tcbf : TcbfReducer or None
    ssb : SsbReducer or None
    ssb_defocus_from_tcbf : bool
        Give SSB the defocus and astigmatism tcBF fitted before each SSB image.
    refresh_s : float or None
        Remake the images after a chunk when this long has passed since the last time
        (and at least ten times as long as that took); None: only on demand.
    """

    def __init__(self, tcbf: TcbfReducer | None, ssb: SsbReducer | None, ssb_defocus_from_tcbf: bool = False,
                 refresh_s: float | None = None) -> None:
        self.tcbf, self.ssb = tcbf, ssb
        self.ssb_defocus_from_tcbf = bool(ssb_defocus_from_tcbf and tcbf is not None and ssb is not None)
        self.refresh_s = refresh_s
        self._lock = threading.Lock()
        self._images: dict[str, np.ndarray] = {}
        self._made_at, self._cost_s = -math.inf, 0.0

    @property
    def plan_text(self) -> str | None:
        """SSB's memory plan in one line (None without SSB)."""
        return self.ssb.plan.describe() if self.ssb is not None else None

    def summary(self) -> str | None:
        """tcBF's one line for the operator: the fitted (or given) defocus and the rest."""
        return self.tcbf.summary() if self.tcbf is not None else None

    # ------------------------------------------------------------------ reducer
    def process(self, chunk: ReducedChunk) -> None:
        self._maybe_refresh()

    def process_event_chunk(self, chunk) -> None:
        self._maybe_refresh()

    def merge(self, other) -> None:
        return  # the tcBF and SSB reducers merge their own partial results

    def get_results(self) -> dict:
        part = self.snapshot_part(True)
        return {**part.images, **part.attrs}

    def _maybe_refresh(self) -> None:
        if self.refresh_s is None:
            return
        now = time.perf_counter()
        if now - self._made_at >= max(self.refresh_s, self._cost_s / IMAGE_SHARE):
            self._make_images()

    def _make_images(self) -> dict[str, np.ndarray]:
        t0 = time.perf_counter()
        images = {}
        if self.tcbf is not None:
            images["tcbf"] = self.tcbf.image()
        if self.ssb is not None:
            if self.ssb_defocus_from_tcbf:
                self._ssb_from_fit()
            images["ssb"] = self.ssb.image()
        t1 = time.perf_counter()
        with self._lock:
            self._images, self._made_at, self._cost_s = images, t1, t1 - t0
        return images

    def _ssb_from_fit(self) -> None:
        fit = self.tcbf.aberrations()
        if math.isfinite(fit["defocus_A"]):
            astig = fit["astigmatism_A"] if math.isfinite(fit["astigmatism_A"]) else 0.0
            angle = fit["astigmatism_angle_deg"] if math.isfinite(fit["astigmatism_angle_deg"]) else 0.0
            self.ssb.update(options=replace(self.ssb.options, defocus_A=float(fit["defocus_A"]),
                                            astigmatism_A=float(astig), astigmatism_angle_deg=float(angle)))

    # ------------------------------------------------------------------ snapshot
    def snapshot_part(self, fresh: bool = True) -> SnapshotPart:
        """The images (made now, or with ``fresh`` False the last ones made — none before the
        first refresh), their units and the tcBF fit and SSB options as flat attributes."""
        with self._lock:
            images = self._images
        if fresh:
            images = self._make_images()
        return SnapshotPart({k: v.copy() for k, v in images.items()},
                            {n: PHASE_UNITS[n] for n in images}, self.attrs())

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(n for n, r in (("tcbf", self.tcbf), ("ssb", self.ssb)) if r is not None)

    def attrs(self) -> dict[str, object]:
        """``tcbf_defocus_A``, ``tcbf_defocus_A_sigma`` …, ``tcbf_summary``; ``ssb_convergence_mrad`` …"""
        out: dict[str, object] = {}
        if self.tcbf is not None:
            t = self.tcbf
            fit = t.aberrations()
            for key in _TCBF_FIT_KEYS:
                out[f"tcbf_{key}"], out[f"tcbf_{key}_sigma"] = float(fit[key]), float(fit[key + "_sigma"])
            out.update(tcbf_fit_mode=t.settings.fit, tcbf_n_fits=int(t.n_fits), tcbf_fit_rows=int(t.fit_rows_used),
                       tcbf_bin_px=int(t.layout.bin_px) if t.layout is not None else 0,
                       tcbf_n_bins=int(t.layout.n_bins) if t.layout is not None else 0,
                       tcbf_upsample=int(t.settings.upsample),
                       tcbf_fit_rms_px=float(t.fit.rms_px) if t.fit is not None else math.nan,
                       tcbf_summary=t.summary())
        if self.ssb is not None:
            o = self.ssb.options
            out.update(ssb_convergence_mrad=float(o.convergence_mrad), ssb_defocus_A=float(o.defocus_A),
                       ssb_astigmatism_A=float(o.astigmatism_A),
                       ssb_astigmatism_angle_deg=float(o.astigmatism_angle_deg),
                       ssb_defocus_source="tcbf fit" if self.ssb_defocus_from_tcbf else "given",
                       ssb_bin_factor=int(o.bin_factor), ssb_accumulator_bytes=int(self.ssb.accumulator_bytes),
                       ssb_plan=self.ssb.plan.describe())
        return out


__all__ = ["KEYWORDS", "PhaseMethods", "PhaseSignals", "attach_methods", "auto_bin_factor", "methods_of",
           "phase_methods"]
