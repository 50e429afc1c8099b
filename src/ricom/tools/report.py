"""The seed paper's analyses on the project's own data: `make_report` and ``ricom report``.

Four questions decide how a user picks a kernel and a method; each gets a figure and the
numbers behind it (Yu et al., *Microscopy and Microanalysis* 2022, Figures 2, 6 and 7):

1. **Kernel spectra** — the radially averaged frequency response of n×n kernels next to
   the line-integration approximation, and what a band-pass folded into the kernel does
   (`ricom.engine.kernels.frequency_response`).
2. **Dose series** — riCOM (several kernels, with and without band-pass), iCOM and the
   virtual ADF/BF of the built-in SrTiO3 specimen at several doses, their radially
   averaged power spectra, and their Pearson correlation with the simulator's projected
   potential.
3. **Methods** (Fig. 6 complete) — ADF, SSB, tcBF and riCOM on the same electrons at
   full, 1/10 and 1/100 dose, the dose lowered by the acceptance time of event data, in
   focus and defocused (`ricom.tools.report_methods`).
4. **Vacuum pore** (Fig. 7) — a line profile through a pore for small and large kernels
   and the other methods: a small kernel keeps only high frequencies, so the pore centre
   returns to the specimen's mean level (a phantom intensity) while a large kernel keeps
   the pore dark (`ricom.tools.report_pore`).

Every image comes from the library through its public API (`ricom.api.reconstruct_run`,
`Reconstruction.update_settings`, `Snapshot.signal`, `ricom.phase`); the report only
measures images (`ricom.tools.report_measures`).  The figures are drawn by
`ricom.tools.report_figures` and `ricom.tools.report_methods_figures`.

The measures (`pore_metrics`, …) are re-exported here; their examples are in
`ricom.tools.report_measures`.
"""
from __future__ import annotations

import itertools
import json
import os
import time
from dataclasses import asdict, dataclass, field, replace

import numpy as np

from ricom.api import open_input
from ricom.core.params import KernelSettings, max_kernel_size
from ricom.core.sidecar import find_sidecar
from ricom.engine.kernels import frequency_response
from ricom.simulators.specimen import SimulationParams, projected_potential
from ricom.sources.demo import SimulatorSource
from ricom.tools.report_figures import write_json, write_report
from ricom.tools.report_measures import (  # noqa: F401 - re-exported: the report's measures
    Kernel,
    band_pass_suppression,
    correlation,
    image_row,
    images_for,
    method_name,
    peak_frequency,
    pore_metrics,
    radial_power_spectrum,
    relative_noise,
)
from ricom.tools.report_methods import MethodsConfig, method_table, methods_study
from ricom.tools.report_pore import pore_study


@dataclass(frozen=True)
class ReportConfig:
    """What `make_report` computes.  Defaults finish in well under a minute.

    Parameters
    ----------
    spectrum_sizes : tuple of int
        Kernel sizes whose frequency response is shown (unfiltered).
    band_pass, band_pass_size : (float, float), int
        Band-pass (cycles per scan pixel) folded into a kernel of this size.
    map_size : int
        Size of the map the frequency response is computed on.
    scan_shape, detector_shape : (int, int)
        Scan and detector of the dose series.
    doses : tuple of float or None
        Electrons per probe position; None = noiseless (the reference of the noise figure).
    kernels : tuple of (int, (float, float) or None)
        riCOM kernels of the dose series: size and band-pass.
    pore_scan_shape, pore_radius_A, pore_kernels, pore_dose : see `pore_study`
    methods : MethodsConfig or None
        The methods comparison (Fig. 6 complete); None leaves it out.
    seed : int
        Noise seed of the simulator.
    """

    spectrum_sizes: tuple[int, ...] = (7, 21, 61)
    band_pass: tuple[float, float] = (0.05, 0.25)
    band_pass_size: int = 61
    map_size: int = 256
    scan_shape: tuple[int, int] = (48, 48)
    detector_shape: tuple[int, int] = (64, 64)
    doses: tuple[float | None, ...] = (1e2, 1e3, 1e4, 1e5, None)
    kernels: tuple[Kernel, ...] = ((5, None), (21, None), (61, None), (61, (0.05, 0.25)))
    pore_scan_shape: tuple[int, int] = (64, 64)
    pore_radius_A: float = 3.0
    pore_kernels: tuple[int, ...] = (5, 11, 21, 41)
    pore_dose: float | None = None
    methods: MethodsConfig | None = field(default_factory=MethodsConfig)
    seed: int = 0

    @classmethod
    def quick(cls) -> ReportConfig:
        """A reduced report for tests: 32² scans (two doses; the methods at three), the full pore study."""
        return cls(scan_shape=(32, 32), doses=(1e3, None), kernels=((5, None), (61, None), (61, (0.05, 0.25))),
                   methods=MethodsConfig.quick())

    def steps(self, demo: bool = True) -> int:
        """Progress steps of `make_report`: spectra, doses, methods, pore, figures (else spectra, images, figures)."""
        if not demo:
            return 3
        return len(self.doses) + (self.methods.steps() if self.methods is not None else 0) + 3


# ----------------------------------------------------------------------------- measures
# ----------------------------------------------------------------------------- studies
def kernel_spectra(cfg: ReportConfig) -> dict:
    """Frequency responses for `ReportConfig.spectrum_sizes` and the band-passed kernel."""
    curves = [frequency_response(KernelSettings(n), cfg.map_size) for n in cfg.spectrum_sizes]
    plain = frequency_response(KernelSettings(cfg.band_pass_size), cfg.map_size)
    filtered = frequency_response(KernelSettings(cfg.band_pass_size, tuple(cfg.band_pass)), cfg.map_size)
    for c in [*curves, plain, filtered]:
        c["peak_k"] = peak_frequency(c)
    return {"curves": curves, "peak_k": {str(c["kernel_size"]): c["peak_k"] for c in curves},
            "band_pass": {"kernel_size": cfg.band_pass_size, "band": list(cfg.band_pass), "plain": plain,
                          "filtered": filtered,
                          "ratio_to_plain": band_pass_suppression(plain, filtered, cfg.band_pass)}}


def dose_label(dose) -> str:
    """``1e+03 e/probe`` or ``noiseless``."""
    return "noiseless" if dose is None else f"{dose:.0e} e/probe"


def dose_series(cfg: ReportConfig, step=None) -> dict:
    """Images, power spectra and correlations with the ground truth at every dose
    (``step(1, note)`` is called before each dose: progress)."""
    rows = []
    for dose in cfg.doses:
        if step is not None:
            step(1, f"dose {dose_label(dose)}")
        params = SimulationParams(scan_shape=cfg.scan_shape, detector_shape=cfg.detector_shape,
                                  dose_e_per_probe=dose, seed=cfg.seed)
        source = SimulatorSource(params)
        images, _ = images_for(source, cfg.kernels)
        rows.append(image_row(dose_label(dose), images, source.ground_truth_potential(), dose=dose))
    reference = next((r for r in rows if r["dose"] is None), None)
    for row in rows:
        row["relative_noise"] = {m: relative_noise(img, reference["images"][m])
                                 for m, img in row["images"].items()} if reference is not None else None
    return {"scan_shape": list(cfg.scan_shape), "rows": rows}


def findings(spectra: dict, pore: dict | None, methods: dict | None = None) -> dict:
    """The paper's qualitative findings as booleans, with the numbers they rest on."""
    sizes = sorted(int(s) for s in spectra["peak_k"])
    peaks = [spectra["peak_k"][str(s)] for s in sizes]
    ratio = spectra["band_pass"]["ratio_to_plain"]
    out = {"peak_moves_up_for_smaller_kernels": all(a > b for a, b in itertools.pairwise(peaks)),
           "band_pass_suppresses_both_ends": ratio["low"] < 0.1 and ratio["high"] < 0.1 and ratio["pass"] > 0.8}
    if pore is not None:
        small, large = (pore["metrics"][method_name(n)]["phantom"] for n in (min(pore["kernels"]),
                                                                              max(pore["kernels"])))
        out["small_kernel_phantom_in_pore"] = small > 0.5
        out["large_kernel_no_phantom"] = large < 0.2
    if methods is not None:
        out.update(method_findings(methods))
    return out


def method_findings(methods: dict) -> dict:
    """Findings of the methods comparison: riCOM is less noisy than the virtual ADF at every
    dose in focus; with defocus, SSB (given it) and tcBF (fitting it, within 10 %) correlate
    better with the potential than riCOM at full dose."""
    out = {}
    for scan in methods["scans"]:
        noisy = [r for r in scan["rows"] if r["relative_noise"]]
        ricom = [m for m in scan["methods"] if m.startswith("ricom_")]
        if scan["defocus_A"] == 0:
            out["ricom_less_noisy_than_vadf_in_focus"] = all(
                r["relative_noise"][m] < r["relative_noise"]["vadf"] for r in noisy for m in ricom)
        else:
            fit, full = scan["tcbf_fit"], scan["rows"][0]["correlation"]
            best = max(full[m]["r_interior"] for m in ricom)
            out[f"tcbf_fits_defocus_{scan['defocus_A']:g}A"] = abs(fit["error_A"]) < 0.1 * scan["defocus_A"]
            out[f"ssb_tcbf_beat_ricom_at_{scan['defocus_A']:g}A"] = min(
                full["ssb"]["r_interior"], full["tcbf"]["r_interior"]) > best
    return out


# ----------------------------------------------------------------------------- the report
@dataclass
class Report:
    """Everything `make_report` computed; `to_json` drops the images."""

    input: str
    config: ReportConfig
    spectra: dict
    series: dict
    pore: dict | None
    findings: dict
    methods: dict | None = None
    seconds: float = 0.0
    figures: list = field(default_factory=list)

    def to_json(self) -> dict:
        series = {**self.series, "rows": [{k: v for k, v in r.items() if k != "images"} for r in self.series["rows"]]}
        pore = None if self.pore is None else {k: v for k, v in self.pore.items() if k != "images"}
        methods = None if self.methods is None else {"scans": [
            {**scan, "rows": [{k: v for k, v in r.items() if k != "images"} for r in scan["rows"]]}
            for scan in self.methods["scans"]], "table": method_table(self.methods)}
        return {"input": self.input, "seconds": self.seconds, "config": asdict(self.config),
                "figures": self.figures, "findings": self.findings, "kernel_spectra": self.spectra,
                "images": series, "methods": methods, "pore": pore, "ground_truth": ground_truth_table(self.series)}


def ground_truth_table(series: dict) -> list[dict]:
    """Rows (label, method, r, r_interior) of the correlation with the projected potential."""
    return [{"label": row["label"], "dose": row["dose"], "method": m, **c}
            for row in series["rows"] if row["correlation"] for m, c in row["correlation"].items()]


def make_report(data="demo", out_dir: str | None = None, config: ReportConfig | None = None,
                source_options: dict | None = None, progress=None, **setting_args) -> Report:
    """Compute the report and, with ``out_dir``, write its figures, JSON and index.

    Parameters
    ----------
    data : str, ndarray or Source
        ``"demo"`` (the dose series, the methods and the pore study on the built-in specimen) or an
        input of your own (its images and spectra with several kernels; no dose series,
        no pore; a ground truth only for files of ``ricom simulate``, see `simulated_truth`).
    out_dir : str, optional
        Folder for the PNG figures, ``report.json`` and ``report.md`` (created).
    config : ReportConfig, optional
    source_options, **setting_args
        For an input of your own: as `ricom.reconstruct` (``scan_shape``, ``step_A``,
        ``center_yx`` …).
    progress : ricom.core.progress.Progress, optional
        Told of each step done (`ReportConfig.steps` less the final one: the spectra, each
        dose, each dose of the methods comparison, the pore), with a note of what it does
        now (``update(n, note)``).

    Examples
    --------
    >>> from ricom.tools.report import ReportConfig, make_report
    >>> cfg = ReportConfig(scan_shape=(16, 16), doses=(None,), kernels=((5, None),), pore_kernels=(5, 41),
    ...                    methods=None)
    >>> rep = make_report("demo", config=cfg)
    >>> rep.findings["peak_moves_up_for_smaller_kernels"], rep.findings["small_kernel_phantom_in_pore"]
    (True, True)
    """
    t0 = time.perf_counter()
    cfg = config or ReportConfig()
    step = progress.update if progress is not None else (lambda n=1, note=None: None)
    step(0, "kernel spectra")
    spectra = kernel_spectra(cfg)
    if isinstance(data, str) and data == "demo":
        name, series = "demo", dose_series(cfg, step)
        methods = methods_study(cfg.methods, cfg.seed, step) if cfg.methods is not None else None
        step(1, "vacuum pore")
        pore = pore_study(cfg)
    else:
        step(1, "images")
        source = open_input(data, **(source_options or {}))
        name = data if isinstance(data, str) else type(data).__name__
        limit = max_kernel_size(source.scan_shape or (1,))
        kernels = tuple((n, bp) for n, bp in cfg.kernels if n <= limit) or ((min(5, limit), None),)
        cfg = replace(cfg, kernels=kernels, doses=(), methods=None)
        images, _ = images_for(source, kernels, **setting_args)
        truth = simulated_truth(data, images["icom"].shape)
        series, pore, methods = {"scan_shape": list(images["icom"].shape),
                                 "rows": [image_row(name, images, truth)]}, None, None
    rep = Report(name, cfg, spectra, series, pore, findings(spectra, pore, methods), methods)
    step(1, "figures")
    if out_dir is not None:
        write_report(rep, out_dir)
    rep.seconds = time.perf_counter() - t0
    if out_dir is not None:
        write_json(rep, out_dir)
    return rep


def simulated_truth(data, scan_shape) -> np.ndarray | None:
    """Projected potential of a file written by ``ricom simulate`` (from its ``.ricom.json``), else None."""
    if not isinstance(data, (str, os.PathLike)):
        return None
    path = find_sidecar(os.fspath(data).split(":")[0]) or ""
    try:
        with open(path) as fh:
            params = json.load(fh)["simulation"]["params"]
        params = SimulationParams(**{k: tuple(v) if isinstance(v, list) else v for k, v in params.items()})
    except (OSError, KeyError, TypeError, ValueError):
        return None
    if tuple(params.scan_shape) != tuple(scan_shape):
        return None
    return projected_potential(params, params.scan_shape, params.step_A)
