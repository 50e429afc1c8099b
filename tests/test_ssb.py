"""Single side-band ptychography (ricom.phase.ssb): against a plain-NumPy SSB from the formulas,
live (any chunking and order) against offline, memory plans and refusals, aberration
correction on simulated defocus, and the quick SrTiO3 data against riCOM-21."""
from __future__ import annotations

import json
import os
import tracemalloc

import numpy as np
import pytest

from reference_ssb import reference_ssb
from ricom.api import reconstruct
from ricom.core.chunks import EventChunk
from ricom.core.errors import SettingsError
from ricom.core.params import Calibration, DetectorGeometry, Settings
from ricom.engine.pipeline import run
from ricom.engine.reconstruction import Reconstruction
from ricom.phase.ssb import SsbOptions, SsbReducer, attach_ssb, live_plan, ssb_offline
from ricom.simulators.specimen import SimulationParams, simulate
from ricom.sources.arrays import ArraySource
from ricom.sources.base import Source
from ricom.tools.report import correlation

QUICK = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "quick_srtio3")


@pytest.fixture(scope="module")
def defocused():
    """A thin (weak-phase) specimen 150 Å underfocus, detector rotated by 30° and flipped."""
    p = SimulationParams(scan_shape=(12, 10), detector_shape=(24, 24), step_A=0.3, defocus_A=150.0,
                         thickness_A=7.81, rotation_deg=30.0, flip=True, dose_e_per_probe=5e4, seed=3)
    sim = simulate(p)
    cal = Calibration(p.step_A, sim.pixel_size_mrad, p.energy_keV)
    return sim, cal, DetectorGeometry(sim.center_yx, 30.0, True)


def _rel(a, b):
    return float(np.abs(a - b).max() / np.abs(b).max())


@pytest.mark.parametrize("bin_factor, flat, aberrations", [
    (1, False, dict(defocus_A=150.0)),
    (2, False, dict(defocus_A=120.0, astigmatism_A=30.0, astigmatism_angle_deg=25.0, cs_mm=0.5)),
    (3, True, dict(defocus_A=-40.0))])
def test_offline_equals_the_plain_numpy_formulas(defocused, bin_factor, flat, aberrations):
    sim, cal, geo = defocused
    centre = (11.3, 12.2)  # off the pixel grid: the binned pixels' offsets matter
    opts = SsbOptions(20.0, bin_factor=bin_factor, flat_transfer=flat, **aberrations)
    got = ssb_offline(sim.data, opts, cal, DetectorGeometry(centre, geo.rotation_deg, geo.flip)).image
    want = reference_ssb(sim.data, cal.step_A, cal.pixel_size_mrad, cal.energy_keV, 20.0, centre, bin_factor,
                         rotation_deg=30.0, flip=True, flat_transfer=flat, **aberrations)
    assert np.abs(want).max() > 1e-3
    assert _rel(got, want) < 1e-10


def test_live_in_any_order_and_chunking_equals_offline(defocused):
    sim, cal, geo = defocused
    opts = SsbOptions(20.0, defocus_A=150.0, bin_factor=2)
    frames = sim.data.reshape(-1, *sim.data.shape[2:])
    rec = Reconstruction(sim.data.shape[:2], frames.shape[1:], Settings(calibration=cal, geometry=geo))
    ssb = attach_ssb(rec, opts)
    order = np.random.default_rng(1).permutation(len(frames))
    for part in np.array_split(order, 7):
        rec.process_frames(frames[part], positions=part)
    offline = ssb_offline(sim.data, opts, cal, geo)
    assert ssb.n_patterns == offline.n_patterns == len(frames)
    assert _rel(ssb.image(), offline.image) < 1e-10
    assert correlation(ssb.image(), sim.potential) > 0.6  # 0.73: a 12×10 scan, 6.6 mrad binned pixels


def test_live_with_the_running_centre_equals_offline_with_the_mean_com(defocused):
    sim, cal, geo = defocused
    opts = SsbOptions(20.0, defocus_A=150.0)
    auto = DetectorGeometry(None, geo.rotation_deg, geo.flip)
    rec = Reconstruction(sim.data.shape[:2], sim.data.shape[2:], Settings(calibration=cal, geometry=auto))
    ssb = attach_ssb(rec, opts)
    run(ArraySource(sim.data), rec, chunk_size=16)
    offline = ssb_offline(sim.data, opts, cal, auto)
    assert offline.plan.centre_pass
    assert np.allclose(offline.center_yx, rec.center_yx(), atol=1e-12)
    assert _rel(ssb.get_results()["ssb"], offline.image) < 1e-10


def test_changing_the_defocus_live_needs_no_new_data(defocused):
    sim, cal, geo = defocused
    rec = Reconstruction(sim.data.shape[:2], sim.data.shape[2:], Settings(calibration=cal, geometry=geo))
    ssb = attach_ssb(rec, SsbOptions(20.0))
    rec.process_frames(sim.data.reshape(-1, *sim.data.shape[2:]), start=0)
    unfocused = correlation(ssb.image(), sim.potential)

    class Fit:  # what a tcBF fit hands over
        defocus_A = 150.0

    ssb.update(options=ssb.options.with_defocus(Fit()))
    corrected = ssb.image()
    assert correlation(corrected, sim.potential) > max(0.8, unfocused + 0.3)
    assert _rel(corrected, ssb_offline(sim.data, SsbOptions(20.0, defocus_A=150.0), cal, geo).image) < 1e-10
    wrong_sign = ssb_offline(sim.data, SsbOptions(20.0, defocus_A=-150.0), cal, geo).image
    assert correlation(wrong_sign, sim.potential) < 0.5


def test_offline_in_several_passes_equals_one_and_plans_before_reading(defocused):
    sim, cal, geo = defocused
    opts = SsbOptions(20.0, defocus_A=150.0)
    reads, plans = [], []

    class Counting(ArraySource):
        def chunks(self, chunk_size=256):
            reads.append(chunk_size)
            yield from super().chunks(chunk_size)

    one = ssb_offline(sim.data, opts, cal, geo)
    tracemalloc.start()
    small = ssb_offline(Counting(sim.data), opts, cal, geo, max_memory_bytes=300_000, chunk_size=32,
                        on_plan=lambda p: plans.append((p, len(reads))))
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak <= 300_000, peak
    assert one.plan.n_passes == 1 and small.plan.n_passes > 2
    assert plans == [(small.plan, 0)] and len(reads) == small.plan.n_passes
    assert small.plan.bytes_needed <= 300_000
    assert _rel(small.image, one.image) < 1e-10
    with pytest.raises(SettingsError, match="raise max_memory_bytes"):
        ssb_offline(sim.data, opts, cal, geo, max_memory_bytes=1000)


def test_live_refuses_past_its_memory_limit_in_one_line():
    cal = Calibration(0.2, 1.0, 300.0)
    plan = live_plan((512, 512), (128, 128), SsbOptions(25.0, bin_factor=2), cal)
    assert plan.accumulator_bytes == 512 * 257 * plan.max_pixels * 16
    assert "512×512 scan, 64×64 binned patterns" in plan.describe()
    rec = Reconstruction((512, 512), (128, 128), Settings(calibration=cal))
    with pytest.raises(SettingsError) as err:
        attach_ssb(rec, SsbOptions(25.0, bin_factor=2), max_memory_bytes=1 << 30)
    msg = str(err.value)
    assert "\n" not in msg and "512×512 scan" in msg and "64×64 binned" in msg and "GiB" in msg
    assert not rec.reducers


def test_ssb_needs_the_calibration():
    with pytest.raises(SettingsError, match="pixel_size_mrad"):
        SsbReducer((4, 4), (16, 16), SsbOptions(20.0), Calibration(step_A=0.2, energy_keV=300.0))
    with pytest.raises(SettingsError, match="convergence"):
        SsbOptions(0.0)


def _quick(name):
    with open(os.path.join(QUICK, "params.json")) as fh:
        p = json.load(fh)
    cal = Calibration(p["scan"]["step_A"], p["detector"]["pixel_size_mrad"], p["microscope"]["energy_eV"] / 1e3)
    centre = tuple(float(v) for v in p["detector"]["optical_axis_index_yx"])
    return np.load(os.path.join(QUICK, name)), cal, centre, p["microscope"]["convergence_semiangle_mrad"]


@pytest.mark.skipif(not os.path.isdir(QUICK), reason="the quick SrTiO3 data are not here")
@pytest.mark.parametrize("name", ["intensity.npy", "counts_dose1e4.npy"])
def test_quick_srtio3_correlates_with_the_potential_at_least_as_ricom_21(name):
    data, cal, centre, alpha = _quick(name)
    truth = np.load(os.path.join(QUICK, "potential_scan.npy"))
    ssb = ssb_offline(data, SsbOptions(alpha), cal, DetectorGeometry(centre)).image
    ricom = reconstruct(data, kernel_size=21, center_yx=centre, step_A=cal.step_A,
                        pixel_size_mrad=cal.pixel_size_mrad, energy_keV=cal.energy_keV).ricom
    r_ssb, r_ricom = correlation(ssb, truth), correlation(ricom, truth)
    assert r_ssb >= r_ricom > 0.8, (r_ssb, r_ricom)  # 0.825 vs 0.821 noiseless, 0.825 vs 0.819 at 1e4 e⁻


class _Events(Source):
    """The patterns of a 4D count array as single-electron events (random arrival times)."""

    kind = "events"

    def __init__(self, counts, t_ns) -> None:
        self.counts, self.t_ns = counts, t_ns
        self.scan_shape, self.detector_shape = counts.shape[:2], counts.shape[2:]

    def chunks(self, chunk_size=256):
        flat = self.counts.reshape(-1, *self.detector_shape)
        for start in range(0, len(flat), 7):
            part = flat[start:start + 7]
            k, row, col = np.nonzero(part)
            n = part[k, row, col]
            pos = np.repeat(start + k, n)
            t = None if self.t_ns is None else self.t_ns[start:start + 7][k, row, col].repeat(n)
            yield EventChunk(pos, np.repeat(col, n).astype(np.float32), np.repeat(row, n).astype(np.float32),
                             t_ns=t, positions_done=np.arange(start, start + len(part)))


def test_events_offline_and_live_equal_the_patterns_they_make(defocused):
    sim, cal, geo = defocused
    counts = sim.data.astype(np.int64)
    t_ns = np.random.default_rng(2).uniform(0, 1000, counts.reshape(-1, *counts.shape[2:]).shape)
    # one arrival time per pixel of each pattern: all its events arrive then, so the accepted
    # events make the patterns `counts` masked by t < acceptance
    accepted = counts * (t_ns < 400).reshape(counts.shape)
    opts = SsbOptions(20.0, defocus_A=150.0, bin_factor=2)
    want = ssb_offline(accepted, opts, cal, geo).image
    got = ssb_offline(_Events(counts, t_ns), opts, cal, geo, acceptance_ns=400.0)
    assert got.n_patterns == counts.shape[0] * counts.shape[1]
    assert _rel(got.image, want) < 1e-10
    rec = Reconstruction(counts.shape[:2], counts.shape[2:], Settings(calibration=cal, geometry=geo))
    rec.keep_events()
    rec.set_acceptance(400.0)
    ssb = attach_ssb(rec, opts)
    for chunk in _Events(counts, t_ns).chunks():
        rec.process_events(chunk)
    assert ssb.n_patterns == got.n_patterns
    assert _rel(ssb.image(), want) < 1e-10
    with pytest.raises(SettingsError, match="acceptance_ns"):
        ssb_offline(_Events(counts, None), opts, cal, geo, acceptance_ns=400.0)
