"""Fig. 7 of the paper: a vacuum pore seen by riCOM with small and large kernels, and by
iCOM, the virtual ADF, SSB and tcBF of the same scan (`pore_study`).

A small kernel keeps only high frequencies, so the pore centre returns to the specimen's
mean level (a phantom intensity) while a large kernel keeps the pore dark; the other
methods are shown for comparison.  Every image is made by the library
(`ricom.tools.report_measures.images_for`, `ricom.phase`); measured by `pore_metrics`.
"""
from __future__ import annotations

import math

import numpy as np

from ricom.phase.ssb import SsbOptions, attach_ssb
from ricom.phase.tcbf import TcbfSettings, attach_tcbf
from ricom.simulators.specimen import SimulationParams
from ricom.sources.demo import SimulatorSource
from ricom.tools.report_measures import images_for, method_name, pore_metrics

PORE_OTHERS = ("icom", "vadf", "ssb", "tcbf")
"""The images of the pore besides riCOM (the ground truth is added as ``truth``)."""
SSB_BIN_FACTOR = 2
"""SSB's detector binning in the pore study."""


def pore_study(cfg) -> dict:
    """riCOM of a specimen with a vacuum pore for ``cfg.pore_kernels`` (a `ricom.tools.report.ReportConfig`),
    and iCOM, vADF, SSB and tcBF of the same scan (one pass: SSB and tcBF are reducers beside riCOM).

    The pore (radius ``pore_radius_A``) sits at the scan centre.  Returns the images, the
    line profile along the centre row (mean of the two middle rows for even scans),
    radial profiles and `pore_metrics` of each kernel, of iCOM, vADF, SSB, tcBF and of the
    ground truth.  The scan is in focus (as the paper's Fig. 7): SSB is given defocus 0, tcBF
    fits its shifts on the whole scan.
    """
    params = SimulationParams(scan_shape=cfg.pore_scan_shape, detector_shape=cfg.detector_shape,
                              pore_radius_A=cfg.pore_radius_A, dose_e_per_probe=cfg.pore_dose, seed=cfg.seed)
    source = SimulatorSource(params)
    kernels = [(n, None) for n in cfg.pore_kernels]
    phase = {}

    def attach(rec, _source) -> None:
        phase["ssb"] = attach_ssb(rec, SsbOptions(params.convergence_mrad, bin_factor=SSB_BIN_FACTOR))
        phase["tcbf"] = attach_tcbf(rec, TcbfSettings(fit="first", fit_rows=params.scan_shape[0]))

    images, _ = images_for(source, kernels, before_run=attach)
    images["ssb"], images["tcbf"] = phase["ssb"].image(), phase["tcbf"].get_results()["tcbf"]
    images = {m: images[m] for m in [method_name(n) for n in cfg.pore_kernels] + list(PORE_OTHERS)}
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
