"""Dask scale-out (`ricom.dask.client`) and reading sources by range.

Every cluster here is a `LocalCluster` of two worker processes on loopback, started and
stopped by the tests.  A distributed reconstruction must give the images of the
single-process path (`ricom.reconstruct`), also when a worker is killed in the middle.
"""
from __future__ import annotations

import itertools
import logging
import math
import os
import signal

import h5py
import numpy as np
import pytest

import ricom
from ricom.cli.main import main
from ricom.core.errors import InputError, SettingsError
from ricom.core.params import KernelSettings
from ricom.sources import open_source
from ricom.sources.events_h5 import EventsH5Writer
from ricom.sources.merlin.encode import encode_frames
from ricom.tools.bench import write_mib

distributed = pytest.importorskip("distributed")
from ricom.dask.client import plan_ranges, reconstruct_distributed, reconstruct_run_distributed  # noqa: E402

SCAN = (64, 64)


@pytest.fixture(scope="module")
def client():
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                                  dashboard_address=None, silence_logs=logging.CRITICAL) as cluster, \
            distributed.Client(cluster) as c:
        yield c


@pytest.fixture(scope="module")
def mib(tmp_path_factory) -> str:
    """A 64×64 scan of 128×128 12-bit patterns (about 140 MB)."""
    path = str(tmp_path_factory.mktemp("mib") / "scan.mib")
    write_mib(path, SCAN, (128, 128), 12, False)
    return path


def frames_with_layout(n_frames: int, det=(32, 32), seed=1) -> np.ndarray:
    """Float patterns: a bright disc that wanders with the frame index, Poisson noise, one NaN frame."""
    rng = np.random.default_rng(seed)
    yy, xx = np.indices(det)
    i = np.arange(n_frames)[:, None, None]
    cy, cx = det[0] / 2 + 2 * np.sin(i / 7.0), det[1] / 2 + 2 * np.cos(i / 11.0)
    lam = np.where(np.hypot(yy - cy, xx - cx) < 6, 20.0, 0.5)
    frames = rng.poisson(lam).astype(np.float32)
    frames[5] = np.nan
    return frames


def assert_same(a, b, rtol=1e-9) -> None:
    """Two snapshots hold the same images and counts (to float rounding)."""
    def close(x, y, what):
        scale = max(float(np.nanmax(np.abs(y))), 1e-300)
        np.testing.assert_allclose(x, y, rtol=0, atol=rtol * scale, err_msg=what)

    for name in ("ricom", "com_x", "com_y", "counts"):
        close(getattr(a, name), getattr(b, name), name)
    close(a.signal("icom"), b.signal("icom"), "icom")
    np.testing.assert_array_equal(a.hits, b.hits)
    assert a.virtual.keys() == b.virtual.keys()
    for name in b.virtual:
        close(a.virtual[name], b.virtual[name], name)
    assert (a.n_patterns, a.n_empty, a.n_invalid, a.n_outside) == (b.n_patterns, b.n_empty, b.n_invalid, b.n_outside)
    np.testing.assert_allclose(a.center_yx, b.center_yx, rtol=1e-12)
    assert a.virtual_radii_px == b.virtual_radii_px


def test_mib_same_as_single_process(client, mib):
    ref = ricom.reconstruct(mib, scan_shape=SCAN, kernel_size=11)
    done = []
    snap, = reconstruct_distributed(mib, client=client, scan_shape=SCAN, kernel_size=11, progress=done.append)
    assert_same(snap, ref)
    assert snap.n_patterns == SCAN[0] * SCAN[1]
    assert sum(done) == SCAN[0] * SCAN[1] - 512 and len(done) > 1  # all but the client's first chunk, in ranges


def test_killed_worker_still_gives_the_complete_identical_result(client, mib):
    ref = ricom.reconstruct(mib, scan_shape=SCAN, kernel_size=11)
    pids = client.run(os.getpid)
    killed = []

    def kill_a_busy_worker_once(_n):  # called on the client after each finished range
        if killed:
            return
        busy = {addr: keys for addr, keys in client.processing().items() if keys and addr in pids}
        addr = next(iter(busy))
        os.kill(pids[addr], signal.SIGKILL)  # mid-task: its range (and results it held) must be redone
        killed.append((addr, busy[addr]))

    snap, = reconstruct_distributed(mib, client=client, scan_shape=SCAN, kernel_size=11, range_size=256,
                                    retries=3, progress=kill_a_busy_worker_once)
    assert killed and killed[0][1]  # a worker with a range in hand was killed
    assert_same(snap, ref)
    client.wait_for_workers(2, timeout=60)
    assert set(client.run(os.getpid).values()) != set(pids.values())  # the killed worker was replaced


def test_several_kernels_at_once_equal_separate_runs(client, mib):
    kernels = [5, KernelSettings(11, (0.02, 0.4)), KernelSettings(21)]
    snaps = reconstruct_distributed(mib, client=client, scan_shape=SCAN, kernels=kernels, center_yx=(63.5, 63.5),
                                    virtual_detector=(20, 50))
    assert len(snaps) == 3
    for k, snap in zip(kernels, snaps, strict=True):
        k = k if isinstance(k, KernelSettings) else KernelSettings(k)
        ref = ricom.reconstruct(mib, scan_shape=SCAN, kernel_size=k.size, band_pass=k.band_pass,
                                center_yx=(63.5, 63.5), virtual_detector=(20, 50))
        assert snap.settings.kernel == k
        assert_same(snap, ref)


@pytest.mark.parametrize("fmt", ["npy", "h5", "zarr"])
def test_file_formats_with_flyback_and_repeated_frames(client, tmp_path, fmt):
    scan, flyback, fpp = (24, 20), 2, 2
    frames = frames_with_layout(scan[0] * (scan[1] + flyback) * fpp)
    if fmt == "npy":
        spec = str(tmp_path / "stack.npy")
        np.save(spec, frames)
    elif fmt == "h5":
        path = str(tmp_path / "stack.h5")
        with h5py.File(path, "w") as f:
            f.create_dataset("data", data=frames, chunks=(64, 32, 32))
        spec = f"{path}:/data"
    else:
        zarr = pytest.importorskip("zarr")
        spec = str(tmp_path / "stack.zarr")
        zarr.open(spec, mode="w", shape=frames.shape, chunks=(64, 32, 32), dtype=frames.dtype)[:] = frames
    opts = dict(scan_shape=scan, flyback_frames=flyback, frames_per_position=fpp)
    ref = ricom.reconstruct(open_source(spec, **opts), kernel_size=7, chunk_size=128)
    snap, = reconstruct_distributed(spec, client=client, kernel_size=7, chunk_size=128, range_size=201,
                                    source_options=opts)  # ranges cut through positions' frame pairs
    assert ref.n_invalid == 1 and ref.n_outside == scan[0] * flyback * fpp
    assert_same(snap, ref)


def test_event_list_h5(client, tmp_path):
    scan, det = (16, 16), (64, 64)
    rng = np.random.default_rng(3)
    path = str(tmp_path / "events.h5")
    with EventsH5Writer(path, scan, det) as w:
        for p in range(scan[0] * scan[1]):
            n = rng.poisson(900)
            w.append(np.full(n, p), rng.normal(31.5 + p % 3, 6, n).clip(0, 63), rng.normal(30, 6, n).clip(0, 63))
    opts = {"events_per_chunk": 20_000}  # look-ups from the first 100 000 events: six chunks
    ref = ricom.reconstruct(open_source(path, **opts), kernel_size=7, chunk_size=8)
    done = []
    snap, = reconstruct_distributed(path, client=client, kernel_size=7, chunk_size=8, source_options=opts,
                                    progress=done.append)
    assert 0 < sum(done) < scan[0] * scan[1]
    assert_same(snap, ref)


def test_file_that_breaks_off_keeps_what_came_before_as_a_single_run(client, tmp_path):
    frames = np.random.default_rng(2).integers(0, 60, (1024, 32, 32)).astype(np.uint16)
    path = tmp_path / "broken.mib"  # the frame header changes (12-bit to 6-bit) at frame 700
    path.write_bytes(encode_frames(frames[:700], 12, False) + encode_frames(frames[700:], 6, False, start_seq=701))
    opts = {"scan_shape": (32, 32)}
    with pytest.warns(UserWarning, match="incomplete"):
        ref, _, _ = ricom.api.reconstruct_run(str(path), kernel_size=7, chunk_size=128, source_options=opts)
        res, _, _ = reconstruct_run_distributed(str(path), client=client, kernel_size=7, chunk_size=128,
                                                range_size=100, source_options=opts)
    assert ref.error and res.error and "header changes" in res.error
    assert ref.snapshot.n_patterns == res.snapshot.n_patterns == 700
    assert_same(res.snapshot, ref.snapshot)


def test_inputs_that_cannot_be_split_say_so(client, tmp_path):
    with pytest.raises(InputError, match=r"demo cannot be read by range; .*ricom simulate"):
        reconstruct_distributed("demo", client=client)
    with pytest.raises(SettingsError, match="give a file name"):
        reconstruct_distributed(np.zeros((4, 4, 8, 8)), client=client)
    tpx3 = tmp_path / "scan.tpx3"
    tpx3.write_bytes(bytes(64))
    source = open_source(str(tpx3), scan_shape=(2, 2), sync="dwell", dwell_ns=100.0)
    assert not source.splittable and source.n_units is None
    with pytest.raises(InputError, match=r"scan\.tpx3 cannot be read by range; .*triggers"):
        source.read_range(0, 4, 2)


def _chunks_equal(a, b) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x.positions, y.positions)
        if hasattr(x, "frames"):
            np.testing.assert_array_equal(x.frames, y.frames)
        else:
            np.testing.assert_array_equal(x.x, y.x)
            np.testing.assert_array_equal(x.positions_done, y.positions_done)


def _ranges_cover(source, cuts, chunk_size) -> None:
    """Range 0…n is `chunks`; the chunks of consecutive ranges hold those of the whole input."""
    whole = list(source.chunks(chunk_size))
    _chunks_equal(list(source.read_range(0, source.n_units, chunk_size)), whole)
    parts = [c for a, b in itertools.pairwise(cuts) for c in source.read_range(a, b, chunk_size)]
    if hasattr(whole[0], "frames"):
        np.testing.assert_array_equal(np.concatenate([c.frames for c in parts]),
                                      np.concatenate([c.frames for c in whole]))
    np.testing.assert_array_equal(np.concatenate([c.positions for c in parts]),
                                  np.concatenate([c.positions for c in whole]))


def test_read_range_of_split_mib_files_npy_hdf5_and_events(tmp_path):
    frames = np.random.default_rng(0).integers(0, 4000, (60, 16, 16)).astype(np.uint16)
    for k, (a, b) in enumerate(((0, 25), (25, 60))):  # prefix1.mib, prefix2.mib
        (tmp_path / f"prefix{k + 1}.mib").write_bytes(encode_frames(frames[a:b], 12, False, start_seq=a + 1))
    mib = open_source(str(tmp_path / "prefix1.mib"), scan_shape=(6, 9), flyback_frames=1)
    assert mib.splittable and mib.n_units == 60 and len(mib.files) == 2
    _ranges_cover(mib, [0, 7, 24, 26, 41, 60], 8)
    np.save(tmp_path / "a.npy", frames)
    _ranges_cover(open_source(str(tmp_path / "a.npy"), scan_shape=(6, 10)), [0, 13, 60], 5)
    with h5py.File(tmp_path / "a.h5", "w") as f:
        f["d"] = frames.reshape(6, 10, 16, 16)
    _ranges_cover(open_source(f"{tmp_path / 'a.h5'}:/d"), [0, 3, 33, 60], 4)
    with EventsH5Writer(str(tmp_path / "e.h5"), (3, 4), (8, 8)) as w:
        w.append(np.repeat(np.arange(12), 3), np.arange(36) % 8, np.arange(36) // 8)
    events = open_source(str(tmp_path / "e.h5"))
    assert events.n_units == 12
    _ranges_cover(events, [0, 5, 12], 2)
    with pytest.raises(InputError, match="outside"):
        list(events.read_range(5, 13, 2))


def test_plan_ranges_cover_the_units_in_whole_chunks():
    ranges = plan_ranges(100, 10_000, 64, 3)
    assert ranges[0][0] == 100 and ranges[-1][1] == 10_000
    assert all(b == c for (_, b), (c, _) in itertools.pairwise(ranges))
    assert all((b - a) % 64 == 0 for a, b in ranges[:-1]) and len(ranges) >= 3 * 4 - 1
    assert plan_ranges(0, 10, 64, 2, range_size=3) == [(0, 3), (3, 6), (6, 9), (9, 10)]
    assert plan_ranges(5, 5, 64, 2) == []
    assert math.isclose(len(plan_ranges(0, 10**7, 512, 2)), 10**7 / (512 * 64), rel_tol=0.01)


def test_cli_cluster_and_scheduler_options_write_the_single_process_result(client, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a relative INPUT reaches the workers (started elsewhere) as an absolute path
    frames = frames_with_layout(24 * 24)
    np.save("s.npy", np.nan_to_num(frames).reshape(24, 24, 32, 32))
    common = ["s.npy", "--kernel-size", "7", "--no-progress", "--signals", "ricom,vadf"]
    assert main(["reconstruct", *common, "-o", "one.h5"]) == 0
    assert main(["reconstruct", *common, "-o", "local.h5", "--cluster", "local:2"]) == 0
    assert main(["reconstruct", *common, "-o", "remote.h5", "--scheduler", client.scheduler.address]) == 0
    assert not client.has_what() or all(not keys for keys in client.has_what().values())  # nothing left behind
    with h5py.File("one.h5") as a, h5py.File("local.h5") as b, h5py.File("remote.h5") as c:
        for name in ("ricom", "vadf"):
            for other in (b, c):
                np.testing.assert_allclose(other[name][()], a[name][()], rtol=0,
                                           atol=1e-9 * np.abs(a[name][()]).max())
    capsys.readouterr()
    assert main(["reconstruct", *common, "--cluster", "local:0"]) == 2
    assert "--cluster takes local:N" in capsys.readouterr().err
    assert main(["reconstruct", *common, "--scheduler", "localhost:8786"]) == 2
    assert "tcp://HOST:PORT" in capsys.readouterr().err
