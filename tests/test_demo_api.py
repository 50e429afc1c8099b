"""The built-in specimen end to end: `ricom demo`, `ricom simulate`, and the Python API."""
from __future__ import annotations

import h5py
import numpy as np
import pytest

import reference as ref
import ricom
from ricom.cli.main import main
from ricom.simulators.specimen import SimulationParams, simulate
from ricom.sources.demo import SimulatorSource


def test_demo_writes_images_with_atoms_bright(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "-o", str(out), "--scan-shape", "24", "24", "--no-progress"]) == 0
    names = {p.name for p in out.iterdir()}
    assert {"ricom.tif", "icom.tif", "vadf.tif", "com_x.tif", "com_y.tif", "demo.h5", "demo.png"} <= names
    text = capsys.readouterr().out
    r = float(text.split("Pearson r = ")[1].split()[0])
    assert r > 0.6  # bright atoms: positive correlation with the true potential


def test_simulate_then_reconstruct_uses_the_sidecar_calibration(tmp_path):
    path = tmp_path / "sim.npy"
    assert main(["simulate", "-o", str(path), "--scan-shape", "12", "12", "--detector-shape", "32", "32"]) == 0
    assert (tmp_path / "sim.npy.ricom.json").exists()
    out = tmp_path / "r.h5"
    assert main(["reconstruct", str(path), "-o", str(out), "--kernel-size", "7", "--no-progress"]) == 0
    with h5py.File(out) as f:
        assert f["ricom"].attrs["unit"] == "V·Å" and f["com_x"].attrs["unit"] == "mrad"
        assert f.attrs["center_mode"] == "given"


def test_api_reconstruct_equals_the_reference_on_simulated_data():
    p = SimulationParams(scan_shape=(10, 12), detector_shape=(32, 32), dose_e_per_probe=2000, seed=3)
    sim = simulate(p)
    snap = ricom.reconstruct(sim.data, kernel_size=9, center_yx=sim.center_yx, step_A=p.step_A,
                             pixel_size_mrad=sim.pixel_size_mrad, energy_keV=p.energy_keV)
    cx, cy = ref.com_maps(sim.data, sim.center_yx, sim.pixel_size_mrad)
    from ricom.core.units import rad_to_volt_angstrom
    want = ref.ricom(cx, cy, 9, p.step_A) * 1e-3 * rad_to_volt_angstrom(p.energy_keV)
    np.testing.assert_allclose(snap.ricom, want, rtol=1e-9, atol=1e-9 * np.abs(want).max())


def test_demo_source_through_the_api_matches_the_array():
    p = SimulationParams(scan_shape=(8, 8), detector_shape=(32, 32))
    a = ricom.reconstruct(SimulatorSource(p), kernel_size=5)
    b = ricom.reconstruct(simulate(p).data, kernel_size=5, **{k: v for k, v in SimulatorSource(p).hints().items()
                                                              if k in ("center_yx",)})
    np.testing.assert_allclose(a.com_x / SimulatorSource(p).pixel_size_mrad, b.com_x, atol=1e-9)


def test_api_rejects_mixed_settings():
    with pytest.raises(ricom.SettingsError):
        ricom.reconstruct(np.zeros((4, 4, 8, 8)), settings=ricom.Settings(), kernel_size=5)


def test_3d_stack_needs_a_scan_shape():
    with pytest.raises(ricom.SettingsError, match=r"needs scan_shape=\(SY, SX\)"):
        ricom.reconstruct(np.zeros((16, 8, 8)))
    snap = ricom.reconstruct(np.ones((16, 8, 8)), scan_shape=(4, 4), kernel_size=3)
    assert snap.n_patterns == 16


def test_reference_scan_sets_the_centre():
    vac = np.zeros((2, 2, 16, 16))
    vac[..., 6, 9] = 10.0
    data = np.zeros((4, 4, 16, 16))
    data[..., 6, 10] = 5.0  # everything deflected by +1 px in x
    snap = ricom.reconstruct(data, reference=vac, kernel_size=3)
    assert snap.center_yx == (6.0, 9.0)
    np.testing.assert_allclose(snap.com_x, 1.0)


def test_cli_auto_rotation_and_descan_on_rotated_simulation(tmp_path):
    path = tmp_path / "rot.npy"
    assert main(["simulate", "-o", str(path), "--scan-shape", "20", "20", "--detector-shape", "32", "32",
                 "--rotation", "40", "--flip"]) == 0
    out = tmp_path / "r.h5"
    assert main(["reconstruct", str(path), "-o", str(out), "--rotation", "auto", "--descan", "plane",
                 "--kernel-size", "9", "--no-progress"]) == 0
    with h5py.File(out) as f:
        assert f.attrs["rotation_deg"] == pytest.approx(40.0, abs=1.0)
        assert bool(f.attrs["flip"]) and f.attrs["descan"] == "plane"
