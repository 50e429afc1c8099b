"""Timepix3 raw packets live over TCP: `ricom.sources.timepix.stream` against the simulator."""
from __future__ import annotations

import numpy as np
import pytest

import ricom
from ricom.api import reconstruct_run
from ricom.core.errors import InputError
from ricom.simulators.timepix.raw import RawFaults, RawSimulator, demo_tpx3
from ricom.sources.timepix.stream import Tpx3Connection, Tpx3StreamSource

SCAN = (16, 16)
KW = {"kernel_size": 7, "center_yx": (255.5, 255.5)}


@pytest.fixture(scope="module", params=["line", "pixel"])
def demo(request, tmp_path_factory):
    path = str(tmp_path_factory.mktemp(request.param) / "scan.tpx3")
    demo_tpx3(path, SCAN, (32, 32), dose=50, sync=request.param)
    return path, request.param, ricom.reconstruct(path, **KW)


def _stream(port, sync, listen=None, **options):
    conn = Tpx3Connection("127.0.0.1", port) if listen is None else listen
    options.setdefault("order_window_ns", 20000.0)  # the scan lasts 0.3 ms: let positions out before the end
    src = Tpx3StreamSource(conn.next_socket(), SCAN, sync=sync, where=conn.where, connection=conn, **options)
    try:
        with pytest.warns(UserWarning) if options.pop("_warns", False) else _nothing():
            res, _, _ = reconstruct_run(src, **KW)
    finally:
        conn.close()
    return res, src, conn


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def _same(ref, snap):
    assert np.corrcoef(ref.ricom.ravel(), snap.ricom.ravel())[0, 1] >= 0.9999
    np.testing.assert_array_equal(ref.counts, snap.counts)


def test_stream_equals_file(demo):
    path, sync, ref = demo
    with RawSimulator(path) as sim:
        res, src, _ = _stream(sim.port, sync)
    assert res.error is None and src.frames_received == SCAN[0] * SCAN[1]
    _same(ref, res.snapshot)
    assert src.describe()["packets"]["cut_chunks"] == 0


def test_listening_client_and_paced_rate(demo):
    path, sync, ref = demo
    conn = Tpx3Connection(listen_port=0, listen_host="127.0.0.1")
    sim = RawSimulator(path, host="127.0.0.1", port=conn.port, connect=True, scans=1, rate=2e5).start()
    try:
        res, _, _ = _stream(None, sync, listen=conn)
    finally:
        sim.close()
    _same(ref, res.snapshot)  # (the scan lasts 0.3 ms of detector time: a short order window lets it out early)
    assert res.error is None and len(res.latency_s) >= 2 and max(res.latency_s) < 0.05  # ~60 ms: blocks as they come


class _Pieces:
    """A socket whose reads return 1, 2, …, 13 bytes in turn: every split of packets and headers."""

    def __init__(self, data: bytes, offset: int = 0):
        self.data, self.pos, self.k = data, offset, 0

    def settimeout(self, _):
        pass

    def recv_into(self, mv):
        n = min(self.k % 13 + 1, len(mv), len(self.data) - self.pos)
        self.k += 1
        mv[:n] = self.data[self.pos:self.pos + n]
        self.pos += n
        return n


def test_split_at_every_byte_boundary_and_start_mid_stream(demo):
    path, sync, ref = demo
    data = open(path, "rb").read()
    src = Tpx3StreamSource(_Pieces(data), SCAN, sync=sync, yield_s=0.0)
    res, _, _ = reconstruct_run(src, **KW)
    assert res.error is None
    _same(ref, res.snapshot)
    # joining a stream mid-chunk at an odd byte: skip to the first chunk header, lose only what was before
    src = Tpx3StreamSource(_Pieces(data[8 * 3 + 5:]), SCAN, sync=sync, yield_s=0.0, order_window_ns=20000.0)
    with pytest.warns(UserWarning, match="bytes before the first chunk header were skipped"):
        res, _, _ = reconstruct_run(src, **KW)
    assert src.skipped_bytes > 0 and 0 < res.snapshot.counts.sum() <= ref.counts.sum()


def test_split_over_loopback(demo):
    path, sync, ref = demo
    with RawSimulator(path, faults=RawFaults(split_bytes=9)) as sim:
        res, _, _ = _stream(sim.port, sync)
    _same(ref, res.snapshot)


def test_disconnect_mid_chunk_keeps_partial(demo):
    path, sync, ref = demo
    with RawSimulator(path, faults=RawFaults(disconnect_at=0.5)) as sim:
        res, src, conn = _stream(sim.port, sync, _warns=True)
    assert "broke off mid-chunk" in res.error and "events before are kept" in res.error
    assert conn.lost
    n = res.snapshot.counts.sum()
    assert 0 < n < ref.counts.sum() and 0 < src.frames_received < SCAN[0] * SCAN[1]


def test_cancelled_scan_keeps_partial(demo):
    path, sync, ref = demo
    with RawSimulator(path, faults=RawFaults(cancel_at=0.5)) as sim:
        res, _, conn = _stream(sim.port, sync, _warns=True)
    assert "ended after" in res.error and "partial result is kept" in res.error and not conn.lost
    assert 0 < res.snapshot.counts.sum() < ref.counts.sum()


def test_missing_line_trigger(tmp_path):
    path = str(tmp_path / "scan.tpx3")
    demo_tpx3(path, SCAN, (32, 32), dose=50)
    ref = ricom.reconstruct(path, **KW)
    with RawSimulator(path, faults=RawFaults(drop_line_trigger=5)) as sim:
        res, _, _ = _stream(sim.port, "line", _warns=True)
    assert f"{SCAN[0] - 1} of {SCAN[0]} line triggers arrived" in res.error and "line trigger is missing" in res.error
    counts = res.snapshot.counts
    assert 0 < counts.sum() < ref.counts.sum()


def test_connection_errors():
    with pytest.raises(ricom.core.errors.SettingsError):
        Tpx3Connection("127.0.0.1")
    with pytest.raises(InputError, match="cannot connect"):
        Tpx3Connection("127.0.0.1", 1)
    with pytest.raises(ricom.core.errors.SettingsError, match="scan shape"):
        Tpx3StreamSource(_Pieces(b""), None)


def test_cli_end_to_end(tmp_path, capsys):
    from ricom.cli.main import main

    path = str(tmp_path / "scan.tpx3")
    demo_tpx3(path, SCAN, (32, 32), dose=50)
    out = tmp_path / "live.h5"
    with RawSimulator(path, scans=1) as sim:
        rc = main(["live", "timepix3", "--raw", "--host", "127.0.0.1", "--port", str(sim.port), "--scan-shape",
                   "16", "16", "--kernel-size", "7", "--center", "255.5", "255.5", "--no-progress", "-o", str(out)])
    assert rc == 0 and out.exists()
    out = tmp_path / "cut.h5"
    with RawSimulator(path, scans=1, faults=RawFaults(cancel_at=0.5)) as sim:
        rc = main(["live", "timepix3", "--raw", "--host", "127.0.0.1", "--port", str(sim.port), "--scan-shape",
                   "16", "16", "--kernel-size", "7", "--no-progress", "-o", str(out)])
    assert rc == 3 and out.exists() and "ended after" in capsys.readouterr().err
    assert main(["simulate", "timepix3", "--asi", "--from", str(tmp_path / "none.npy"), "--port", "0"]) == 2
    assert main(["live", "timepix3", "--raw", "--scan-shape", "4", "4", "-o", str(tmp_path / "x.h5")]) == 2


def test_bench_cases_lose_no_event(tmp_path):
    """``ricom bench --only tpx3-live,asi-live`` on a tiny scan: every event arrives, same image."""
    from ricom.tools import bench
    from ricom.tools.bench_timepix import bench_asi_live, bench_tpx3_live

    assert {"tpx3-live", "asi-live"} <= set(bench.RUNNERS) and "tpx3-live" in bench.NEEDS_FOLDER
    for case in (bench_tpx3_live, bench_asi_live):
        rec = case(str(tmp_path), scan_shape=(8, 8), dose=20.0, kernel=5)
        assert rec.n_patterns == 64 and rec.events_per_s > 0 and rec.latency_ms_max is not None
        assert "no event lost" in rec.note and "r = 1.000000" in rec.note, rec.note
