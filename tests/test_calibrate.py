"""Automatic calibration: rotation, flip, centre and descan (`ricom calibrate`).

Convention pinned here (see docs/calibration.md): the patterns are recorded such that the
correction "mirror detector x if flip, then turn by θ from detector +x towards +y"
restores the scan-frame COM; a detector field d relates to the scan field s by
d = F·R(−θ)·s.
"""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

import ricom
from ricom.calibration.calibrate import (
    apply_auto_rotation,
    apply_descan,
    calibrate,
    center_from_disc,
    center_from_mean_com,
    center_from_reference,
    descan_from_reference,
    find_rotation,
    fit_descan,
    fit_descan_model,
)
from ricom.core.errors import SettingsError
from ricom.simulators.specimen import SimulationParams, simulate

SIM = {"scan_shape": (24, 24), "detector_shape": (32, 32)}
DET = (32, 32)


def angle_error(found: float, true: float) -> float:
    return abs((found - true + 180.0) % 360.0 - 180.0)


def pearson(a, b) -> float:
    return float(np.corrcoef(np.ravel(a), np.ravel(b))[0, 1])


# ---------------------------------------------------------------------- synthetic helpers
def lattice_field(shape=(24, 24), spacing=6.0, width=1.2, offset=(2.3, 1.7)):
    """Scan-frame COM = +∇V of Gaussian columns on a square lattice (scan pixels)."""
    y, x = np.mgrid[0:shape[0], 0:shape[1]].astype(float)
    gx, gy = np.zeros(shape), np.zeros(shape)
    for cy in np.arange(offset[0] - 2 * spacing, shape[0] + 2 * spacing, spacing):
        for cx in np.arange(offset[1] - 2 * spacing, shape[1] + 2 * spacing, spacing):
            g = np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2 * width**2))
            gx -= (x - cx) / width**2 * g
            gy -= (y - cy) / width**2 * g
    return gx, gy


def to_detector(sx, sy, theta_deg: float, flip: bool):
    """Detector-frame field d = F·R(−θ)·s (what a rotated, mirrored detector measures)."""
    t = math.radians(-theta_deg)
    dx = math.cos(t) * sx - math.sin(t) * sy
    dy = math.sin(t) * sx + math.cos(t) * sy
    return (-dx if flip else dx), dy


def disc_patterns(cy, cx, radius=7.0):
    """Soft-edged bright-field discs centred at (cy, cx) per scan position (exact sub-pixel COM)."""
    yy, xx = np.indices(DET, dtype=float)
    r = np.hypot(yy[None, None] - cy[..., None, None], xx[None, None] - cx[..., None, None])
    return (1000.0 * np.clip(radius + 0.5 - r, 0.0, 1.0)).astype(np.float32)


CENTRE = (15.6, 16.3)


def specimen_data(theta=0.0, flip=False, descan=None, amplitude=1.5):
    sx, sy = lattice_field()
    k = amplitude / np.hypot(sx, sy).max()
    dx, dy = to_detector(k * sx, k * sy, theta, flip)
    oy, ox = descan if descan is not None else (0.0, 0.0)
    return disc_patterns(CENTRE[0] + dy + oy, CENTRE[1] + dx + ox)


def linear_descan(shape=(24, 24)):
    iy, ix = np.mgrid[0:shape[0], 0:shape[1]].astype(float)
    return 1.2 + 0.05 * iy - 0.03 * ix, -0.8 + 0.02 * iy + 0.06 * ix


# ---------------------------------------------------------------------- simulated rotations
@pytest.fixture(scope="module")
def unrotated():
    sim = simulate(SimulationParams(**SIM))
    return ricom.reconstruct(sim.data, kernel_size=11, center_yx=sim.center_yx).ricom


@pytest.mark.parametrize("theta", [17.0, 123.0, -75.0])
@pytest.mark.parametrize("flip", [False, True])
def test_simulated_rotation_and_flip_are_found(theta, flip, unrotated):
    sim = simulate(SimulationParams(**SIM, rotation_deg=theta, flip=flip))
    rep = calibrate(sim.data)
    rot = rep.rotation
    assert rot.determined, rot.reason
    assert rot.flip is flip
    assert 0.0 <= rot.rotation_deg < 360.0
    assert angle_error(rot.rotation_deg, theta) < 1.0
    assert rot.confidence >= 0.5
    img = ricom.reconstruct(sim.data, kernel_size=11, center_yx=rep.center_yx,
                            rotation_deg=rot.rotation_deg, flip=rot.flip).ricom
    assert pearson(img, unrotated) >= 0.99


@pytest.mark.parametrize("theta", [0.0, 90.0, 180.0, 270.0])
def test_axis_aligned_rotations(theta):
    """θ on the branch cut of atan2 (0°, 180°) must still get the 180° choice right."""
    sim = simulate(SimulationParams(**SIM, rotation_deg=theta))
    rot = calibrate(sim.data).rotation
    assert rot.determined and rot.flip is False
    assert angle_error(rot.rotation_deg, theta) < 1.0


def test_noisy_simulated_rotation_within_one_degree():
    sim = simulate(SimulationParams(**SIM, rotation_deg=-75.0, flip=True, dose_e_per_probe=1000.0, seed=3))
    rot = calibrate(sim.data).rotation
    assert rot.determined and rot.flip is True
    assert angle_error(rot.rotation_deg, -75.0) < 1.0
    assert rot.error_deg < 1.0


def test_auto_rotation_on_engine_without_rereading(unrotated):
    sim = simulate(SimulationParams(**SIM, rotation_deg=123.0, flip=True))
    _, rec, _ = ricom.api.reconstruct_run(sim.data, kernel_size=11, center_yx=sim.center_yx,
                                          rotation_deg=40.0)  # a wrong starting guess is undone
    out = apply_auto_rotation(rec)
    assert out["flip"] is True and angle_error(out["rotation_deg"], 123.0) < 1.0
    assert rec.settings.geometry.rotation_deg == out["rotation_deg"]
    assert pearson(rec.snapshot().ricom, unrotated) >= 0.99


def test_auto_rotation_on_partial_scan():
    sim = simulate(SimulationParams(**SIM, rotation_deg=17.0))
    rec = ricom.Reconstruction((24, 24), DET, ricom.Settings(kernel=ricom.KernelSettings(11)))
    rec.process_frames(sim.data[:14].reshape(-1, *DET), start=0)  # 14 of 24 rows
    out = apply_auto_rotation(rec)
    assert out["flip"] is False and angle_error(out["rotation_deg"], 17.0) < 1.0


# ---------------------------------------------------------------------- the sign convention
@pytest.mark.parametrize("theta", [40.0, -40.0, 90.0, -90.0])
@pytest.mark.parametrize("flip", [False, True])
def test_sign_convention_both_directions(theta, flip):
    sx, sy = lattice_field((32, 32))
    dx, dy = to_detector(sx, sy, theta, flip)
    rot = find_rotation(dx, dy)
    assert rot.determined, rot.reason
    assert rot.flip is flip
    assert angle_error(rot.rotation_deg, theta) < 0.5
    assert rot.curl_profile.shape == (2, 360)
    assert angle_error(float(np.argmin(rot.curl_profile[int(flip)])) % 180, theta % 180) <= 1.0
    fixed = find_rotation(dx, dy, flip=flip)  # flip given instead of found
    assert fixed.flip is flip and angle_error(fixed.rotation_deg, theta) < 0.5
    # applying the found geometry the engine's way restores the scan-frame field
    m = ricom.DetectorGeometry(rotation_deg=rot.rotation_deg, flip=rot.flip).matrix()
    assert np.allclose(m[0] * dx + m[1] * dy, sx, atol=0.02 * np.abs(sx).max())
    assert np.allclose(m[2] * dx + m[3] * dy, sy, atol=0.02 * np.abs(sy).max())


def test_positive_rotation_turns_detector_x_towards_detector_y():
    """A COM along detector +x means scan +y when θ = +90° (clockwise on screen)."""
    cy = np.full((3, 3), CENTRE[0])
    cx = np.full((3, 3), CENTRE[1] + 1.0)
    data = disc_patterns(cy, cx)
    snap = ricom.reconstruct(data, kernel_size=3, center_yx=CENTRE, rotation_deg=90.0)
    assert np.allclose(snap.com_x, 0.0, atol=0.01) and np.allclose(snap.com_y, 1.0, atol=0.01)
    snap = ricom.reconstruct(data, kernel_size=3, center_yx=CENTRE, rotation_deg=0.0, flip=True)
    assert np.allclose(snap.com_x, -1.0, atol=0.01)
    # and find_rotation reads a scan +y field seen along detector +x as +90°
    sx, sy = lattice_field((32, 32))
    assert angle_error(find_rotation(sy, -sx).rotation_deg, 90.0) < 0.5


def test_atoms_come_out_bright_after_auto_rotation():
    data = specimen_data(theta=-123.0, flip=True)
    rep = calibrate(data, descan="none")
    snap = ricom.reconstruct(data, kernel_size=11, center_yx=rep.center_yx,
                             rotation_deg=rep.rotation.rotation_deg, flip=rep.rotation.flip)
    iy, ix = 2 + 6 * 2, 2 + 6 * 2  # a column near the middle (offset 2.3, 1.7 rounds to 2)
    assert snap.ricom[iy, ix] > np.median(snap.ricom)


# ---------------------------------------------------------------------- cannot determine
@pytest.mark.parametrize("case", ["vacuum_exact", "vacuum_dose", "noise"])
def test_vacuum_and_noise_cannot_determine(case):
    if case == "noise":
        data = np.random.default_rng(1).poisson(2.0, (24, 24, *DET)).astype(np.uint16)
    else:
        dose = 1000.0 if case == "vacuum_dose" else None
        data = simulate(SimulationParams(**SIM, thickness_A=0.0, dose_e_per_probe=dose)).data
    rot = calibrate(data).rotation
    assert not rot.determined
    assert math.isnan(rot.rotation_deg) and rot.flip is None
    assert rot.confidence < 0.5
    assert rot.reason.startswith("cannot determine") and "give rotation_deg=DEG [flip=True]" in rot.reason
    d = rot.as_dict()
    assert d["rotation_deg"] is None and d["determined"] is False


def test_vacuum_with_descan_is_not_mistaken_for_structure():
    oy, ox = linear_descan()
    data = disc_patterns(CENTRE[0] + oy + 0.4 * (oy - 1) ** 2 / 3, CENTRE[1] + ox)  # plane + a bit of curvature
    assert not calibrate(data).rotation.determined


def test_pure_noise_fields_never_determined():
    rng = np.random.default_rng(7)
    conf = []
    for seed in range(30):
        r = find_rotation(rng.normal(size=(24, 24)), rng.normal(size=(24, 24)), seed=seed)
        assert not r.determined
        conf.append(r.confidence)
    assert max(conf) < 0.5


def test_one_dimensional_field_cannot_decide_the_flip():
    sx, _ = lattice_field((32, 32))
    x = np.arange(32.0)
    stripes = -(x - 16.0) * np.exp(-((x - 16.0) ** 2) / 8.0)
    r = find_rotation(np.tile(stripes, (32, 1)) + 1e-3 * sx, np.zeros((32, 32)))
    assert not r.determined and "flip" in r.reason


def test_auto_rotation_refuses_to_guess_on_vacuum():
    data = simulate(SimulationParams(**SIM, thickness_A=0.0, dose_e_per_probe=1000.0)).data
    _, rec, _ = ricom.api.reconstruct_run(data, kernel_size=5)
    with pytest.raises(SettingsError, match="cannot determine"):
        apply_auto_rotation(rec)
    out = apply_auto_rotation(rec, require=False)
    assert out["determined"] is False and rec.settings.geometry.rotation_deg == 0.0


# ---------------------------------------------------------------------- descan
def test_constant_plus_linear_descan_is_removed():
    descan = linear_descan()  # 1.2 + 0.05·iy − 0.03·ix, −0.8 + 0.02·iy + 0.06·ix
    clean = specimen_data(theta=30.0)
    shifted = specimen_data(theta=30.0, descan=descan)
    rep_c, rep_s = calibrate(clean), calibrate(shifted, descan="plane")
    fit = rep_s.descan
    assert fit.order == 1 and fit.terms == ((0, 0), (1, 0), (0, 1))  # 1, iy, ix from the scan centre
    # the fit sees descan + the specimen's own plane component (which it also removes)
    assert np.subtract(fit.coef_y, rep_c.descan.coef_y) == pytest.approx((1.43, 0.05, -0.03), abs=2e-3)
    assert np.subtract(fit.coef_x, rep_c.descan.coef_x) == pytest.approx((0.12, 0.02, 0.06), abs=2e-3)
    assert angle_error(rep_s.rotation.rotation_deg, 30.0) < 1.0
    # after applying, COM and riCOM equal those of the data without descan
    settings = ricom.Settings(kernel=ricom.KernelSettings(11))
    snaps = []
    for data, rep in ((shifted, rep_s), (clean, rep_c)):
        rec = ricom.Reconstruction((24, 24), DET, settings)
        rec.process_frames(data.reshape(-1, *DET), start=0)
        rep.apply(rec)
        snaps.append(rec.snapshot())
    fixed, ref = snaps
    assert np.abs(fixed.com_x - ref.com_x).max() < 0.03 and np.abs(fixed.com_y - ref.com_y).max() < 0.03
    assert pearson(fixed.ricom, ref.ricom) >= 0.999
    uncorrected = ricom.reconstruct(shifted, settings=settings.with_(geometry=rep_s.geometry()))
    assert np.abs(uncorrected.com_x - ref.com_x).max() > 0.5


def test_descan_from_vacuum_reference():
    descan = linear_descan()
    vacuum = disc_patterns(CENTRE[0] + descan[0], CENTRE[1] + descan[1])
    oy, ox = descan_from_reference(vacuum, scan_shape=(24, 24))
    assert np.allclose(oy, descan[0] - descan[0].mean(), atol=0.02)
    assert np.allclose(ox, descan[1] - descan[1].mean(), atol=0.02)
    cy, cx = center_from_reference(vacuum)
    assert (cy, cx) == pytest.approx((CENTRE[0] + descan[0].mean(), CENTRE[1] + descan[1].mean()), abs=0.01)
    rep = calibrate(specimen_data(theta=-75.0, descan=descan), center="reference", descan="reference",
                    reference=vacuum)
    assert rep.rotation.determined and angle_error(rep.rotation.rotation_deg, -75.0) < 1.0
    with pytest.raises(SettingsError, match="same scan"):
        descan_from_reference(vacuum, scan_shape=(12, 48))
    stack_oy, _ = descan_from_reference(vacuum.reshape(-1, *DET), scan_shape=(24, 24))  # 3D: the data's shape
    assert np.allclose(stack_oy, oy)


def test_apply_descan_modes_on_engine():
    descan = linear_descan()
    data = specimen_data(theta=0.0, descan=descan)
    rec = ricom.Reconstruction((24, 24), DET, ricom.Settings(kernel=ricom.KernelSettings(11)))
    rec.process_frames(data.reshape(-1, *DET), start=0)
    out = apply_descan(rec, "plane")
    assert out["descan"] == "plane" and out["descan_terms"] == ["1", "iy", "ix"]
    vacuum = disc_patterns(CENTRE[0] + descan[0], CENTRE[1] + descan[1])
    assert apply_descan(rec, "reference", vacuum) == {"descan": "reference"}
    assert apply_descan(rec, "none") == {"descan": "none"}
    with pytest.raises(SettingsError, match="give reference=FILE"):
        apply_descan(rec, "reference")
    with pytest.raises(SettingsError, match="descan must be"):
        apply_descan(rec, "cubic-ish")


def test_fit_descan_ignores_empty_positions_and_outliers():
    iy, ix = np.mgrid[0:20, 0:30].astype(float)
    cy, cx = 16.0 + 0.02 * ix - 0.01 * iy, 15.0 + 0.03 * iy
    cy, cx = cy.copy(), cx.copy()
    cy[3:6, 4:9] = np.nan  # empty positions
    cy[10, 10], cx[12, 20] = 40.0, -20.0  # two wild positions
    oy, ox = fit_descan(cy, cx)
    assert np.allclose(oy, 0.02 * (ix - 14.5) - 0.01 * (iy - 9.5), atol=1e-3)
    assert np.allclose(ox, 0.03 * (iy - 9.5), atol=1e-3)
    fit = fit_descan_model(cy, cx, order=2)
    assert fit.coef_y[0] == pytest.approx(16.0 + 0.02 * 14.5 - 0.01 * 9.5, abs=1e-3)
    with pytest.raises(SettingsError, match="order"):
        fit_descan(cy, cx, order=5)
    with pytest.raises(SettingsError, match="non-empty"):
        fit_descan(np.full((3, 3), np.nan), np.full((3, 3), np.nan))


# ---------------------------------------------------------------------- centre
@pytest.mark.parametrize("centre", [(14.3, 17.6), (16.0, 16.0), (3.4, 16.7)])  # the last is cut by the edge
def test_center_from_disc_is_sub_pixel(centre):
    yy, xx = np.indices(DET)
    pattern = np.clip(7.5 - np.hypot(yy - centre[0], xx - centre[1]), 0, 1) * 100.0
    pattern = np.random.default_rng(0).poisson(pattern + 2.0).astype(float)
    assert center_from_disc(pattern) == pytest.approx(centre, abs=0.05)
    pattern[30, 1] = 1e6  # a hot pixel
    assert center_from_disc(pattern) == pytest.approx(centre, abs=0.05)


def test_centres_of_simulated_data_agree():
    sim = simulate(SimulationParams(**SIM, thickness_A=0.0))
    rep = calibrate(sim.data, center="disc")
    assert rep.center_yx == pytest.approx(sim.center_yx, abs=0.05)
    assert rep.center_com_yx == pytest.approx(sim.center_yx, abs=0.05)
    assert rep.disc.radius_px > 5


def test_centre_errors_are_one_line():
    with pytest.raises(SettingsError, match="no bright-field disc"):
        center_from_disc(np.ones(DET))
    with pytest.raises(SettingsError, match="no scan position has counts"):
        center_from_mean_com(np.full((2, 2), np.nan), np.full((2, 2), np.nan))
    yy, xx = np.indices(DET)
    pattern = (np.hypot(yy - 12.0, xx - 19.0) < 6).astype(float)
    assert center_from_reference(pattern, method="disc") == pytest.approx((12.0, 19.0), abs=0.05)
    assert center_from_reference(pattern) == pytest.approx((12.0, 19.0), abs=1e-9)


# ---------------------------------------------------------------------- command line
def test_cli_calibrate_prints_and_writes_json(tmp_path, capsys):
    from ricom.cli.main import main

    sim = simulate(SimulationParams(**SIM, rotation_deg=-75.0, flip=True))
    np.save(tmp_path / "d.npy", sim.data)
    out = tmp_path / "cal.json"
    assert main(["calibrate", str(tmp_path / "d.npy"), "--json", str(out), "--no-progress"]) == 0
    text = capsys.readouterr().out
    assert "flip: yes" in text and "--rotation 28" in text
    rep = json.loads(out.read_text())
    assert angle_error(rep["rotation"]["rotation_deg"], -75.0) < 1.0 and rep["rotation"]["flip"] is True
    assert rep["descan"]["method"] == "plane" and len(rep["center_yx"]) == 2


def test_cli_calibrate_vacuum_says_cannot_determine(tmp_path, capsys):
    from ricom.cli.main import main

    data = simulate(SimulationParams(**SIM, thickness_A=0.0, dose_e_per_probe=1000.0)).data
    np.save(tmp_path / "v.npy", data)
    out = tmp_path / "v.json"
    assert main(["calibrate", str(tmp_path / "v.npy"), "--json", str(out), "--no-progress"]) == 0
    assert "cannot determine" in capsys.readouterr().out
    assert json.loads(out.read_text())["rotation"]["rotation_deg"] is None
    assert main(["calibrate", str(tmp_path / "v.npy"), "--require", "--no-progress"]) == 2
    assert capsys.readouterr().err.startswith("ricom: error: cannot determine")
    assert main(["calibrate", str(tmp_path / "v.npy"), "--descan", "reference", "--no-progress"]) == 2


def test_cli_reconstruct_rotation_auto(tmp_path):
    h5py = pytest.importorskip("h5py")
    from ricom.cli.main import main

    sim = simulate(SimulationParams(**SIM, rotation_deg=17.0))
    np.save(tmp_path / "d.npy", sim.data)
    out = tmp_path / "r.h5"
    assert main(["reconstruct", str(tmp_path / "d.npy"), "-o", str(out), "--rotation", "auto",
                 "--kernel-size", "11", "--no-progress"]) == 0
    with h5py.File(out) as f:
        assert angle_error(float(f.attrs["rotation_deg"]), 17.0) < 1.0
        assert not bool(f.attrs["flip"])
