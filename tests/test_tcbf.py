"""tcBF (`ricom.phase.tcbf`) against independent computations and the simulated specimen.

The shifted sum against a plain-NumPy splat with shifts written out from the formula;
fitted shifts against the analytic ones of a known defocus (weak-phase specimen, where
the tcBF shift formula holds); live chunks in any order against the offline result;
the image against the projected potential, beside riCOM-21 on the same data.
"""
from __future__ import annotations

import math

import numpy as np
import pytest

from ricom.core.chunks import PackedFrames
from ricom.core.errors import SettingsError
from ricom.core.params import Calibration, DetectorGeometry, KernelSettings, Settings
from ricom.engine.reconstruction import Reconstruction
from ricom.engine.reducer import ReducedChunk
from ricom.phase._tcbf_fit import decompose, fit_linear
from ricom.phase._tcbf_kernels import bin_patterns
from ricom.phase._tcbf_layout import bin_layout
from ricom.phase.tcbf import TcbfReducer, TcbfSettings, attach_tcbf, reconstruct_tcbf
from ricom.simulators.specimen import SimulationParams, simulate
from ricom.tools.report import correlation

# --------------------------------------------------------------------------- helpers


def _analytic_shifts(offsets_xy, defocus_A, pixel_mrad, step_A, rotation_deg=0.0, flip=False,
                     astig_A=0.0, astig_deg=0.0):
    """s = −C·θ_scan / step (scan px), written out: θ_scan = R(θ)·F·k·pixel."""
    kx, ky = offsets_xy[:, 0] * (-1 if flip else 1), offsets_xy[:, 1]
    t = math.radians(rotation_deg)
    tx = (kx * math.cos(t) - ky * math.sin(t)) * pixel_mrad * 1e-3
    ty = (kx * math.sin(t) + ky * math.cos(t)) * pixel_mrad * 1e-3
    a = math.radians(2 * astig_deg)
    sx = -(defocus_A * tx - astig_A * (math.cos(a) * tx + math.sin(a) * ty))
    sy = -(defocus_A * ty - astig_A * (math.sin(a) * tx - math.cos(a) * ty))
    return np.column_stack([sx, sy]) / step_A


def _plain_tcbf(data, layout, shifts_xy, upsample):
    """Bins summed with NumPy, each value added bilinearly at (position + shift)·u, normalised."""
    sy, sx = data.shape[:2]
    flat = data.reshape(sy * sx, -1).astype(np.float64)
    values = np.zeros((sy * sx, layout.n_bins))
    for j in range(layout.n_bins):
        values[:, j] = flat[:, layout.pixel_index[layout.pixel_bin == j]].sum(axis=1)
    num, den = np.zeros((sy * upsample, sx * upsample)), np.zeros((sy * upsample, sx * upsample))
    iy, ix = np.divmod(np.arange(sy * sx), sx)
    for j in range(layout.n_bins):
        y = iy * upsample + shifts_xy[j, 1] * upsample
        x = ix * upsample + shifts_xy[j, 0] * upsample
        y0, x0 = np.floor(y).astype(int), np.floor(x).astype(int)
        for a in (0, 1):
            for b in (0, 1):
                w = (y - y0 if a else 1 - (y - y0)) * (x - x0 if b else 1 - (x - x0))
                ok = (y0 + a >= 0) & (y0 + a < num.shape[0]) & (x0 + b >= 0) & (x0 + b < num.shape[1])
                np.add.at(num, (y0[ok] + a, x0[ok] + b), w[ok] * values[ok, j])
                np.add.at(den, (y0[ok] + a, x0[ok] + b), w[ok])
    covered = den > 1e-3 * den.max()
    m = num[covered] / den[covered]
    out = np.zeros_like(num)
    out[covered] = (m - m.mean()) / m.mean()
    return out


@pytest.fixture(scope="module")
def weak_phase():
    """A weak-phase specimen (0.5 Å thick, a pore for low frequencies) at 150 Å defocus."""
    p = SimulationParams(scan_shape=(96, 96), detector_shape=(48, 48), defocus_A=150.0, thickness_A=0.5,
                         pore_radius_A=5.0)
    return simulate(p)


def _calibration(sim):
    return Calibration(sim.params.step_A, sim.pixel_size_mrad, sim.params.energy_keV)


# --------------------------------------------------------------------------- pieces


def test_binning_sums_the_pixels_of_each_bin(rng):
    frames = rng.integers(0, 1000, (5, 16, 16)).astype(np.uint16)
    lay = bin_layout((16, 16), (7.5, 7.5), 7.0, TcbfSettings(bin_px=2))
    got = bin_patterns(frames, lay.bands, lay.n_bins)
    for j in range(lay.n_bins):
        pix = np.unravel_index(lay.pixel_index[lay.pixel_bin == j], (16, 16))
        assert len(pix[0]) == 4 and np.hypot(pix[0] - 7.5, pix[1] - 7.5).max() <= 0.9 * 7.0
        np.testing.assert_array_equal(got[:, j], frames[:, pix[0], pix[1]].sum(axis=1))
    # packed frames (a header before every pattern) are read in place and give the same sums
    rows = np.zeros((5, 10 + 256), np.uint16)
    rows[:, 10:] = frames.reshape(5, -1)
    packed = PackedFrames(rows, 10, (16, 16))
    np.testing.assert_array_equal(bin_patterns(packed, lay.bands, lay.n_bins), got)


def test_decompose_recovers_defocus_astigmatism_and_rotation():
    for flip in (False, True):
        offsets = np.array([[x, y] for x in range(-3, 4) for y in range(-3, 4)], float)
        s = _analytic_shifts(offsets, 120.0, 1.5, 0.25, rotation_deg=-35.0, flip=flip, astig_A=20.0, astig_deg=30.0)
        fit = fit_linear(offsets, s + 0.7)
        scale = 0.25 / 1.5e-3
        d, a, phi, rot = decompose(fit.model.b, flip, near_rotation_deg=-30.0)
        assert d * scale == pytest.approx(120.0, rel=1e-9) and a * scale == pytest.approx(20.0, rel=1e-9)
        assert phi == pytest.approx(30.0) and rot == pytest.approx(-35.0)
        assert np.allclose(fit.model.t, 0.7)
        # the other branch of the 180° ambiguity: negative defocus, rotation + 180°
        d2, _, _, rot2 = decompose(fit.model.b, flip, near_rotation_deg=150.0)
        assert d2 == pytest.approx(-d) and rot2 == pytest.approx(145.0)


def test_settings_are_checked():
    with pytest.raises(SettingsError, match="fit must be one of"):
        TcbfSettings(fit="sometimes")
    with pytest.raises(SettingsError, match="step_A"):
        TcbfReducer((8, 8), (16, 16), TcbfSettings(fit="given", defocus_A=100.0))
    with pytest.raises(SettingsError, match="energy_keV"):
        TcbfReducer((8, 8), (16, 16), TcbfSettings(phase_flip=True), Calibration(0.2, 1.0))
    with pytest.raises(SettingsError, match="fewer than 4"):
        bin_layout((16, 16), (7.5, 7.5), 3.0, TcbfSettings(bin_px=4))


# --------------------------------------------------------------------------- given shifts


@pytest.mark.parametrize("rotation,flip,upsample", [(0.0, False, 1), (25.0, True, 2)])
def test_given_shifts_equal_a_plain_numpy_shifted_sum(rng, rotation, flip, upsample):
    data = rng.poisson(20.0, (9, 11, 16, 16)).astype(np.uint16)
    cal = Calibration(step_A=0.3, pixel_size_mrad=1.2, energy_keV=200.0)
    geo = DetectorGeometry(center_yx=(7.5, 7.5), rotation_deg=rotation, flip=flip)
    s = TcbfSettings(fit="given", defocus_A=180.0, astigmatism_A=25.0, astigmatism_angle_deg=10.0, bin_px=2,
                     upsample=upsample)
    red = reconstruct_tcbf(data, s, cal, geo, bf_radius_px=7.0)
    res = red.get_results()
    shifts = _analytic_shifts(red.layout.offsets_xy, 180.0, 1.2, 0.3, rotation, flip, 25.0, 10.0)
    np.testing.assert_allclose(res["shifts_px"], shifts, atol=1e-9)
    plain = _plain_tcbf(data, red.layout, shifts, upsample)
    np.testing.assert_allclose(res["tcbf"], -plain, atol=1e-9)  # Δf > 0: contrast inverted at low q
    assert res["defocus_A"] == 180.0 and res["n_fits"] == 0


def test_live_chunks_in_any_order_and_merged_halves_equal_the_whole(rng):
    data = rng.poisson(30.0, (12, 10, 16, 16)).astype(np.uint16)
    cal, geo = Calibration(0.3, 1.2, 200.0), DetectorGeometry(center_yx=(7.5, 7.5))
    s = TcbfSettings(fit="given", defocus_A=-90.0, bin_px=2, upsample=2)
    whole = reconstruct_tcbf(data, s, cal, geo, bf_radius_px=7.0).get_results()["tcbf"]
    order = rng.permutation(120)
    frames = data.reshape(120, 16, 16)
    halves = [TcbfReducer((12, 10), (16, 16), s, cal, geo, bf_radius_px=7.0) for _ in range(2)]
    for i, part in enumerate(np.array_split(order, 9)):
        halves[i % 2].process(ReducedChunk(part, np.zeros((len(part), 3)), np.ones(len(part), bool),
                                           frames=frames[part]))
    halves[0].merge(halves[1])
    np.testing.assert_allclose(halves[0].get_results()["tcbf"], whole, atol=1e-12)


# --------------------------------------------------------------------------- shifts from the data


def test_fitted_shifts_match_the_analytic_shifts_of_a_known_defocus(weak_phase):
    sim = weak_phase
    red = reconstruct_tcbf(sim.data, TcbfSettings(fit="auto"), _calibration(sim),
                           DetectorGeometry(center_yx=sim.center_yx))
    res = red.get_results()
    analytic = _analytic_shifts(res["bin_offsets_px"], 150.0, sim.pixel_size_mrad, sim.params.step_A)
    assert np.abs(analytic).max() > 8  # shifts of many scan pixels
    assert np.abs(res["shifts_px"] - analytic).max() < 0.1
    measured = res["measured_shifts_px"]
    fitted = analytic[res["fit_bins"]]
    offset = np.median(measured - fitted, axis=0)  # an image-wide shift is not measurable
    assert np.abs(measured - fitted - offset).max() < 0.1
    assert res["defocus_A"] == pytest.approx(150.0, abs=max(1.0, 5 * res["defocus_A_sigma"]))
    assert 0 < res["defocus_A_sigma"] < 1.0 and abs(res["rotation_deg"]) < 0.2
    assert res["astigmatism_A"] < 1.0


def test_fit_finds_rotation_and_astigmatism():
    p = SimulationParams(scan_shape=(64, 64), detector_shape=(40, 40), defocus_A=120.0, thickness_A=0.5,
                         pore_radius_A=4.0, astigmatism_A=30.0, astigmatism_angle_deg=20.0, rotation_deg=40.0,
                         flip=True)
    sim = simulate(p)
    red = reconstruct_tcbf(sim.data, TcbfSettings(fit="auto"), _calibration(sim),
                           DetectorGeometry(center_yx=sim.center_yx, rotation_deg=30.0, flip=True))
    a = red.aberrations()
    assert a["rotation_deg"] == pytest.approx(40.0, abs=1.0)
    assert a["defocus_A"] == pytest.approx(120.0, rel=0.03)
    assert a["astigmatism_A"] == pytest.approx(30.0, abs=3.0)
    assert a["astigmatism_angle_deg"] == pytest.approx(20.0, abs=4.0)
    assert "defocus" in red.summary() and "±" in red.summary()


def test_live_auto_fit_shows_defocus_early_and_ends_equal_to_offline(weak_phase):
    sim = weak_phase
    cal, geo = _calibration(sim), DetectorGeometry(center_yx=sim.center_yx)
    offline = reconstruct_tcbf(sim.data, TcbfSettings(fit="auto"), cal, geo, bf_radius_px=11.0)
    rec = Reconstruction((96, 96), (48, 48), Settings(kernel=KernelSettings(21), geometry=geo, calibration=cal))
    red = attach_tcbf(rec, TcbfSettings(fit="auto", fit_rows=24), bf_radius_px=11.0)
    frames = sim.data.reshape(-1, 48, 48)
    early = None
    for r0 in range(0, 96, 8):  # rows in scan order: the first fit after 24 complete rows
        rec.process_frames(frames[r0 * 96:(r0 + 8) * 96], start=r0 * 96)
        if early is None and red.n_fits:
            early = (r0 + 8, red.get_results()["defocus_A"])
    assert early[0] == 24 and early[1] == pytest.approx(150.0, abs=5.0)
    assert red.n_fits == 3 and red.fit_rows_used == 96  # 24, 48 and all 96 rows
    np.testing.assert_allclose(red.get_results()["tcbf"], offline.get_results()["tcbf"], atol=1e-9)
    assert red.get_results()["defocus_A"] == offline.get_results()["defocus_A"]
    # the same chunks in a shuffled order
    rec2 = Reconstruction((96, 96), (48, 48), Settings(kernel=KernelSettings(21), geometry=geo, calibration=cal))
    red2 = attach_tcbf(rec2, TcbfSettings(fit="auto"), bf_radius_px=11.0)
    order = np.random.default_rng(5).permutation(len(frames))
    for part in np.array_split(order, 13):
        rec2.process_frames(frames[part], positions=part)
    np.testing.assert_allclose(red2.get_results()["tcbf"], offline.get_results()["tcbf"], atol=1e-9)


# --------------------------------------------------------------------------- against the potential


@pytest.mark.parametrize("defocus", [120.0, 250.0])
def test_tcbf_correlates_with_the_potential_at_least_as_well_as_ricom21(defocus):
    """The built-in specimen (10 unit cells) at a defocus where tcBF is meant to work."""
    p = SimulationParams(scan_shape=(64, 64), detector_shape=(40, 40), defocus_A=defocus, dose_e_per_probe=2000.0)
    sim = simulate(p)
    cal, geo = _calibration(sim), DetectorGeometry(center_yx=sim.center_yx)
    rec = Reconstruction((64, 64), (40, 40), Settings(kernel=KernelSettings(21), geometry=geo, calibration=cal))
    red = attach_tcbf(rec, TcbfSettings(fit="auto", phase_flip=True))
    rec.process_frames(sim.data.reshape(-1, 40, 40), start=0)
    r_tcbf = correlation(red.get_results()["tcbf"], sim.potential)
    r_ricom = correlation(rec.snapshot().ricom, sim.potential)
    assert r_tcbf >= r_ricom and r_tcbf > 0.3, (r_tcbf, r_ricom)
    assert red.get_results()["defocus_A"] == pytest.approx(defocus, rel=0.05)


def test_first_mode_fits_once_and_reports_nothing_before(weak_phase):
    sim = weak_phase
    red = TcbfReducer((96, 96), (48, 48), TcbfSettings(fit="first", fit_rows=32), _calibration(sim),
                      DetectorGeometry(center_yx=sim.center_yx), bf_radius_px=11.0)
    assert "waiting" in red.summary() and math.isnan(red.get_results()["defocus_A"])
    frames = sim.data.reshape(-1, 48, 48)
    for r0 in range(0, 96, 16):
        pos = np.arange(r0 * 96, (r0 + 16) * 96)
        red.process(ReducedChunk(pos, np.zeros((len(pos), 3)), np.ones(len(pos), bool), frames=frames[pos]))
        if r0 == 0:
            assert red.n_fits == 0 and not red.get_results()["tcbf"].any()
    assert red.n_fits == 1 and red.fit_rows_used == 32
    assert red.get_results()["defocus_A"] == pytest.approx(150.0, abs=3.0)


def test_bench_case_measures_tcbf_beside_ricom():
    from ricom.tools import bench
    from ricom.tools.bench_phase import RUNNERS, bench_tcbf_live, plan

    assert {kind for kind, _ in plan(True)} <= set(RUNNERS) <= set(bench.RUNNERS)
    assert any(kind == "tcbf-live" for kind, _ in bench.plan(True))
    rec = bench_tcbf_live(scan_shape=(16, 16), detector_shape=(64, 64), kernel=5, fit="given")
    assert rec.n_patterns == 256 and rec.patterns_per_s > 0 and rec.detector_shape == [64, 64]
    assert "the riCOM-only rate" in rec.note and "0 fits" in rec.note
