"""The seed paper's analyses on the project's own data: `make_report` and ``ricom report``.

Three questions decide how a user picks a kernel; each gets a figure and the numbers
behind it (Yu et al., *Microscopy and Microanalysis* 2022, Figures 2, 6 and 7):

1. **Kernel spectra** — the radially averaged frequency response of n×n kernels next to
   the line-integration approximation, and what a band-pass folded into the kernel does
   (`ricom.engine.kernels.frequency_response`).
2. **Dose series** — riCOM (several kernels, with and without band-pass), iCOM and the
   virtual ADF/BF of the built-in SrTiO3 specimen at several doses, their radially
   averaged power spectra, and their Pearson correlation with the simulator's projected
   potential.
3. **Vacuum pore** — a line profile through a pore for a small and a large kernel: a small
   kernel keeps only high frequencies, so the pore centre returns to the specimen's mean
   level (a phantom intensity) while a large kernel keeps the pore dark.

Every image comes from the engine through the public API (`ricom.api.reconstruct_run`,
`Reconstruction.update_settings`, `Snapshot.signal`); this module only measures images.
The figures are drawn by `ricom.tools.report_figures`.

Examples
--------
>>> import numpy as np
>>> from ricom.tools.report import pore_metrics
>>> yy, xx = np.indices((21, 21))
>>> flat = np.where(np.hypot(yy - 10, xx - 10) < 6, 0.0, 1.0)   # a dark pore, no phantom
>>> round(pore_metrics(flat, (10, 10), 6.0)["phantom"], 3)
0.0
"""
from __future__ import annotations

import itertools
import json
import math
import os
import time
from dataclasses import asdict, dataclass, field, replace

import numpy as np

from ricom.api import open_input, reconstruct_run
from ricom.core.params import KernelSettings, max_kernel_size
from ricom.core.sidecar import find_sidecar
from ricom.engine.kernels import frequency_response
from ricom.simulators.specimen import SimulationParams, projected_potential
from ricom.sources.demo import SimulatorSource
from ricom.tools.report_figures import write_json, write_report

Kernel = tuple[int, "tuple[float, float] | None"]


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
    seed: int = 0

    @classmethod
    def quick(cls) -> ReportConfig:
        """A reduced report for tests: a 32² scan at two doses, the full pore study."""
        return cls(scan_shape=(32, 32), doses=(1e3, None), kernels=((5, None), (61, None), (61, (0.05, 0.25))))


# ----------------------------------------------------------------------------- measures
def method_name(size: int, band_pass=None) -> str:
    """Key of a riCOM image: ``ricom_21``, ``ricom_61_bp``.

    >>> method_name(61, (0.05, 0.25))
    'ricom_61_bp'
    """
    return f"ricom_{size}" + ("_bp" if band_pass else "")


def peak_frequency(spectrum: dict) -> float:
    """Frequency (cycles per scan pixel) where a `frequency_response` result peaks."""
    return float(spectrum["k"][int(np.argmax(spectrum["response"]))])


def band_pass_suppression(plain: dict, filtered: dict, band: tuple[float, float]) -> dict:
    """Mean response of the filtered kernel over that of the plain one, per band.

    ``low`` averages over 0 < k < 0.8·k_min, ``pass`` over k_min·1.2 < k < k_max·0.8,
    ``high`` over k > 1.2·k_max (the filter edge is softened by cropping the kernel).
    """
    k = np.asarray(plain["k"])
    a, b = np.asarray(plain["response"]), np.asarray(filtered["response"])
    lo, hi = band
    bands = {"low": (k > 0) & (k < 0.8 * lo), "pass": (k > 1.2 * lo) & (k < 0.8 * hi), "high": k > 1.2 * hi}
    return {name: float(b[m].mean() / a[m].mean()) if m.any() else float("nan") for name, m in bands.items()}


def radial_power_spectrum(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Radially averaged power spectrum of a Hann-windowed, mean-free image.

    Returns the bin frequencies (cycles per scan pixel, bins 1/N wide for the shorter
    side N, up to 0.5) and the power per bin, normalised to sum 1 over k > 0.

    >>> k, p = radial_power_spectrum(np.cos(2 * np.pi * 0.25 * np.arange(32))[None, :] * np.ones((32, 1)))
    >>> float(k[np.argmax(p)])
    0.25
    """
    img = np.asarray(image, np.float64)
    img = img - img.mean()
    window = np.outer(np.hanning(img.shape[0]), np.hanning(img.shape[1]))
    power = np.abs(np.fft.fft2(img * window)) ** 2
    ky = np.fft.fftfreq(img.shape[0])[:, None]
    kx = np.fft.fftfreq(img.shape[1])[None, :]
    n = min(img.shape)
    bins = np.rint(np.hypot(kx, ky) * n).astype(int)
    nb = n // 2 + 1
    sel = bins < nb
    sums = np.bincount(bins[sel], power[sel], minlength=nb)[1:]
    counts = np.bincount(bins[sel], minlength=nb)[1:]
    spec = sums / np.maximum(counts, 1)
    total = spec.sum()
    return np.arange(1, nb) / n, spec / total if total > 0 else spec


def correlation(image: np.ndarray, truth: np.ndarray, margin: int = 0) -> float:
    """Pearson correlation of two images, optionally without a border of ``margin`` pixels."""
    if margin:
        image, truth = image[margin:-margin, margin:-margin], truth[margin:-margin, margin:-margin]
    a, b = np.ravel(image), np.ravel(truth)
    if a.std() == 0 or b.std() == 0:
        return float("nan")
    return float(np.corrcoef(a, b)[0, 1])


def relative_noise(image: np.ndarray, reference: np.ndarray) -> float:
    """rms of ``image − s·reference`` over the rms of ``s·reference`` (both mean-free).

    ``s`` is the least-squares scale, so counts compare with fractions of the beam.

    >>> ref = np.arange(16.0).reshape(4, 4)
    >>> relative_noise(3 * ref + 7, ref)
    0.0
    """
    a = np.asarray(image, np.float64) - np.mean(image)
    b = np.asarray(reference, np.float64) - np.mean(reference)
    bb = float((b * b).sum())
    if bb == 0:
        return float("nan")
    s = float((a * b).sum()) / bb
    return float(np.linalg.norm(a - s * b) / (abs(s) * math.sqrt(bb))) if s else float("inf")


def pore_metrics(image: np.ndarray, centre_yx, radius_px: float, margin_px: float = 2.0) -> dict:
    """Levels of an image inside and around a circular pore.

    ``centre`` is the mean over r < 0.4 R, ``rim`` over 0.7 R ≤ r < R (inside the pore,
    next to its edge), ``outside`` over r ≥ R + ``margin_px``.  ``phantom`` =
    (centre − rim) / (outside − rim): 0 when the pore is flat (or darkest at its
    centre, < 0), 1 when its centre is as bright as the specimen around it.
    """
    yy, xx = np.indices(image.shape)
    r = np.hypot(yy - centre_yx[0], xx - centre_yx[1])
    centre = float(image[r < 0.4 * radius_px].mean())
    rim = float(image[(r >= 0.7 * radius_px) & (r < radius_px)].mean())
    outside = float(image[r >= radius_px + margin_px].mean())
    span = outside - rim
    return {"centre": centre, "rim": rim, "outside": outside,
            "phantom": (centre - rim) / span if span != 0 else float("nan")}


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


def images_for(source, kernels, first_kernel: Kernel | None = None, **setting_args) -> tuple[dict, object]:
    """riCOM for every kernel, iCOM, vADF and vBF of one source (one pass over the data).

    The first kernel is reconstructed live; the others by `Reconstruction.update_settings`,
    which rebuilds the image from the stored per-position moments.
    """
    size, bp = first_kernel or kernels[0]
    _, rec, _ = reconstruct_run(source, kernel_size=size, band_pass=bp, **setting_args)
    images = {}
    for size, bp in kernels:
        rec.update_settings(rec.settings.with_(kernel=KernelSettings(size, tuple(bp) if bp else None)))
        images[method_name(size, bp)] = rec.snapshot().ricom
    snap = rec.snapshot()
    for name in ("icom", "vadf", "vbf"):
        images[name] = snap.signal(name)
    return images, snap


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


def image_row(label: str, images: dict, truth: np.ndarray | None, dose=None) -> dict:
    """One row of the image figure: images, their spectra and (with a truth) correlations."""
    spectra = {m: radial_power_spectrum(img) for m, img in images.items()}
    k = next(iter(spectra.values()))[0]
    margin = max(1, min(truth.shape) // 8) if truth is not None else 0
    corr = None if truth is None else {
        m: {"r": correlation(img, truth), "r_interior": correlation(img, truth, margin)} for m, img in images.items()}
    return {"label": label, "dose": dose, "images": images, "correlation": corr, "interior_margin_px": margin,
            "power_spectra": {"k": k.tolist(), **{m: s[1].tolist() for m, s in spectra.items()}}}


def pore_study(cfg: ReportConfig) -> dict:
    """riCOM of a specimen with a vacuum pore for `ReportConfig.pore_kernels`.

    The pore (radius ``pore_radius_A``) sits at the scan centre.  Returns the images, the
    line profile along the centre row (mean of the two middle rows for even scans),
    radial profiles and `pore_metrics` of each kernel, of iCOM and of the ground truth.
    """
    params = SimulationParams(scan_shape=cfg.pore_scan_shape, detector_shape=cfg.detector_shape,
                              pore_radius_A=cfg.pore_radius_A, dose_e_per_probe=cfg.pore_dose, seed=cfg.seed)
    source = SimulatorSource(params)
    kernels = [(n, None) for n in cfg.pore_kernels]
    images, _ = images_for(source, kernels)
    images = {m: images[m] for m in [method_name(n) for n in cfg.pore_kernels] + ["icom"]}
    images["truth"] = source.ground_truth_potential()
    sy, sx = cfg.pore_scan_shape
    centre = ((sy - 1) / 2, (sx - 1) / 2)
    radius_px = cfg.pore_radius_A / params.step_A
    rows = sorted({math.floor(centre[0]), math.ceil(centre[0])})
    x_A = (np.arange(sx) - centre[1]) * params.step_A
    yy, xx = np.indices(cfg.pore_scan_shape)
    rbin = np.floor(np.hypot(yy - centre[0], xx - centre[1])).astype(int)
    n_r = int(min(centre)) + 1
    out = {"scan_shape": [sy, sx], "step_A": params.step_A, "radius_A": cfg.pore_radius_A, "dose": cfg.pore_dose,
           "kernels": list(cfg.pore_kernels), "kernel_half_width_A": {method_name(n): (n - 1) / 2 * params.step_A
                                                                      for n in cfg.pore_kernels},
           "x_A": x_A.tolist(), "r_A": (np.arange(n_r) * params.step_A).tolist(),
           "profiles": {}, "radial_profiles": {}, "metrics": {}, "images": images}
    for m, img in images.items():
        out["profiles"][m] = img[rows].mean(axis=0).tolist()
        out["radial_profiles"][m] = (np.bincount(rbin.ravel(), img.ravel())[:n_r]
                                     / np.bincount(rbin.ravel())[:n_r]).tolist()
        out["metrics"][m] = pore_metrics(img, centre, radius_px)
    return out


def findings(spectra: dict, pore: dict | None) -> dict:
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
    seconds: float = 0.0
    figures: list = field(default_factory=list)

    def to_json(self) -> dict:
        series = {**self.series, "rows": [{k: v for k, v in r.items() if k != "images"} for r in self.series["rows"]]}
        pore = None if self.pore is None else {k: v for k, v in self.pore.items() if k != "images"}
        return {"input": self.input, "seconds": self.seconds, "config": asdict(self.config),
                "figures": self.figures, "findings": self.findings, "kernel_spectra": self.spectra,
                "images": series, "pore": pore, "ground_truth": ground_truth_table(self.series)}


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
        ``"demo"`` (the dose series and the pore study on the built-in specimen) or an
        input of your own (its images and spectra with several kernels; no dose series,
        no pore; a ground truth only for files of ``ricom simulate``, see `simulated_truth`).
    out_dir : str, optional
        Folder for the PNG figures, ``report.json`` and ``report.md`` (created).
    config : ReportConfig, optional
    source_options, **setting_args
        For an input of your own: as `ricom.reconstruct` (``scan_shape``, ``step_A``,
        ``center_yx`` …).
    progress : ricom.core.progress.Progress, optional
        Told of each step done (the spectra, each dose, the pore: ``len(doses) + 2`` for the
        demo, else 2), with a note of what it does now (``update(n, note)``).

    Examples
    --------
    >>> from ricom.tools.report import ReportConfig, make_report
    >>> cfg = ReportConfig(scan_shape=(16, 16), doses=(None,), kernels=((5, None),), pore_kernels=(5, 41))
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
        step(1, "vacuum pore")
        pore = pore_study(cfg)
    else:
        step(1, "images")
        source = open_input(data, **(source_options or {}))
        name = data if isinstance(data, str) else type(data).__name__
        limit = max_kernel_size(source.scan_shape or (1,))
        kernels = tuple((n, bp) for n, bp in cfg.kernels if n <= limit) or ((min(5, limit), None),)
        cfg = replace(cfg, kernels=kernels, doses=())
        images, _ = images_for(source, kernels, **setting_args)
        truth = simulated_truth(data, images["icom"].shape)
        series, pore = {"scan_shape": list(images["icom"].shape), "rows": [image_row(name, images, truth)]}, None
    rep = Report(name, cfg, spectra, series, pore, findings(spectra, pore))
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
