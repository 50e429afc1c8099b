"""The incremental engine against the slow reference: order, chunking, settings changes."""
from __future__ import annotations

import math
import threading

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import reference as ref
from ricom import (
    Calibration,
    DetectorGeometry,
    KernelSettings,
    Reconstruction,
    Settings,
    SettingsError,
    VirtualDetector,
)
from ricom.core.errors import InputError


def make(data, kernel=5, center=(7.5, 7.5), **kw):
    s = Settings(kernel=KernelSettings(kernel), geometry=DetectorGeometry(center_yx=center, **kw))
    return Reconstruction(data.shape[:2], data.shape[2:], s)


def test_sequential_equals_reference(poisson_data):
    rec = make(poisson_data)
    rec.process_frames(poisson_data.reshape(-1, 16, 16), start=0)
    cx, cy = ref.com_maps(poisson_data, (7.5, 7.5))
    snap = rec.snapshot()
    np.testing.assert_allclose(snap.com_x, cx, atol=1e-12)
    np.testing.assert_allclose(snap.com_y, cy, atol=1e-12)
    np.testing.assert_allclose(snap.ricom, ref.ricom(cx, cy, 5), atol=1e-12)
    assert snap.n_patterns == 72


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), chunk=st.integers(1, 40), kernel=st.sampled_from([3, 5, 9, 13]))
def test_any_order_and_chunking_gives_the_same_image(seed, chunk, kernel):
    rng = np.random.default_rng(seed)
    data = rng.poisson(rng.random((16, 16)) * 8 + 1, (6, 7, 16, 16)).astype(np.uint16)
    frames = data.reshape(-1, 16, 16)
    order = rng.permutation(frames.shape[0])
    rec = make(data, kernel)
    for i in range(0, len(order), chunk):
        idx = order[i:i + chunk]
        rec.process_frames(frames[idx], positions=idx)
    cx, cy = ref.com_maps(data, (7.5, 7.5))
    np.testing.assert_allclose(rec.snapshot().ricom, ref.ricom(cx, cy, kernel), rtol=1e-10, atol=1e-12)


def test_kernel_change_mid_scan_gives_the_new_kernels_image(poisson_data):
    frames = poisson_data.reshape(-1, 16, 16)
    rec = make(poisson_data, 5)
    rec.process_frames(frames[:30], start=0)
    rec.update_settings(rec.settings.with_(kernel=KernelSettings(11)))
    rec.process_frames(frames[30:], positions=np.arange(30, 72))
    fresh = make(poisson_data, 11)
    fresh.process_frames(frames, start=0)
    np.testing.assert_allclose(rec.snapshot().ricom, fresh.snapshot().ricom, rtol=1e-10, atol=1e-12)
    cx, cy = ref.com_maps(poisson_data, (7.5, 7.5))
    np.testing.assert_allclose(rec.snapshot().ricom, ref.ricom(cx, cy, 11), rtol=1e-10, atol=1e-12)


def test_partial_scan_image_is_the_correlation_of_what_was_seen(poisson_data):
    frames = poisson_data.reshape(-1, 16, 16)
    rec = make(poisson_data, 7)
    rec.process_frames(frames[:40], start=0)
    rec.update_settings(rec.settings.with_(geometry=DetectorGeometry((7.0, 8.0), 30.0, True)))
    seen = poisson_data.copy()
    seen.reshape(-1, 16, 16)[40:] = 0
    cx, cy = ref.com_maps(seen, (7.0, 8.0))
    rx, ry = ref.rotate(cx, cy, 30.0, True)
    np.testing.assert_allclose(rec.snapshot().ricom, ref.ricom(rx, ry, 7), rtol=1e-10, atol=1e-12)


def test_calibration_gives_volt_angstrom(poisson_data):
    from ricom.core.units import rad_to_volt_angstrom
    s = Settings(kernel=KernelSettings(5), geometry=DetectorGeometry((7.5, 7.5)),
                 calibration=Calibration(step_A=0.3, pixel_size_mrad=1.7, energy_keV=200))
    rec = Reconstruction((8, 9), (16, 16), s)
    rec.process_frames(poisson_data.reshape(-1, 16, 16), start=0)
    cx, cy = ref.com_maps(poisson_data, (7.5, 7.5), 1.7)
    snap = rec.snapshot()
    np.testing.assert_allclose(snap.com_x, cx, atol=1e-12)
    want = ref.ricom(cx, cy, 5, 0.3) * 1e-3 * rad_to_volt_angstrom(200)
    np.testing.assert_allclose(snap.ricom, want, rtol=1e-10)
    np.testing.assert_allclose(snap.signal("icom"), ref.icom(cx, cy, 0.3) * 1e-3 * rad_to_volt_angstrom(200),
                               rtol=1e-9, atol=1e-9 * np.abs(want).max())
    assert snap.unit("ricom") == "V·Å" and snap.unit("com_x") == "mrad"


@pytest.mark.parametrize("theta", [17.0, -75.0, 123.0])
@pytest.mark.parametrize("flip", [False, True])
def test_rotation_sign_recovers_a_known_field(theta, flip):
    """Patterns whose spot moves along R(−θ)·v (and mirrored): --rotation θ recovers v."""
    yy, xx = np.mgrid[0:9, 0:10] / 3.0
    vx, vy = np.sin(xx) * 2.0, np.cos(yy) * 1.5  # the true scan-frame field, in pixels
    t = math.radians(-theta)
    dx = vx * math.cos(t) - vy * math.sin(t)
    dy = vx * math.sin(t) + vy * math.cos(t)
    if flip:
        dx = -dx
    data = ref.shifted_spot_patterns(dx, dy)
    s = Settings(kernel=KernelSettings(5), geometry=DetectorGeometry((11.5, 11.5), theta, flip))
    rec = Reconstruction((9, 10), (24, 24), s)
    rec.process_frames(data.reshape(-1, 24, 24), start=0)
    snap = rec.snapshot()
    np.testing.assert_allclose(snap.com_x, vx, atol=1e-6)
    np.testing.assert_allclose(snap.com_y, vy, atol=1e-6)


def test_repeated_frames_sum_at_a_position(poisson_data):
    frames = poisson_data.reshape(-1, 16, 16)
    rec = make(poisson_data)
    rec.process_frames(frames, start=0)
    rec.process_frames(frames[::-1], positions=np.arange(71, -1, -1))  # second pass, reversed
    doubled = make(poisson_data)
    doubled.process_frames(frames.astype(np.int64) * 2, start=0)
    np.testing.assert_allclose(rec.snapshot().ricom, doubled.snapshot().ricom, rtol=1e-10, atol=1e-12)
    assert rec.snapshot().hits.max() == 2 and rec.n_patterns == 144


def test_nan_patterns_are_skipped_and_counted(poisson_data):
    data = poisson_data.astype(np.float32)
    data[2, 3, 4, 5] = np.nan
    data[5, 1, 0, 0] = np.inf
    rec = make(data)
    rec.process_frames(data.reshape(-1, 16, 16), start=0)
    snap = rec.snapshot()
    assert rec.n_invalid == 2 and snap.n_patterns == 70
    assert np.isfinite(snap.ricom).all()
    assert snap.com_x[2, 3] == 0 and snap.hits[2, 3] == 0


def test_empty_patterns_have_zero_com(poisson_data):
    data = poisson_data.copy()
    data[1, 1] = 0
    rec = make(data)
    rec.process_frames(data.reshape(-1, 16, 16), start=0)
    assert rec.n_empty == 1
    assert rec.snapshot().com_x[1, 1] == 0.0


def test_auto_centre_is_the_mean_com_and_final_image_exact(poisson_data):
    frames = poisson_data.reshape(-1, 16, 16)
    s = Settings(kernel=KernelSettings(5))
    rec = Reconstruction((8, 9), (16, 16), s)
    for i in range(0, 72, 10):
        rec.process_frames(frames[i:i + 10], start=i)
    rec.finalize()
    raw_x, raw_y = ref.com_maps(poisson_data, (0.0, 0.0))
    centre = (raw_y.mean(), raw_x.mean())
    assert rec.snapshot().center_yx == pytest.approx(centre, abs=1e-9)
    cx, cy = ref.com_maps(poisson_data, centre)
    np.testing.assert_allclose(rec.snapshot().ricom, ref.ricom(cx, cy, 5), rtol=1e-9, atol=1e-12)


def test_reference_centre_is_used():
    rec = Reconstruction((4, 4), (16, 16), Settings(kernel=KernelSettings(3)), reference_center_yx=(6.0, 9.0))
    assert rec.center_yx() == (6.0, 9.0)


def test_descan_offsets_shift_the_centre(poisson_data):
    rec = make(poisson_data)
    rec.process_frames(poisson_data.reshape(-1, 16, 16), start=0)
    oy = np.full((8, 9), 0.5)
    ox = np.linspace(-1, 1, 72).reshape(8, 9)
    rec.set_descan(oy, ox)
    cx, cy = ref.com_maps(poisson_data, (7.5, 7.5))
    np.testing.assert_allclose(rec.snapshot().com_x, cx - ox, atol=1e-12)
    np.testing.assert_allclose(rec.snapshot().com_y, cy - oy, atol=1e-12)


def test_com_mask_limits_the_sums(poisson_data):
    s = Settings(kernel=KernelSettings(5), geometry=DetectorGeometry((7.5, 7.5)), com_mask_px=(0.0, 5.0))
    rec = Reconstruction((8, 9), (16, 16), s)
    rec.process_frames(poisson_data.reshape(-1, 16, 16), start=0)
    yy, xx = np.indices((16, 16))
    masked = poisson_data * (np.hypot(yy - 7.5, xx - 7.5) < 5.0)
    cx, _ = ref.com_maps(masked, (7.5, 7.5))
    np.testing.assert_allclose(rec.snapshot().com_x, cx, atol=1e-12)


def test_virtual_detectors_match_masks(poisson_data):
    vds = (VirtualDetector("vbf", 0, 3), VirtualDetector("vabf", 1.5, 3), VirtualDetector("vadf", 4, math.inf))
    s = Settings(kernel=KernelSettings(5), geometry=DetectorGeometry((7.5, 7.5)), virtual_detectors=vds)
    rec = Reconstruction((8, 9), (16, 16), s)
    rec.process_frames(poisson_data.reshape(-1, 16, 16), start=0)
    snap = rec.snapshot()
    for vd in vds:
        np.testing.assert_allclose(snap.virtual[vd.name],
                                   ref.annulus_sum(poisson_data, (7.5, 7.5), vd.inner, vd.outer))


def test_mrad_virtual_detector_needs_pixel_size():
    with pytest.raises(SettingsError, match="pixel size"):
        Reconstruction((4, 4), (8, 8), Settings(virtual_detectors=(VirtualDetector("v", 1, 2, "mrad"),),
                                                kernel=KernelSettings(3)))


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, ">u2", ">u4", ">f4", np.uint32, np.uint64, np.int16,
                                   np.int32, np.float32, np.float64])
def test_dtypes(poisson_data, dtype):
    data = poisson_data.astype(dtype)
    rec = make(data)
    rec.process_frames(data.reshape(-1, 16, 16), start=0)
    cx, _ = ref.com_maps(poisson_data, (7.5, 7.5))
    np.testing.assert_allclose(rec.snapshot().com_x, cx, atol=1e-5)


def test_snapshots_from_another_thread_are_consistent(poisson_data):
    """Every snapshot's image is exactly the correlation of the COM maps it comes with."""
    from ricom.engine.ricom_update import correlate, correlation_kernels
    big = np.tile(poisson_data, (4, 4, 1, 1))
    rec = make(big, 7)
    frames = big.reshape(-1, 16, 16)
    snaps = []
    done = threading.Event()

    def watch():
        while not done.is_set():
            snaps.append(rec.snapshot())

    t = threading.Thread(target=watch)
    t.start()
    for i in range(0, frames.shape[0], 16):
        rec.process_frames(frames[i:i + 16], start=i)
    done.set()
    t.join()
    wx, wy = correlation_kernels(KernelSettings(7), 1.0)
    for s in snaps[:: max(1, len(snaps) // 20)]:
        np.testing.assert_allclose(s.ricom, correlate(s.com_x, s.com_y, wx, wy), atol=1e-9)


def test_process_moments_equals_frames(poisson_data):
    from ricom.engine import compiled as C
    frames = poisson_data.reshape(-1, 16, 16)
    a = make(poisson_data)
    a.process_frames(frames, start=0)
    m = np.zeros((3, 72))
    C.frame_moments_weighted(frames, np.ones((1, 1), np.int64), False, m)
    b = make(poisson_data)
    b.process_moments(np.arange(72), m)
    np.testing.assert_allclose(a.snapshot().ricom, b.snapshot().ricom, atol=1e-12)


def test_positions_minus_one_are_skipped(poisson_data):
    frames = poisson_data.reshape(-1, 16, 16)
    rec = make(poisson_data)
    pos = np.arange(72)
    pos[::5] = -1
    rec.process_frames(frames, positions=pos)
    assert rec.n_outside == 15 and rec.n_patterns == 57


@pytest.mark.parametrize("bad", [
    dict(kernel=4), dict(kernel=1), dict(kernel=101), dict(center=(20.0, 3.0)), dict(center=(3.0, -1.0)),
])
def test_bad_settings_fail_with_one_line(poisson_data, bad):
    with pytest.raises(SettingsError) as exc:
        make(poisson_data, **bad)
    assert "\n" not in str(exc.value)


def test_wrong_pattern_shape_and_position(poisson_data):
    rec = make(poisson_data)
    with pytest.raises(InputError, match="detector shape"):
        rec.process_frames(np.zeros((2, 8, 8)), start=0)
    with pytest.raises(InputError, match="outside"):
        rec.process_frames(np.zeros((1, 16, 16)), positions=[500])


def test_quick_dataset_all_doses_against_the_contract(quick_params):
    from conftest import QUICK
    from ricom.core.units import rad_to_volt_angstrom
    d = quick_params["detector"]["pixel_size_mrad"]
    c = tuple(quick_params["detector"]["optical_axis_index_yx"])
    h = quick_params["scan"]["step_A"]
    blurred = np.load(f"{QUICK}/potential_scan_probe_blurred.npy")
    for case in ("intensity", "counts_dose1e5", "counts_dose1e4", "counts_dose1e3", "counts_dose1e2"):
        data = np.load(f"{QUICK}/{case}.npy")
        cx, cy = ref.com_maps(data, c, d)
        for n in (5, 21):
            s = Settings(kernel=KernelSettings(n), geometry=DetectorGeometry(c),
                         calibration=Calibration(h, d, 300.0))
            rec = Reconstruction((16, 16), (32, 32), s)
            rec.process_frames(data.reshape(-1, 32, 32), start=0)
            snap = rec.snapshot()
            want = ref.ricom(cx, cy, n, h) * 1e-3 * rad_to_volt_angstrom(300.0)
            assert ref.pearson(snap.ricom, want) >= 0.9999
            assert np.std(snap.ricom) / np.std(want) == pytest.approx(1.0, abs=0.02)
            assert np.abs(snap.com_x - cx).max() <= 1e-3
            assert ref.pearson(snap.ricom, blurred) > 0.85  # atoms bright


def test_replace_mode_shows_the_newest_pass(poisson_data, rng):
    frames = poisson_data.reshape(-1, 16, 16)
    other = rng.poisson(3.0, frames.shape).astype(np.uint16)
    s = Settings(kernel=KernelSettings(5), geometry=DetectorGeometry((7.5, 7.5)))
    rec = Reconstruction((8, 9), (16, 16), s, repeats="replace")
    rec.process_frames(frames, start=0, scan_pass=0)
    rec.process_frames(other[:40], positions=np.arange(40), scan_pass=1)
    mixed = np.concatenate([other[:40], frames[40:]])
    fresh = make(poisson_data)
    fresh.process_frames(mixed, start=0)
    np.testing.assert_allclose(rec.snapshot().ricom, fresh.snapshot().ricom, rtol=1e-10, atol=1e-12)
    assert rec.snapshot().hits.max() == 1


@pytest.mark.parametrize("big_endian", [False, True])
def test_packed_frames_with_headers_equal_plain_frames(poisson_data, big_endian):
    """Frames inside a buffer with 384-byte headers (as in a Merlin file) are read in place."""
    from ricom.core.chunks import PackedFrames
    frames = poisson_data.reshape(-1, 16, 16)
    stored = frames.astype(">u2" if big_endian else "<u2").reshape(72, -1).view(np.uint8)
    buf = np.zeros((72, 384 + stored.shape[1]), np.uint8)
    buf[:, 384:] = stored
    packed = PackedFrames(buf.view(np.uint16), 192, (16, 16), big_endian)
    np.testing.assert_array_equal(packed[5], frames[5])
    vds = (VirtualDetector("vbf", 0, 3), VirtualDetector("vadf", 4, math.inf))
    s = Settings(kernel=KernelSettings(5), geometry=DetectorGeometry((7.5, 7.5)), virtual_detectors=vds)
    a, b = Reconstruction((8, 9), (16, 16), s), Reconstruction((8, 9), (16, 16), s)
    a.process_frames(packed, start=0)
    b.process_frames(frames, start=0)
    np.testing.assert_array_equal(a.snapshot().ricom, b.snapshot().ricom)
    np.testing.assert_array_equal(a.snapshot().virtual["vadf"], b.snapshot().virtual["vadf"])
    np.testing.assert_allclose(a.snapshot().virtual["vbf"], ref.annulus_sum(poisson_data, (7.5, 7.5), 0, 3))


@pytest.mark.parametrize("packed", [False, True])
def test_threads_give_the_same_image(poisson_data, packed):
    from ricom.core.chunks import PackedFrames
    frames = poisson_data.reshape(-1, 16, 16)
    data = PackedFrames(frames.reshape(72, -1).copy(), 0, (16, 16)) if packed else frames
    vds = (VirtualDetector("vadf", 4, math.inf),)
    s = Settings(kernel=KernelSettings(5), geometry=DetectorGeometry((7.5, 7.5)), virtual_detectors=vds)
    one, two = Reconstruction((8, 9), (16, 16), s), Reconstruction((8, 9), (16, 16), s, threads=3)
    one.process_frames(frames, start=0)
    two.process_frames(data, start=0)
    np.testing.assert_array_equal(one.snapshot().ricom, two.snapshot().ricom)
    np.testing.assert_array_equal(one.snapshot().virtual["vadf"], two.snapshot().virtual["vadf"])


def test_settings_change_while_moments_are_computed(poisson_data):
    """A virtual-detector change between the moments and the scatter is picked up, not mixed."""
    frames = poisson_data.reshape(-1, 16, 16)
    s = Settings(kernel=KernelSettings(5), geometry=DetectorGeometry((7.5, 7.5)))
    rec = Reconstruction((8, 9), (16, 16), s)
    original = rec._reduce

    def slow(*args):
        out = original(*args)
        if not hasattr(rec, "_changed"):
            rec._changed = True
            rec.update_settings(s.with_(virtual_detectors=(VirtualDetector("vbf", 0, 3),)))
        return out

    rec._reduce = slow
    rec.process_frames(frames, start=0)
    np.testing.assert_allclose(rec.snapshot().virtual["vbf"], ref.annulus_sum(poisson_data, (7.5, 7.5), 0, 3))


def test_snapshot_right_after_a_virtual_detector_change(poisson_data):
    vds = (VirtualDetector("vbf", 0, 3),)
    s = Settings(kernel=KernelSettings(5), geometry=DetectorGeometry((7.5, 7.5)), virtual_detectors=vds)
    rec = Reconstruction((8, 9), (16, 16), s)
    rec.process_frames(poisson_data.reshape(-1, 16, 16), start=0)
    rec.update_settings(s.with_(virtual_detectors=(VirtualDetector("vadf", 4, 8),)))
    snap = rec.snapshot()  # the new detector starts from zero; no stale ring rows
    assert set(snap.virtual) == {"vadf"} and not snap.virtual["vadf"].any()


def test_virtual_detector_change_then_more_data(poisson_data):
    frames = poisson_data.reshape(-1, 16, 16)
    s = Settings(kernel=KernelSettings(5), geometry=DetectorGeometry((7.5, 7.5)),
                 virtual_detectors=(VirtualDetector("vbf", 0, 3),))
    rec = Reconstruction((8, 9), (16, 16), s)
    rec.process_frames(frames[:30], start=0)
    rec.update_settings(s.with_(virtual_detectors=(VirtualDetector("vadf", 4, 8),)))
    rec.process_frames(frames[30:], positions=np.arange(30, 72))
    want = ref.annulus_sum(poisson_data, (7.5, 7.5), 4, 8).ravel()
    want[:30] = 0
    np.testing.assert_allclose(rec.snapshot().virtual["vadf"].ravel(), want)


@pytest.mark.parametrize("order", ["raster", "random"])
def test_block_fft_scatter_equals_direct_scatter(poisson_data, monkeypatch, order):
    """The FFT scatter of whole chunks gives the direct scatter's image (edges clipped)."""
    from ricom.engine.ricom_update import BlockScatter
    frames = poisson_data.reshape(-1, 16, 16)
    pos = np.arange(72) if order == "raster" else np.random.default_rng(3).permutation(72)
    s = Settings(kernel=KernelSettings(7), geometry=DetectorGeometry((7.5, 7.5)))
    images = []
    for cost in (0.0, np.inf):  # always the FFT, never the FFT
        monkeypatch.setattr(BlockScatter, "FFT_COST", cost)
        rec = Reconstruction((8, 9), (16, 16), s)
        for a in range(0, 72, 20):
            rec.process_frames(frames[pos[a:a + 20]], positions=pos[a:a + 20])
        images.append(rec.snapshot().ricom)
    np.testing.assert_allclose(images[0], images[1], rtol=0, atol=1e-12 * np.abs(images[1]).max())
    assert np.abs(images[1]).max() > 0
