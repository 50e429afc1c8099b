"""Timepix3 scans in any order (`scan_positions`): files, the raw stream and ASI's stream.

Every test plays an acquisition whose k-th probe position (pixel trigger, dwell slot, CSR
frame) is at ``order[k]``: the simulator writes the patterns ``frames[order]`` as if they
were a raster, and the reader, given the order, must put each back where it belongs.  The
reference is independent: the frame path (`ricom.reconstruct` of the patterns with the
same order, itself pinned to the raster by tests/test_scan_positions.py) or the raster.
"""
from __future__ import annotations

import h5py
import numpy as np
import pytest

import ricom
from ricom.api import reconstruct_run
from ricom.core.errors import SettingsError
from ricom.simulators.events import write_events
from ricom.simulators.timepix.asi import AsiServer
from ricom.simulators.timepix.raw import RawSimulator
from ricom.sources import open_source
from ricom.sources.timepix.asi import AsiScanSource
from ricom.sources.timepix.stream import Tpx3Connection, Tpx3StreamSource

SY, SX, DY, DX = 8, 10, 16, 16
N = SY * SX
KW = {"kernel_size": 5, "center_yx": (7.5, 7.5)}


@pytest.fixture(scope="module")
def frames():
    """Integer patterns ``(SY·SX, DY, DX)`` whose COM varies across the scan."""
    rng = np.random.default_rng(11)
    yy, xx = np.indices((DY, DX))
    iy, ix = np.divmod(np.arange(N), SX)
    cy = (7.5 + 2.0 * np.sin(ix / 2.0))[:, None, None]
    cx = (7.5 + 2.0 * np.cos(iy / 1.7))[:, None, None]
    return rng.poisson(4.0 * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 10.0) + 0.05).astype(np.uint16)


def _orders():
    rng = np.random.default_rng(3)
    return {
        "random": rng.permutation(N),
        "sparse": np.concatenate([rng.permutation(N)[:60], [-1] * 5, rng.integers(0, N, 15)]),  # repeats, -1, gaps
        "serpentine": np.concatenate([np.arange(r * SX, (r + 1) * SX)[::1 - 2 * (r % 2)] for r in range(SY)]),
    }


ORDERS = _orders()


def _acquired(frames, order):
    """The patterns as the probe met them: point k at ``order[k]`` (an empty pattern for -1)."""
    out = frames[np.maximum(order, 0)].copy()
    out[order < 0] = 0
    return out


def _events_file(path, frames, order, sync, fmt=None):
    """The acquisition ``frames[order]`` as an event file, slot k = point k (lines of SX slots)."""
    seen = _acquired(frames, order)
    shape = (len(order) // SX, SX)
    offset = write_events(str(path), [(seen, np.arange(len(order)))], shape, (DY, DX), fmt, sync=sync,
                          jitter_ns=300.0, seed=len(order))["detector_offset"]
    return (KW["center_yx"][0] + offset[0], KW["center_yx"][1] + offset[1])


def _close(got, want):
    np.testing.assert_array_equal(got.counts, want.counts)
    np.testing.assert_allclose(got.ricom, want.ricom, rtol=1e-5, atol=1e-6 * np.abs(want.ricom).max())
    np.testing.assert_allclose(got.com_x, want.com_x, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name, sync, ext", [("random", "pixel", "tpx3"), ("sparse", "pixel", "tpx3"),
                                             ("serpentine", "line", "tpx3"), ("random", "line", "tpx3"),
                                             ("sparse", "dwell", "t3p")])
def test_event_file_in_any_order_equals_the_frame_path(tmp_path, frames, name, sync, ext):
    order = ORDERS[name]
    centre = _events_file(tmp_path / f"scan.{ext}", frames, order, sync if ext == "tpx3" else "line")
    got = ricom.reconstruct(str(tmp_path / f"scan.{ext}"), scan_shape=(SY, SX), scan_positions=order,
                            kernel_size=5, center_yx=centre)
    want = ricom.reconstruct(_acquired(frames, order), scan_shape=(SY, SX), scan_positions=order, **KW)
    _close(got, want)
    visited = np.zeros(N, bool)
    visited[order[order >= 0]] = True
    assert int((got.hits == 0).sum()) == int((~visited).sum()) and got.complete
    if name == "random":  # and the raster it came from
        _close(got, ricom.reconstruct(frames.reshape(SY, SX, DY, DX), **KW))


def test_cli_reconstruct_tpx3_reports_the_unvisited_positions(tmp_path, frames, capsys):
    from ricom.cli.main import main

    order = ORDERS["sparse"]
    centre = _events_file(tmp_path / "scan.tpx3", frames, order, "pixel")
    np.savetxt(tmp_path / "order.csv", np.stack(np.divmod(order, SX), 1) * (order[:, None] >= 0) - (order[:, None] < 0),
               fmt="%d", delimiter=",", header="row,col", comments="")
    assert main(["reconstruct", str(tmp_path / "scan.tpx3"), "--scan-shape", str(SY), str(SX), "--scan-positions",
                 str(tmp_path / "order.csv"), "--kernel-size", "5", "--center", *map(str, centre), "--no-progress",
                 "-o", str(tmp_path / "r.h5")]) == 0
    want = ricom.reconstruct(_acquired(frames, order), scan_shape=(SY, SX), scan_positions=order, **KW)
    with h5py.File(tmp_path / "r.h5") as f:
        np.testing.assert_allclose(f["ricom"][()], want.ricom, rtol=1e-5, atol=1e-6 * np.abs(want.ricom).max())
        visited = np.unique(order[order >= 0]).size
        assert f.attrs["n_unvisited_positions"] == N - visited and f.attrs["n_scan_points"] == len(order)
    capsys.readouterr()
    assert main(["info", str(tmp_path / "scan.tpx3"), "--scan-shape", str(SY), str(SX), "--scan-positions",
                 str(tmp_path / "order.csv")]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert f"scan order: 80 points listed in {tmp_path / 'order.csv'}; {N - visited} positions never visited" in out


def test_orders_that_cannot_apply_say_so(tmp_path, frames):
    _events_file(tmp_path / "scan.tpx3", frames, ORDERS["random"], "line")
    with pytest.raises(SettingsError, match=r"do not fill whole lines.*sync='pixel'"):  # line sync: whole lines
        open_source(str(tmp_path / "scan.tpx3"), scan_shape=(SY, SX), scan_positions=np.arange(N - 3))
    with pytest.raises(SettingsError, match="flyback frames do not combine"):
        open_source(str(tmp_path / "scan.tpx3"), scan_shape=(SY, SX), scan_positions=np.arange(N), flyback_frames=2)
    with pytest.raises(SettingsError, match="outside the 8×10 scan"):
        open_source(str(tmp_path / "scan.tpx3"), scan_shape=(SY, SX), scan_positions=np.array([0, N]))


def test_dwell_clock_counts_listed_points(tmp_path, frames):
    """A .t3p that ends inside a pass of the list says so in listed points, not raster lines."""
    order = ORDERS["random"]
    _events_file(tmp_path / "scan.t3p", frames, order, "line")
    with pytest.warns(UserWarning, match=r"of the scan of pass 3 \(point 21 of 30 listed\)"):
        ricom.reconstruct(str(tmp_path / "scan.t3p"), scan_shape=(SY, SX), scan_positions=order[:30], **KW)


@pytest.mark.parametrize("sync", ["pixel", "line"])
def test_raw_stream_in_any_order_equals_the_file(tmp_path, frames, sync):
    order = ORDERS["random"] if sync == "pixel" else ORDERS["serpentine"]
    centre = _events_file(tmp_path / "scan.tpx3", frames, order, sync)
    want = ricom.reconstruct(str(tmp_path / "scan.tpx3"), scan_shape=(SY, SX), scan_positions=order,
                             kernel_size=5, center_yx=centre)
    with RawSimulator(str(tmp_path / "scan.tpx3")) as sim:
        conn = Tpx3Connection("127.0.0.1", sim.port)
        try:
            src = Tpx3StreamSource(conn.next_socket(), (SY, SX), sync=sync, chip_layout="cheetah",
                                   order_window_ns=20000.0, where=conn.where, connection=conn, scan_positions=order)
            res, _, _ = reconstruct_run(src, kernel_size=5, center_yx=centre)
        finally:
            conn.close()
    assert res.error is None and src.frames_received == src.n_frames == N and "80 points listed" in src.summary()
    _close(res.snapshot, want)
    _close(res.snapshot, ricom.reconstruct(frames.reshape(SY, SX, DY, DX), **KW))


def test_cli_live_raw_stream_with_a_positions_file(tmp_path, frames, capsys):
    from ricom.cli.main import main

    order = ORDERS["sparse"]
    centre = _events_file(tmp_path / "scan.tpx3", frames, order, "pixel")
    np.save(tmp_path / "order.npy", order)
    with RawSimulator(str(tmp_path / "scan.tpx3"), scans=1) as sim:
        code = main(["live", "timepix3", "--raw", "--host", "127.0.0.1", "--port", str(sim.port), "--sync", "pixel",
                     "--scan-shape", str(SY), str(SX), "--scan-positions", str(tmp_path / "order.npy"),
                     "--kernel-size", "5", "--center", *map(str, centre), "--timeout", "10", "--no-progress",
                     "-o", str(tmp_path / "live.h5")])
    assert code == 0, capsys.readouterr().err
    want = ricom.reconstruct(_acquired(frames, order), scan_shape=(SY, SX), scan_positions=order, **KW)
    with h5py.File(tmp_path / "live.h5") as f:
        np.testing.assert_allclose(f["ricom"][()], want.ricom, rtol=1e-5, atol=1e-6 * np.abs(want.ricom).max())
        assert f.attrs["n_unvisited_positions"] == N - np.unique(order[order >= 0]).size
        assert f.attrs["scan_consistent"] and f.attrs["n_received"] == len(order)


@pytest.mark.parametrize("name", ["random", "sparse"])
def test_asi_stream_in_any_order_equals_the_frame_path(frames, name):
    order = ORDERS[name]
    with AsiServer(_acquired(frames, order), scan_shape=(1, len(order)), frames_per_chunk=7) as server:
        with AsiScanSource(host="127.0.0.1", port=server.port, scan_shape=(SY, SX), scan_positions=order) as src:
            res, _, _ = reconstruct_run(src, **KW)
    assert res.error is None and src.frames_received == len(order) and src.header_scan_shape is None
    _close(res.snapshot, ricom.reconstruct(_acquired(frames, order), scan_shape=(SY, SX), scan_positions=order, **KW))
    if name == "random":
        _close(res.snapshot, ricom.reconstruct(frames.reshape(SY, SX, DY, DX), **KW))


def test_cli_live_asi_with_a_positions_file(tmp_path, frames, capsys):
    from ricom.cli.main import main

    order = ORDERS["random"]
    np.savetxt(tmp_path / "order.txt", order, fmt="%d")
    with AsiServer(_acquired(frames, order), scan_shape=(1, N), scans=2) as server:
        code = main(["live", "timepix3", "--asi", "--host", "127.0.0.1", "--port", str(server.port),
                     "--scan-shape", str(SY), str(SX), "--scan-positions", str(tmp_path / "order.txt"),
                     "--acquisitions", "2", "--timeout", "10", "--kernel-size", "5", "--center", "7.5", "7.5",
                     "--no-progress", "-o", str(tmp_path / "live.h5")])
    assert code == 0, capsys.readouterr().err
    want = ricom.reconstruct(frames.reshape(SY, SX, DY, DX), **KW)
    for k in (1, 2):
        with h5py.File(tmp_path / f"live_000{k}.h5") as f:
            np.testing.assert_allclose(f["ricom"][()], want.ricom, rtol=1e-5, atol=1e-6 * np.abs(want.ricom).max())
            assert f.attrs["scan_consistent"] and f.attrs["n_unvisited_positions"] == 0
