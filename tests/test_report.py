"""`ricom report`: the paper's qualitative findings on the project's own simulator.

A reduced report (`ReportConfig.quick`: 32² dose series at 1e3 e/probe and noiseless,
32² event scans for the methods comparison, the full 64² pore study) is computed once;
the checks read its numbers.  They pin the seed paper's findings (Yu et al. 2022):
Fig. 2 — the response peak moves to higher frequency for smaller kernels and a band-pass
suppresses both ends; Fig. 6 — riCOM is less noisy than the virtual ADF at the same dose,
every method loses correlation as the acceptance time cuts the dose, tcBF finds the
defocus; Fig. 7 — a small kernel fills a vacuum pore with a phantom intensity, a large
one does not.
"""
from __future__ import annotations

import json

import numpy as np
import pytest

from ricom.cli.main import main
from ricom.tools.report import ReportConfig, make_report, method_name, pore_metrics, radial_power_spectrum
from ricom.tools.report_methods import MethodsConfig, event_patterns, methods_study

FIGURES = {"kernel_spectra.png", "images.png", "power_spectra.png", "correlation.png", "pore_profile.png",
           "methods_0A.png", "methods_100A.png", "methods_dose.png"}
METHODS = ["vadf", "ssb", "tcbf", "ricom_21", "ricom_61", "ricom_61_bp"]


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    rep = make_report("demo", str(out), ReportConfig.quick())
    return rep, out


def test_writes_figures_json_and_index(report):
    rep, out = report
    names = {f["file"] for f in rep.figures}
    assert names == FIGURES
    for name in names:
        assert (out / name).read_bytes()[:4] == b"\x89PNG"
    data = json.loads((out / "report.json").read_text())
    assert all(f["caption"] for f in data["figures"])
    assert set(data["findings"]) == {"peak_moves_up_for_smaller_kernels", "band_pass_suppresses_both_ends",
                                     "small_kernel_phantom_in_pore", "large_kernel_no_phantom",
                                     "ricom_less_noisy_than_vadf_in_focus", "tcbf_fits_defocus_100A",
                                     "ssb_tcbf_beat_ricom_at_100A"}
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


# ----------------------------------------------------------------------------- Fig. 6 complete
def _png_size(path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    return int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")


def test_methods_json_has_every_method_and_dose(report):
    _, out = report
    data = json.loads((out / "report.json").read_text())
    scans = data["methods"]["scans"]
    assert [s["defocus_A"] for s in scans] == [0.0, 100.0]
    table = data["methods"]["table"]
    for scan in scans:
        assert scan["methods"] == METHODS
        assert [r["label"] for r in scan["rows"]] == ["full dose", "1/10 dose", "1/100 dose", "noiseless"]
        for r in scan["rows"]:
            for m in METHODS:
                assert np.isfinite(r["correlation"][m]["r_interior"]), (scan["defocus_A"], r["label"], m)
                if r["label"] != "noiseless":
                    assert np.isfinite(r["relative_noise"][m]) and r["relative_noise"][m] > 0
        rows = [t for t in table if t["defocus_A"] == scan["defocus_A"]]
        assert len(rows) == 4 * len(METHODS)
    # each figure: 3 doses and a row of Fourier transforms by 6 methods (the hand-made grid's size)
    for name in ("methods_0A.png", "methods_100A.png"):
        assert _png_size(out / name) == (round((1.55 * 6 + 0.5) * 100), round((1.62 * 4 + 0.2) * 100))


def test_acceptance_time_cuts_the_dose(report):
    for scan in report[0].methods["scans"]:
        full, tenth, hundredth = (r["e_per_probe"] for r in scan["rows"][:3])
        assert 950 < full < 1000  # 1000 e/probe on the detector; a few scatter past its edge
        # electrons arrive uniformly within the dwell, at whole 1.5625 ns steps of the Timepix3
        # clock: an acceptance time A keeps ceil(A / 1.5625) of the dwell's 640 steps
        assert scan["dwell_ns"] == 1000.0
        assert tenth / full == pytest.approx(64 / 640, rel=0.03)
        assert hundredth / full == pytest.approx(7 / 640, rel=0.1)


def test_correlation_falls_and_noise_rises_as_the_dose_falls(report):
    for scan in report[0].methods["scans"]:
        rows = scan["rows"][:3]
        # in focus every method; with defocus the two that image the phase there
        methods = METHODS if scan["defocus_A"] == 0 else ["ssb", "tcbf"]
        for m in methods:
            r = [row["correlation"][m]["r_interior"] for row in rows]
            assert r[0] >= r[1] - 0.02 and r[1] > r[2], (scan["defocus_A"], m, r)
        for m in METHODS:
            noise = [row["relative_noise"][m] for row in rows]
            assert noise[0] < noise[1] < noise[2], (scan["defocus_A"], m, noise)
            assert noise[2] > 3 * noise[0]
    focus = report[0].methods["scans"][0]
    low = focus["rows"][2]
    # the paper's point: at 1/100 dose riCOM keeps the lattice better than ADF and SSB
    for m in ("ricom_21", "ricom_61", "ricom_61_bp"):
        assert low["correlation"][m]["r_interior"] > low["correlation"]["vadf"]["r_interior"]
        assert low["correlation"][m]["r_interior"] > low["correlation"]["ssb"]["r_interior"]
    assert low["correlation"]["ricom_61_bp"]["r_interior"] > 0.8


def test_tcbf_finds_the_defocus_and_ssb_tcbf_win_there(report):
    defocused = report[0].methods["scans"][1]
    fit = defocused["tcbf_fit"]
    assert fit["true_defocus_A"] == 100.0
    assert abs(fit["defocus_A"] - 100.0) < 8.0 and 0 < fit["defocus_A_sigma"] < 5.0
    assert fit["error_A"] == pytest.approx(fit["defocus_A"] - 100.0)
    full = defocused["rows"][0]["correlation"]
    for m in ("ricom_21", "ricom_61", "ricom_61_bp", "vadf"):
        assert full["ssb"]["r_interior"] > full[m]["r_interior"] + 0.2
        assert full["tcbf"]["r_interior"] > full[m]["r_interior"] + 0.2


def test_pore_profiles_of_every_method(report):
    pore = report[0].pore
    for m in ("icom", "vadf", "ssb", "tcbf"):
        assert len(pore["profiles"][m]) == pore["scan_shape"][1]
        assert np.isfinite(pore["metrics"][m]["phantom"]), m
        # every method sees the pore: its centre is below the specimen around it
        assert pore["metrics"][m]["centre"] < pore["metrics"][m]["outside"], m


def test_event_patterns_count_the_accepted_electrons(tmp_path):
    import h5py

    from ricom.simulators.specimen import SimulationParams, simulate

    cfg = MethodsConfig(scan_shape=(32, 32), detector_shape=(32, 32), defoci_A=(0.0,), fractions=(1.0,))
    methods_study(cfg, seed=3, folder=str(tmp_path))
    path = tmp_path / "specimen_0A.h5"
    counts, per_probe = event_patterns(str(path), None)
    sim = simulate(SimulationParams(scan_shape=(32, 32), detector_shape=(32, 32), dose_e_per_probe=1000.0, seed=3))
    np.testing.assert_array_equal(counts, sim.data)  # every simulated electron, in its pattern
    assert per_probe == pytest.approx(sim.data.sum() / 32**2)
    # an acceptance time keeps exactly the events that arrived before it (read here with h5py)
    with h5py.File(path) as f:
        g = f["events"]
        offsets, x, y, t = g["offsets"][:], g["x"][:], g["y"][:], g["t_ns"][:]
    keep = t < 100.0
    pos = np.repeat(np.arange(32 * 32), np.diff(offsets))
    expected = np.zeros((32 * 32, 32, 32), np.int64)
    np.add.at(expected, (pos[keep], y[keep].astype(int), x[keep].astype(int)), 1)
    np.testing.assert_array_equal(event_patterns(str(path), 100.0)[0], expected.reshape(32, 32, 32, 32))
