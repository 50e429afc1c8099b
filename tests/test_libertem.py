"""riCOM inside LiberTEM: `ricom.integrations.libertem` run by LiberTEM's executors equals ricom's own.

The UDFs run on LiberTEM's inline executor over in-memory datasets cut into several
partitions (so LiberTEM's merge assembles them), on a two-worker Dask executor on
127.0.0.1 that the test starts and stops, and on a LiberTEM-live in-memory acquisition;
every image is compared with `ricom.reconstruct` (or ricom's `Reconstruction`) on the
same patterns, and the COM with a plain NumPy centre of mass.
"""
from __future__ import annotations

import json
import os
from typing import ClassVar

import numpy as np
import pytest

import ricom
from ricom.core.errors import InputError, SettingsError

lt = pytest.importorskip("libertem.api")
L = pytest.importorskip("ricom.integrations.libertem")

QUICK = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "quick_srtio3")


def _close(a, b, what):
    scale = max(1.0, float(np.nanmax(np.abs(b))))
    np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12 * scale, err_msg=what)


@pytest.fixture(scope="module")
def ctx():
    with lt.Context.make_with("inline") as c:
        yield c


@pytest.fixture(scope="module")
def quick():
    if not os.path.exists(os.path.join(QUICK, "params.json")):
        pytest.skip("the shared quick dataset is not beside the repository")
    with open(os.path.join(QUICK, "params.json")) as fh:
        params = json.load(fh)
    data = np.load(os.path.join(QUICK, "counts_dose1e4.npy"))
    calibration = {"step_A": params["scan"]["step_A"], "pixel_size_mrad": params["detector"]["pixel_size_mrad"],
                   "energy_keV": params["microscope"]["energy_eV"] / 1e3}
    return data, calibration, tuple(float(c) for c in params["detector"]["optical_axis_index_yx"])


def test_quick_dataset_equals_ricom_reconstruct(ctx, quick):
    data, cal, centre = quick
    args = {**cal, "center_yx": centre, "kernel_size": 11, "virtual_detector": (8.0, 16.0)}
    ds = ctx.load("memory", data=data, num_partitions=4)
    res = ctx.run_udf(dataset=ds, udf=L.RiCOMUDF(signals=["icom", "divergence"], **args))
    ref = ricom.reconstruct(data, **args)
    assert set(res) == {"ricom", "com_x", "com_y", "counts", "vbf", "vabf", "vadf", "icom", "divergence"}
    for name in res:
        _close(res[name].data, ref.signal(name), name)
    assert ref.settings.calibration.potential_unit == "V·Å" and np.abs(ref.ricom).max() > 100


def test_com_equals_a_plain_numpy_centre_of_mass(ctx, quick):
    data, cal, centre = quick
    ds = ctx.load("memory", data=data, num_partitions=3)
    res = ctx.run_udf(dataset=ds, udf=L.ComUDF(center_yx=centre, pixel_size_mrad=cal["pixel_size_mrad"]))
    assert set(res) == {"com_x", "com_y", "counts"}
    i = data.astype(np.float64)
    total = i.sum(axis=(2, 3))
    ys, xs = np.arange(data.shape[2]) - centre[0], np.arange(data.shape[3]) - centre[1]
    com_x = (i.sum(axis=2) @ xs) / total * cal["pixel_size_mrad"]
    com_y = (i.sum(axis=3) @ ys) / total * cal["pixel_size_mrad"]
    _close(res["com_x"].data, com_x, "com_x")
    _close(res["com_y"].data, com_y, "com_y")
    _close(res["counts"].data, total, "counts")


def test_random_scan_with_auto_centre_disc_relative_detectors_and_a_broken_pattern(ctx):
    rng = np.random.default_rng(7)
    data = rng.poisson(3.0, (12, 10, 20, 24)).astype(np.float32)
    data[..., 8:13, 9:15] += 40.0  # a bright-field disc off the detector centre
    data[3, 4, 0, 0] = np.nan  # one broken pattern: counted invalid, left out
    data[5, 5] = 0.0  # one empty pattern
    ds = ctx.load("memory", data=data, num_partitions=5)
    names = ("vbf", "vabf", "vadf")
    udf = L.RiCOMUDF.for_dataset(ctx, ds, rotation_deg=23.0, flip=True, virtual_names=names)
    res = ctx.run_udf(dataset=ds, udf=udf)
    ref = ricom.reconstruct(data, rotation_deg=23.0, flip=True, virtual_names=names)
    assert ref.n_invalid == 1 and ref.n_empty == 1 and ref.settings.kernel.size == 21
    for name in ("ricom", "com_x", "com_y", "counts", *names):
        _close(res[name].data, ref.signal(name), name)
    assert res["counts"].data[3, 4] == 0 and res["vadf"].data[2, 2] > 0


def test_roi_reconstructs_only_the_selected_positions(ctx):
    rng = np.random.default_rng(3)
    data = rng.poisson(5.0, (9, 9, 16, 16)).astype(np.uint16)
    roi = np.zeros((9, 9), bool)
    roi[2:7, 1:8] = True
    roi[0, 0] = True
    ds = ctx.load("memory", data=data, num_partitions=3)
    settings = ricom.Settings(kernel=ricom.KernelSettings(7), geometry=ricom.DetectorGeometry(center_yx=(7.5, 7.2)))
    res = ctx.run_udf(dataset=ds, udf=L.RiCOMUDF(settings), roi=roi)
    rec = ricom.Reconstruction((9, 9), (16, 16), settings)
    rec.process_frames(data[roi], positions=np.flatnonzero(roi))
    ref = rec.snapshot()
    _close(res["ricom"].data, ref.ricom, "ricom")
    assert np.all(ref.ricom[~roi] != 0)  # the kernel reaches outside the ROI ...
    assert np.all(res["counts"].data[~roi] == 0)  # ... where no pattern was counted


class _Recording:
    """A LiberTEM live plot that keeps what it was shown (instead of drawing it)."""

    shown: ClassVar[list] = []

    @classmethod
    def make(cls):
        from libertem.viz.base import Live2DPlot

        class RecordingPlot(Live2DPlot):
            def update(self, damage, force=False):
                cls.shown.append((self.channel, int(np.count_nonzero(damage)), np.array(self.data)))

            def display(self):
                pass

        return RecordingPlot


def test_live_plots_grow_partition_by_partition():
    data = np.random.default_rng(1).poisson(4.0, (16, 8, 16, 16)).astype(np.uint16)
    _Recording.shown.clear()
    with lt.Context.make_with("inline", plot_class=_Recording.make()) as c:
        ds = c.load("memory", data=data, num_partitions=4)
        res = c.run_udf(dataset=ds, udf=L.RiCOMUDF(kernel_size=9, center_yx=(7.5, 7.5)), plots=True)
        steps = [(int(r.damage.data.sum()), r.buffers[0]["counts"].data.copy())
                 for r in c.run_udf_iter(dataset=ds, udf=L.ComUDF(center_yx=(7.5, 7.5)))]
    channels = {ch for ch, _, _ in _Recording.shown}
    assert channels == {"ricom", "com_x", "com_y", "counts"}
    seen = [n for ch, n, _ in _Recording.shown if ch == "ricom"]
    assert seen[0] < seen[-1] == data.shape[0] * data.shape[1] and len(set(seen)) >= 4  # one per partition
    final = [img for ch, _, img in _Recording.shown if ch == "ricom"][-1]
    _close(final, res["ricom"].data, "the last live image is the result")
    assert [n for n, _ in steps] == [32, 64, 96, 128]
    total = data.sum(axis=(2, 3), dtype=np.float64).reshape(-1)
    for n, counts in steps:  # each partial result holds exactly the patterns merged so far
        np.testing.assert_array_equal(counts.reshape(-1)[:n], total[:n])
        assert not np.any(counts.reshape(-1)[n:])


def test_settings_that_need_the_data_say_what_to_do(ctx):
    with pytest.raises(SettingsError, match="for_dataset") as err:
        L.RiCOMUDF(virtual_names=("vbf",))  # disc-relative: measured on the data
    assert "center_yx" in err.value.parameters and "lookups=" in str(err.value)
    with pytest.raises(SettingsError, match="identifiers"):
        L.ComUDF(settings=ricom.Settings(virtual_detectors=(ricom.VirtualDetector("v adf", 2, 5),),
                                         geometry=ricom.DetectorGeometry(center_yx=(3.0, 3.0))))
    with pytest.raises(SettingsError, match="RiCOMUDF"):
        L.ComUDF(signals=["ricom"])
    with pytest.raises(SettingsError, match="unknown signal"):
        L.RiCOMUDF(signals=["phase"])
    with pytest.raises(SettingsError, match="either settings"):
        L.RiCOMUDF(ricom.Settings(), kernel_size=5)
    line = ctx.load("memory", data=np.ones((6, 8, 8), np.uint16), num_partitions=1)
    with pytest.raises(InputError, match="nav_shape"):
        ctx.run_udf(dataset=line, udf=L.RiCOMUDF(kernel_size=3))


def test_detector_lookups_are_ricoms_first_chunk(quick):
    data, _, _ = quick
    settings = ricom.make_settings(kernel_size=5)
    lookups = L.detector_lookups(data.reshape(-1, 32, 32), settings)
    rec = ricom.Reconstruction((16, 16), (32, 32), settings)
    rec.process_frames(data.reshape(-1, 32, 32), start=0)
    assert lookups.centre_yx_px == rec.lookups.centre_yx_px and lookups.bf_radius_px == rec.lookups.bf_radius_px
    assert np.array_equal(lookups.ring_of_pixel, rec.lookups.ring_of_pixel)
    with pytest.raises(InputError, match="stack of patterns"):
        L.detector_lookups(data[0, 0], settings)


def test_libertem_live_memory_acquisition(quick):
    live = pytest.importorskip("libertem_live.api")
    data, cal, centre = quick
    c = live.LiveContext.make_with("inline")
    try:
        with c.make_connection("memory").open(data=data) as conn:
            aq = c.make_acquisition(conn=conn, frames_per_partition=64)
            res = c.run_udf(dataset=aq, udf=L.RiCOMUDF(kernel_size=15, center_yx=centre, **cal))
    finally:
        c.close()
    ref = ricom.reconstruct(data, kernel_size=15, center_yx=centre, **cal)
    _close(res["ricom"].data, ref.ricom, "ricom")


@pytest.mark.slow
def test_two_dask_workers_on_loopback(quick):
    pytest.importorskip("distributed")
    from distributed import Scheduler
    from libertem.executor.dask import DaskJobExecutor, cluster_spec

    data, cal, _ = quick
    loopback = {"host": "127.0.0.1", "dashboard_address": "127.0.0.1:0"}  # every server, dashboards too
    spec = cluster_spec(cpus=2, cudas=0, has_cupy=False, num_service=0, options=dict(loopback))
    scheduler = {"cls": Scheduler, "options": dict(loopback)}
    executor = DaskJobExecutor.make_local(spec=spec, cluster_kwargs={"scheduler": scheduler})
    with lt.Context(executor=executor) as c:
        info = c.executor.client.scheduler_info()
        workers = list(info["workers"])
        assert info["address"].startswith("tcp://127.0.0.1:")
        ds = c.load("memory", data=data, num_partitions=4)
        udf = L.RiCOMUDF.for_dataset(c, ds, kernel_size=9, virtual_names=("vbf", "vadf"), **cal)
        res = c.run_udf(dataset=ds, udf=udf)
    assert len(workers) == 2 and all(w.startswith("tcp://127.0.0.1:") for w in workers)
    ref = ricom.reconstruct(data, kernel_size=9, virtual_names=("vbf", "vadf"), **cal)
    for name in ("ricom", "com_x", "com_y", "vbf", "vadf"):
        _close(res[name].data, ref.signal(name), name)
