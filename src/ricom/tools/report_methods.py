"""The paper's Fig. 6 complete: ADF, SSB, tcBF and riCOM on the same electrons at full,
1/10 and 1/100 dose, the dose lowered the paper's way — by the acceptance time of event data.

`methods_study` writes the built-in SrTiO3 specimen as single-electron events (ricom's
HDF5 event layout, every electron arriving uniformly within the dwell time), once in
focus and once per defocus of `MethodsConfig.defoci_A`, then reconstructs each with an
acceptance time of the full dwell, a tenth and a hundredth of it:

- **riCOM** (several kernels, with and without band-pass) and the **virtual ADF** from
  the events themselves (`ricom.api.reconstruct_run` on the event file with
  ``acceptance_ns``), with **SSB** as a reducer in the same pass
  (`ricom.phase.ssb.attach_ssb`, given the nominal defocus, as at the microscope);
- **tcBF** (`ricom.phase.tcbf.reconstruct_tcbf`) on the patterns the accepted events
  make (tcBF takes frames).  The aberrations are fitted on the full-dose scan (the
  fitted defocus is reported against the true one) and given to tcBF at every dose, so
  every dose uses the same shifts; the fit each dose would give on its own is reported
  too (it fails first as the dose falls).

Every image is compared with the simulator's projected potential (`correlation`, without
a border) and with the same method on the noiseless patterns of the same specimen
(`relative_noise`).  tcBF needs defocus to carry phase contrast and riCOM is blurred by
it, hence the two scans.  Drawn by `ricom.tools.report_methods_figures`.
"""
from __future__ import annotations

import math
import os
import tempfile
import warnings
from dataclasses import dataclass, replace

import numpy as np

from ricom.api import open_input
from ricom.core.params import Calibration, DetectorGeometry
from ricom.phase._ssb_events import EventPatterns
from ricom.phase.ssb import SsbOptions, attach_ssb
from ricom.phase.tcbf import TcbfSettings, reconstruct_tcbf
from ricom.simulators.events import write_events
from ricom.simulators.specimen import (
    SimulationParams,
    detector_calibration,
    projected_potential,
    simulate,
    simulate_chunks,
)
from ricom.tools.report_measures import Kernel, image_row, images_for, method_name, relative_noise

FIT_KEYS = ("defocus_A", "defocus_A_sigma", "astigmatism_A", "astigmatism_angle_deg", "rotation_deg", "fit_rms_px")


@dataclass(frozen=True)
class MethodsConfig:
    """What `methods_study` computes.

    Parameters
    ----------
    scan_shape, detector_shape : (int, int)
        Of the simulated scans.
    dose_e_per_probe : float
        The full dose (electrons per probe position) written as events.
    dwell_ns : float
        Dwell per position; the events arrive uniformly within it.
    fractions : tuple of float
        Doses shown, as fractions of the full dose: the acceptance time is
        ``fraction × dwell_ns`` (1 = every electron).
    defoci_A : tuple of float
        One scan per defocus (Å, > 0 underfocus); 0 is the paper's in-focus comparison,
        a defocus of 100–300 Å is where tcBF works.
    convergence_mrad : float
        Probe semi-angle (simulator and SSB).
    kernels : tuple of (int, (float, float) or None)
        riCOM kernels (size, band-pass in cycles per scan pixel).
    ssb_bin_factor : int
        SSB's detector binning.
    """

    scan_shape: tuple[int, int] = (40, 40)
    detector_shape: tuple[int, int] = (40, 40)
    dose_e_per_probe: float = 1000.0
    dwell_ns: float = 1000.0
    fractions: tuple[float, ...] = (1.0, 0.1, 0.01)
    defoci_A: tuple[float, ...] = (0.0, 100.0)
    convergence_mrad: float = 20.0
    kernels: tuple[Kernel, ...] = ((21, None), (61, None), (61, (0.05, 0.25)))
    ssb_bin_factor: int = 2

    @classmethod
    def quick(cls) -> MethodsConfig:
        """A 32² scan (the tests' size)."""
        return cls(scan_shape=(32, 32))

    def methods(self) -> list[str]:
        """Image keys in the order of the paper's figure: ADF, SSB, tcBF, riCOM."""
        return ["vadf", "ssb", "tcbf", *(method_name(n, bp) for n, bp in self.kernels)]

    def steps(self) -> int:
        """Progress steps of `methods_study`: every dose of every scan, and the noiseless one."""
        return len(self.defoci_A) * (len(self.fractions) + 1)


def fraction_label(fraction: float) -> str:
    """``full dose``, ``1/10 dose``, ``1/100 dose`` (other fractions as ``0.3× dose``).

    >>> fraction_label(1.0), fraction_label(0.01)
    ('full dose', '1/100 dose')
    """
    if fraction >= 1:
        return "full dose"
    inverse = 1 / fraction
    return f"1/{round(inverse)} dose" if abs(inverse - round(inverse)) < 1e-6 else f"{fraction:g}× dose"


def event_patterns(path: str, acceptance_ns: float | None) -> tuple[np.ndarray, float]:
    """The 4D counts ``(scan_y, scan_x, det_y, det_x)`` made by the events of ``path`` that
    arrived within ``acceptance_ns`` (read by ricom's event reader with that acceptance
    time), and their mean number per position.  An event belongs to the pixel whose centre
    is nearest, as in SSB."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the reader's note of the dose kept: measured here
        source = open_input(path, acceptance_ns=acceptance_ns)
        (sy, sx), (dy, dx) = source.scan_shape, source.detector_shape
        counts = np.zeros(sy * sx * dy * dx, np.int64)
        try:
            for chunk in source.chunks(1 << 20):
                ev = EventPatterns.of(chunk, (sy, sx), (dy, dx), None)  # the acceptance is the reader's
                ok = (ev.positions >= 0) & (ev.pixels >= 0)
                counts += np.bincount(ev.positions[ok] * (dy * dx) + ev.pixels[ok], minlength=counts.size)
        finally:
            source.close()
    return counts.reshape(sy, sx, dy, dx).astype(np.uint32), float(counts.sum()) / (sy * sx)


def tcbf_fit(reducer) -> dict:
    """The fitted aberrations of a tcBF reducer (`FIT_KEYS`)."""
    r = reducer.get_results()
    return {k: float(r[k]) for k in FIT_KEYS}


def given_tcbf(fit: dict) -> TcbfSettings:
    """tcBF settings that apply a fit's aberrations and rotation at any dose."""
    return TcbfSettings(fit="given", defocus_A=fit["defocus_A"], astigmatism_A=fit["astigmatism_A"],
                        astigmatism_angle_deg=fit["astigmatism_angle_deg"], rotation_deg=fit["rotation_deg"])


class _Scan:
    """One simulated specimen: its calibration, its events and the images of every method."""

    def __init__(self, cfg: MethodsConfig, defocus_A: float, seed: int, folder: str) -> None:
        self.cfg, self.defocus_A = cfg, float(defocus_A)
        self.params = SimulationParams(scan_shape=cfg.scan_shape, detector_shape=cfg.detector_shape,
                                       convergence_mrad=cfg.convergence_mrad, defocus_A=self.defocus_A,
                                       dose_e_per_probe=cfg.dose_e_per_probe, seed=seed)
        pixel_mrad, self.centre = detector_calibration(self.params)
        self.calibration = Calibration(self.params.step_A, pixel_mrad, self.params.energy_keV)
        self.geometry = DetectorGeometry(center_yx=self.centre)
        self.truth = projected_potential(self.params, self.params.scan_shape, self.params.step_A)
        self.path = os.path.join(folder, f"specimen_{self.defocus_A:g}A.h5")
        cal = {"step_A": self.params.step_A, "pixel_size_mrad": pixel_mrad, "energy_keV": self.params.energy_keV,
               "center_yx": list(self.centre)}
        self.events = write_events(self.path, simulate_chunks(self.params, 8), self.params.scan_shape,
                                   self.params.detector_shape, "h5", dwell_ns=cfg.dwell_ns, seed=seed,
                                   calibration=cal)["n_events"]
        self.ssb_options = SsbOptions(cfg.convergence_mrad, defocus_A=self.defocus_A, bin_factor=cfg.ssb_bin_factor)

    def images(self, data, tcbf: TcbfSettings, frames: np.ndarray, **run_args) -> tuple[dict, object]:
        """Every method's image of ``data`` (riCOM, vADF and SSB in one pass) and tcBF of
        ``frames``; returns them in `MethodsConfig.methods` order and the tcBF reducer."""
        ssb = []
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the event reader's note of the dose kept
            made, _ = images_for(data, self.cfg.kernels, before_run=lambda rec, _src: ssb.append(
                attach_ssb(rec, self.ssb_options)), **run_args)
        made["ssb"] = ssb[0].image()
        reducer = reconstruct_tcbf(frames, tcbf, self.calibration, self.geometry)
        made["tcbf"] = reducer.get_results()["tcbf"]
        return {m: made[m] for m in self.cfg.methods()}, reducer

    def dose_row(self, fraction: float, shifts: TcbfSettings | None) -> tuple[dict, TcbfSettings]:
        """The row of one acceptance time; the full-dose row fits the tcBF shifts the others use."""
        acceptance = None if fraction >= 1 else fraction * self.cfg.dwell_ns
        frames, per_probe = event_patterns(self.path, acceptance)
        own = tcbf_fit(reconstruct_tcbf(frames, TcbfSettings(fit="auto"), self.calibration, self.geometry))
        shifts = shifts or given_tcbf(own)
        images, _ = self.images(self.path, shifts, frames, source_options={"acceptance_ns": acceptance})
        row = image_row(fraction_label(fraction), images, self.truth, dose=per_probe)
        row.update(fraction=fraction, acceptance_ns=acceptance, e_per_probe=per_probe, tcbf_fit_at_this_dose=own)
        return row, shifts

    def noiseless_row(self, shifts: TcbfSettings) -> dict:
        """The same specimen without noise (patterns as fractions of the beam): the reference of the noise."""
        sim = simulate(replace(self.params, dose_e_per_probe=None))
        images, _ = self.images(sim.data, shifts, sim.data, step_A=self.calibration.step_A,
                                pixel_size_mrad=self.calibration.pixel_size_mrad,
                                energy_keV=self.calibration.energy_keV, center_yx=self.centre)
        row = image_row("noiseless", images, self.truth)
        row.update(fraction=None, acceptance_ns=None, e_per_probe=None, tcbf_fit_at_this_dose=None)
        return row


def scan_study(cfg: MethodsConfig, defocus_A: float, seed: int, folder: str, step=None) -> dict:
    """Every method at every dose of one specimen (see the module docstring)."""
    step = step or (lambda n=1, note=None: None)
    scan = _Scan(cfg, defocus_A, seed, folder)
    rows, shifts = [], None
    for fraction in cfg.fractions:
        step(1, f"Fig. 6 at {defocus_A:g} Å defocus, {fraction_label(fraction)}")
        row, shifts = scan.dose_row(fraction, shifts)
        rows.append(row)
    step(1, f"Fig. 6 at {defocus_A:g} Å defocus, noiseless")
    reference = scan.noiseless_row(shifts)
    for row in rows:
        row["relative_noise"] = {m: relative_noise(img, reference["images"][m]) for m, img in row["images"].items()}
    reference["relative_noise"] = None
    full = rows[0]["tcbf_fit_at_this_dose"]
    return {"defocus_A": scan.defocus_A, "scan_shape": list(cfg.scan_shape), "methods": cfg.methods(),
            "n_events": scan.events, "dwell_ns": cfg.dwell_ns, "step_A": scan.calibration.step_A,
            "tcbf_fit": {**full, "true_defocus_A": scan.defocus_A,
                         "error_A": full["defocus_A"] - scan.defocus_A},
            "ssb_defocus_A": scan.defocus_A, "rows": [*rows, reference]}


def methods_study(cfg: MethodsConfig, seed: int = 0, step=None, folder: str | None = None) -> dict:
    """`scan_study` for every defocus of ``cfg``; the event files go to ``folder`` (default:
    a temporary folder, removed afterwards).  ``step(1, note)`` is called before each dose."""
    if folder is not None:
        os.makedirs(folder, exist_ok=True)
        return {"scans": [scan_study(cfg, d, seed, folder, step) for d in cfg.defoci_A]}
    with tempfile.TemporaryDirectory(prefix="ricom-report-") as tmp:
        return {"scans": [scan_study(cfg, d, seed, tmp, step) for d in cfg.defoci_A]}


def method_table(study: dict) -> list[dict]:
    """Flat rows (defocus, dose, method, correlation, relative noise) of a `methods_study`."""
    out = []
    for scan in study["scans"]:
        for row in scan["rows"]:
            for m in scan["methods"]:
                c = row["correlation"][m]
                noise = row["relative_noise"][m] if row["relative_noise"] else None
                out.append({"defocus_A": scan["defocus_A"], "dose": row["label"], "e_per_probe": row["e_per_probe"],
                            "method": m, "r": c["r"], "r_interior": c["r_interior"],
                            "relative_noise": noise if noise is None or math.isfinite(noise) else None})
    return out
