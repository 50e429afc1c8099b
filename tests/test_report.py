"""`ricom report`: the paper's qualitative findings on the project's own simulator.

A reduced report (`ReportConfig.quick`: 32² dose series at 1e3 e/probe and noiseless,
the full 64² pore study) is computed once; the checks read its numbers.  They pin the
seed paper's findings (Yu et al. 2022): Fig. 2 — the response peak moves to higher
frequency for smaller kernels and a band-pass suppresses both ends; Fig. 6 — riCOM is
less noisy than the virtual ADF at the same dose; Fig. 7 — a small kernel fills a vacuum
pore with a phantom intensity, a large one does not.
"""
from __future__ import annotations

import json

import numpy as np
import pytest

from ricom.cli.main import main
from ricom.tools.report import ReportConfig, make_report, method_name, pore_metrics, radial_power_spectrum


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    rep = make_report("demo", str(out), ReportConfig.quick())
    return rep, out


def test_writes_figures_json_and_index(report):
    rep, out = report
    names = {f["file"] for f in rep.figures}
    assert names == {"kernel_spectra.png", "images.png", "power_spectra.png", "correlation.png", "pore_profile.png"}
    for name in names:
        assert (out / name).read_bytes()[:4] == b"\x89PNG"
    data = json.loads((out / "report.json").read_text())
    assert all(f["caption"] for f in data["figures"])
    assert set(data["findings"]) == {"peak_moves_up_for_smaller_kernels", "band_pass_suppresses_both_ends",
                                     "small_kernel_phantom_in_pore", "large_kernel_no_phantom"}
    assert all(data["findings"].values())
    md = (out / "report.md").read_text()
    assert all(f"]({n})" in md for n in names)
    assert rep.seconds < 60


def test_spectrum_peak_moves_to_higher_frequency_for_smaller_kernels(report):
    spectra = report[0].spectra
    sizes = sorted(int(n) for n in spectra["peak_k"])
    peaks = [spectra["peak_k"][str(n)] for n in sizes]
    assert sizes == [7, 21, 61]
    assert peaks[0] > peaks[1] > peaks[2]
    # the line-integration estimate (1 − cos(r·2πk))/k peaks near k ≈ 0.37 / r, r = (n − 1) / 2
    for n, k in zip(sizes, peaks, strict=True):
        assert 0.28 < k * (n - 1) / 2 < 0.45, (n, k)
    for curve in spectra["curves"]:
        k = np.asarray(curve["k"])
        assert abs(k[np.argmax(curve["approximation"])] - curve["peak_k"]) <= 0.03


def test_band_pass_kernel_suppresses_both_ends(report):
    bp = report[0].spectra["band_pass"]
    ratio = bp["ratio_to_plain"]
    assert ratio["low"] < 0.05 and ratio["high"] < 0.05
    assert 0.9 < ratio["pass"] < 1.1
    k = np.asarray(bp["filtered"]["k"])
    resp = np.asarray(bp["filtered"]["response"])
    lo, hi = bp["band"]
    passing = resp[(k > 1.2 * lo) & (k < 0.8 * hi)].mean()
    assert resp[(k > 0) & (k < 0.8 * lo)].mean() < 0.25 * passing
    assert resp[k > 1.2 * hi].mean() < 0.02 * passing
    assert lo <= bp["filtered"]["peak_k"] <= hi


def test_small_kernel_fills_the_pore_and_a_large_one_does_not(report):
    pore = report[0].pore
    small, large = method_name(min(pore["kernels"])), method_name(max(pore["kernels"]))
    assert (min(pore["kernels"]), max(pore["kernels"])) == (5, 41)
    ms, ml, mt = pore["metrics"][small], pore["metrics"][large], pore["metrics"]["truth"]
    # small kernel: the centre climbs from the dark rim back to the specimen's level
    assert ms["centre"] > ms["rim"] and ms["phantom"] > 0.7
    # large kernel: the centre is no brighter than the rim (the pore stays dark)
    assert ml["centre"] <= ml["rim"] and ml["phantom"] < 0.1
    assert mt["centre"] == mt["rim"] == 0.0 and mt["outside"] > 0
    # the phantom shrinks as the kernel grows
    phantoms = [pore["metrics"][method_name(n)]["phantom"] for n in pore["kernels"]]
    assert phantoms == sorted(phantoms, reverse=True)
    # the same in the line profile: centre against the rim (0.85 R from the centre)
    x = np.asarray(pore["x_A"])
    centre, rim = np.abs(x) < 0.2 * pore["radius_A"], np.abs(np.abs(x) - 0.85 * pore["radius_A"]) < 0.15
    rise = {m: np.mean(np.asarray(pore["profiles"][m])[centre]) - np.mean(np.asarray(pore["profiles"][m])[rim])
            for m in (small, large)}
    assert rise[small] > 0 > rise[large]


def test_ground_truth_correlation_and_dose(report):
    rows = report[0].series["rows"]
    noiseless = next(r for r in rows if r["dose"] is None)
    for m in ("ricom_5", "ricom_61", "ricom_61_bp", "icom", "vadf"):
        assert noiseless["correlation"][m]["r_interior"] > 0.8, m
    assert noiseless["correlation"]["vbf"]["r_interior"] < -0.8
    noisy = next(r for r in rows if r["dose"] == 1e3)
    # riCOM integrates the whole pattern: less noisy than the virtual ADF at the same dose
    assert noisy["relative_noise"]["ricom_61"] < noisy["relative_noise"]["vadf"]
    assert noisy["relative_noise"]["ricom_61_bp"] < noisy["relative_noise"]["ricom_61"]


def test_measures():
    yy, xx = np.indices((41, 41))
    r = np.hypot(yy - 20, xx - 20)
    filled = np.where(r < 10, np.where(r < 7, 1.0, -1.0), 1.0)  # dark ring, centre as bright as outside
    assert pore_metrics(filled, (20, 20), 10.0)["phantom"] == pytest.approx(1.0)
    k, p = radial_power_spectrum(np.sin(2 * np.pi * 0.125 * xx[:32, :32]))
    assert k[np.argmax(p)] == pytest.approx(0.125) and p.sum() == pytest.approx(1.0)


def test_cli_on_a_file_of_your_own(tmp_path):
    assert main(["simulate", "-o", str(tmp_path / "sim.npy"), "--scan-shape", "16", "16", "--dose", "1e4"]) == 0
    out = tmp_path / "rep"
    assert main(["report", str(tmp_path / "sim.npy"), "-o", str(out)]) == 0
    data = json.loads((out / "report.json").read_text())
    assert data["pore"] is None and data["images"]["rows"][0]["label"].endswith("sim.npy")
    assert data["ground_truth"], "a ricom-simulated file brings its projected potential"
    assert (out / "images.png").exists() and not (out / "pore_profile.png").exists()


def test_cli_rejects_bad_doses(tmp_path, capsys):
    assert main(["report", "-o", str(tmp_path / "r"), "--doses", "1e3,abc"]) == 2
    assert "--doses" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()
