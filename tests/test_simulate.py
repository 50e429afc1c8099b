"""Tests of the built-in SrTiO3 simulator and the ``demo`` source.

The checks are physical and independent of the implementation: beam conservation,
COM along +∇V, column contrast, the vacuum pore, Poisson statistics, the rotation/flip
convention of the reconstruction, and that streaming gives the same data as a whole run.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from ricom.core.errors import InputError, SettingsError
from ricom.simulators.specimen import (
    LATTICE_A,
    SimulatedData,
    SimulationParams,
    detector_calibration,
    projected_potential,
    simulate,
    simulate_chunks,
)
from ricom.sources import open_source
from ricom.sources.demo import SimulatorSource
from ricom.sources.demo import open as open_demo

SMALL = {"scan_shape": (20, 20), "detector_shape": (32, 32), "step_A": 0.2}
REFERENCE = Path(__file__).resolve().parents[2] / "shared" / "data" / "quick_srtio3"


def com_px(data: np.ndarray, center_yx) -> tuple[np.ndarray, np.ndarray]:
    """COM (detector pixels) per the contract: Σ I·(x − cx) / Σ I."""
    intensity = data.astype(float)
    yy, xx = np.mgrid[:data.shape[-2], :data.shape[-1]]
    total = intensity.sum((-2, -1))
    return ((intensity * (xx - center_yx[1])).sum((-2, -1)) / total,
            (intensity * (yy - center_yx[0])).sum((-2, -1)) / total)


def corr(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(np.ravel(a), np.ravel(b))[0, 1])


@pytest.fixture(scope="module")
def small() -> SimulatedData:
    return simulate(SimulationParams(**SMALL))


def test_shapes_dtype_and_metadata(small):
    assert small.data.shape == (20, 20, 32, 32) and small.data.dtype == np.float32
    assert small.potential.shape == (20, 20)
    assert small.center_yx == (16.0, 16.0)
    meta = json.loads(json.dumps(small.to_dict()))
    assert meta["params"]["scan_shape"] == [20, 20]
    assert meta["pixel_size_mrad"] == pytest.approx(small.pixel_size_mrad)
    assert detector_calibration(small.params) == (small.pixel_size_mrad, small.center_yx)


def test_bright_field_disc_spans_about_half_the_detector():
    vacuum = simulate(SimulationParams(scan_shape=(1, 1), detector_shape=(64, 64), thickness_A=0.0))
    pattern = vacuum.data[0, 0]
    diameter_px = 2 * math.sqrt((pattern > pattern.max() / 2).sum() / math.pi)
    assert 0.4 < diameter_px / 64 < 0.6
    assert diameter_px * vacuum.pixel_size_mrad == pytest.approx(40.0, rel=0.05)  # 2α
    assert pattern.sum() == pytest.approx(1.0, abs=1e-5)  # the whole beam lands on the detector
    cx, cy = com_px(pattern, vacuum.center_yx)
    assert abs(cx) < 1e-3 and abs(cy) < 1e-3  # the disc is centred on the optical axis


def test_intensity_is_at_most_one_and_mostly_on_the_detector(small):
    sums = small.data.sum((2, 3))
    assert sums.max() <= 1 + 1e-5
    assert sums.mean() > 0.9
    assert sums.min() > 0.5  # strong scattering at the columns leaves the detector


def test_com_points_up_the_potential_gradient(small):
    cx, cy = com_px(small.data, small.center_yx)
    dv_dy, dv_dx = np.gradient(small.potential.astype(float), SMALL["step_A"])
    inner = (slice(1, -1), slice(1, -1))  # central differences only
    assert corr(cx[inner], dv_dx[inner]) > 0.8
    assert corr(cy[inner], dv_dy[inner]) > 0.8


def test_com_sign_next_to_a_column():
    # probe 0.4 Å to the +x side of the Sr column at the origin, and 0.4 Å to the +y side
    step = 0.4
    data = simulate(SimulationParams(scan_shape=(2, 2), detector_shape=(32, 32), step_A=step))
    cx, cy = com_px(data.data, data.center_yx)
    assert cx[0, 1] < 0 and abs(cy[0, 1]) < 0.1 * abs(cx[0, 1])  # pulled back towards −x
    assert cy[1, 0] < 0 and abs(cx[1, 0]) < 0.1 * abs(cy[1, 0])  # pulled back towards −y


def test_column_contrast_and_thickness_scaling():
    params = SimulationParams()
    v = projected_potential(params, (2, 2), LATTICE_A / 2)  # Sr, O / O, Ti–O
    sr, o, ti_o = v[0, 0], v[0, 1], v[1, 1]
    assert v[1, 0] == pytest.approx(o)
    assert sr > 2 * o and ti_o > 2 * o and sr > ti_o
    thick = projected_potential(SimulationParams(thickness_A=2 * params.thickness_A), (2, 2), LATTICE_A / 2)
    np.testing.assert_allclose(thick, 2 * v, rtol=1e-12)
    field = projected_potential(params, (40, 40), LATTICE_A / 20)
    np.testing.assert_allclose(field[:20, :20], field[20:, 20:], rtol=1e-9)  # lattice periodic
    assert field.min() > 0


@pytest.mark.skipif(not (REFERENCE / "potential_fine.npy").exists(), reason="abTEM reference not available")
def test_potential_resembles_the_abtem_reference():
    ref = np.load(REFERENCE / "potential_fine.npy").astype(float)
    info = json.loads((REFERENCE / "params.json").read_text())
    model = projected_potential(SimulationParams(), ref.shape, info["simulation"]["potential_sampling_A"])
    assert corr(model, ref) > 0.99
    assert np.sqrt(np.mean((model - ref) ** 2)) < 0.02 * ref.max()


def test_pore_is_vacuum_and_has_no_com():
    params = SimulationParams(scan_shape=(40, 40), detector_shape=(32, 32), step_A=0.2, pore_radius_A=3.0)
    sim = simulate(params)
    yy, xx = np.mgrid[:40, :40] * 0.2
    r = np.hypot(yy - 3.9, xx - 3.9)  # distance from the scan centre
    assert np.all(sim.potential[r < 3.0] == 0)
    assert np.all(sim.potential[r > 3.0] > 0)
    magnitude = np.hypot(*com_px(sim.data, sim.center_yx))
    assert magnitude[r < 1.0].max() < 0.05 * np.median(magnitude[r > 3.5])


def test_dose_gives_poisson_counts_with_the_right_mean():
    params = SimulationParams(scan_shape=(8, 8), detector_shape=(32, 32), dose_e_per_probe=1000.0, seed=3)
    noisy = simulate(params)
    clean = simulate(SimulationParams(scan_shape=(8, 8), detector_shape=(32, 32)))
    assert noisy.data.dtype == np.uint16
    expected = 1000.0 * clean.data.sum((2, 3))
    assert noisy.data.sum((2, 3)).mean() == pytest.approx(expected.mean(), rel=0.01)
    # pixel-wise variance ≈ mean (Poisson): normalised residuals have unit variance
    lam = 1000.0 * clean.data.astype(float)
    mask = lam > 5
    z = (noisy.data[mask] - lam[mask]) / np.sqrt(lam[mask])
    assert abs(z.mean()) < 0.05 and 0.9 < z.var() < 1.1
    np.testing.assert_array_equal(simulate(params).data, noisy.data)  # seeded
    assert simulate(SimulationParams(scan_shape=(1, 1), detector_shape=(16, 16),
                                     dose_e_per_probe=1e7)).data.dtype == np.uint32


@pytest.mark.parametrize(("rotation", "flip"), [(30.0, False), (-75.0, True), (0.0, True), (123.0, False)])
def test_rotation_and_flip_are_undone_by_the_reconstruction_correction(small, rotation, flip):
    truth_x, truth_y = com_px(small.data, small.center_yx)
    rotated = simulate(SimulationParams(**SMALL, rotation_deg=rotation, flip=flip))
    mx, my = com_px(rotated.data, rotated.center_yx)
    if flip:  # the reconstruction: flip detector x, then rotate by θ
        mx = -mx
    t = math.radians(rotation)
    xs, ys = mx * math.cos(t) - my * math.sin(t), mx * math.sin(t) + my * math.cos(t)
    assert corr(xs, truth_x) > 0.99 and corr(ys, truth_y) > 0.99
    assert np.polyfit(truth_x.ravel(), xs.ravel(), 1)[0] == pytest.approx(1.0, abs=0.05)
    if rotation:  # and the uncorrected COM really is rotated
        assert corr(mx, truth_x) < 0.95


@pytest.mark.parametrize("dose", [None, 500.0])
def test_chunks_concatenate_to_the_whole_simulation(dose):
    params = SimulationParams(scan_shape=(7, 5), detector_shape=(16, 16), dose_e_per_probe=dose)
    whole = simulate(params).data.reshape(35, 16, 16)
    parts = list(simulate_chunks(params, rows_per_chunk=3))
    assert [len(f) for f, _ in parts] == [15, 15, 5]
    positions = np.concatenate([p for _, p in parts])
    assert positions.dtype == np.int64
    np.testing.assert_array_equal(positions, np.arange(35))
    np.testing.assert_array_equal(np.concatenate([f for f, _ in parts]), whole)


def test_sub_pixel_probe_shifts_match_whole_pixel_positions():
    # step 0.05 Å needs sub-pixel probe shifts; step 0.15 Å puts probes on whole pixels
    fine = simulate(SimulationParams(scan_shape=(1, 7), detector_shape=(32, 32), step_A=0.05))
    coarse = simulate(SimulationParams(scan_shape=(1, 3), detector_shape=(32, 32), step_A=0.15))
    assert fine.pixel_size_mrad == pytest.approx(coarse.pixel_size_mrad, rel=0.2)
    fx, _ = com_px(fine.data[0, ::3], fine.center_yx)
    cx, _ = com_px(coarse.data[0], coarse.center_yx)
    fx_mrad, cx_mrad = fx * fine.pixel_size_mrad, cx * coarse.pixel_size_mrad
    np.testing.assert_allclose(fx_mrad, cx_mrad, atol=0.03 * np.abs(cx_mrad).max())


def test_invalid_parameters_raise():
    with pytest.raises(SettingsError):
        SimulationParams(step_A=0)
    with pytest.raises(SettingsError):
        SimulationParams(scan_shape=(0, 4))
    with pytest.raises(SettingsError):
        SimulationParams(dose_e_per_probe=-1)


def test_simulator_source_yields_every_position_once():
    source = open_source("demo", scan_shape=(6, 5), detector_shape=(16, 16), dose_e_per_probe=None,
                         defocus_A=20.0, skip_frames=0, unknown_option="ignored")
    assert isinstance(source, SimulatorSource)
    assert source.kind == "frames" and source.scan_shape == (6, 5) and source.detector_shape == (16, 16)
    assert source.n_frames == 30 and source.params.defocus_A == 20.0
    info = source.describe()
    assert info["pixel_size_mrad"] == pytest.approx(source.pixel_size_mrad)
    assert info["center_yx"] == [8.0, 8.0]
    seen = []
    for chunk in source.chunks(chunk_size=4):
        assert 1 <= len(chunk.frames) <= 4 and chunk.frames.shape[1:] == (16, 16)
        assert len(chunk.positions) == len(chunk.frames)
        seen.extend(chunk.positions.tolist())
    assert sorted(seen) == list(range(30))
    frames = np.concatenate([c.frames for c in source.chunks(chunk_size=256)])
    np.testing.assert_array_equal(frames, simulate(source.params).data.reshape(30, 16, 16))


def test_demo_open_defaults_and_errors():
    source = open_demo("demo", scan_shape=None)
    assert source.scan_shape == (64, 64) and source.detector_shape == (64, 64)
    with pytest.raises(InputError):
        open_demo("something-else")
    with pytest.raises(SettingsError):
        open_demo("demo", step_A=-1.0)
