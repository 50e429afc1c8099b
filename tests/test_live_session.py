"""Live sessions over loopback: several acquisitions per connection, aborts, stalls and
scan bookkeeping, against the project's Merlin simulator and its fault modes.

Every server is started and stopped here (port 0: a free port); every wait is bounded.
"""
from __future__ import annotations

import subprocess
import sys
import time

import h5py
import numpy as np
import pytest

from ricom.live.bookkeeping import shape_problem
from ricom.live.merlin import MerlinAcquisitions
from ricom.live.session import LiveSession, State
from ricom.simulators.merlin.server import MerlinServer
from test_merlin_live import SCAN, SETTINGS, N, assert_same, frames_for, offline


def _session(server, n, **options) -> LiveSession:
    stream = MerlinAcquisitions("127.0.0.1", server.data_port, **options)
    return LiveSession(stream, acquisitions=n, reconstruct={"settings": SETTINGS, "chunk_size": 8})


def test_passive_session_handles_three_acquisitions_on_one_connection():
    frames = frames_for(12)
    with MerlinServer(frames, scan_shape=SCAN, data_port=0, control_port=None, start_on="connect", acquisitions=3,
                      between_s=0.1) as server:
        seen = []
        session = _session(server, 3, timeout=10)
        session.on_status = lambda s: seen.append(s.state)
        done = session.run()
    assert [a.state for a in done] == [State.FINISHED] * 3 and all(a.complete for a in done)
    assert server.acquisitions == 3
    want = offline(frames)
    for acq in done:
        assert acq.count.n_received == N and acq.count.n_missing == 0 and acq.count.empty_positions.size == 0
        assert acq.header.startswith("HDR,")
        assert_same(acq.result.snapshot, want)
    assert seen[0] is State.CONNECTING and seen.count(State.WAITING) == 3


def test_an_aborted_acquisition_is_partial_and_the_next_one_still_arrives():
    frames = frames_for(12)
    with MerlinServer(frames, scan_shape=SCAN, data_port=0, control_port=None, start_on="connect", acquisitions=2,
                      between_s=0.1, abort_after=[30, None]) as server:
        session = _session(server, 2, timeout=10)
        done = session.run()
    first, second = done
    assert first.state is State.ABORTED and "new acquisition started after 30 of 72 frames" in first.reason
    assert first.count.n_received == 30 and first.count.n_missing == N - 30
    np.testing.assert_array_equal(first.count.empty_positions, np.arange(30, N))
    assert second.complete
    assert_same(second.result.snapshot, offline(frames))


def test_a_stalled_acquisition_times_out_naming_the_detector():
    with MerlinServer(frames_for(12), scan_shape=SCAN, data_port=0, control_port=None, start_on="connect",
                      stall_after=20) as server:
        session = _session(server, 1, timeout=0.5)
        t0 = time.monotonic()
        (acq,) = session.run()
    assert time.monotonic() - t0 < 10
    assert acq.state is State.ABORTED
    assert f"127.0.0.1:{server.data_port}" in acq.reason and "no data from the detector" in acq.reason
    assert f"received 20 of {N} frames" in acq.reason
    assert acq.result.snapshot.n_patterns == 20 and acq.count.n_missing == N - 20


def test_status_line_says_state_frames_rate_dropped_and_latency():
    from ricom.live.session import Status

    line = Status(State.RECEIVING, 2, 100, 4096, 2500.0, 3, 7, 4.2).line()
    assert line == "[2] receiving, 100/4096 frames, 2,500/s, 3 dropped, 7 not recorded, latency 4 ms"
    assert Status(State.WAITING, 1).line() == "[1] waiting for acquisition"


def test_shape_problem_examples():
    assert shape_problem((8, 9), (8, 9), 72, 72) is None
    assert "disagrees" in shape_problem((16, 16), (8, 9), 72, 256)
    assert shape_problem((16, 16), (8, 9), 72, 256, pad=True) is None
    assert "not a whole number of passes" in shape_problem((4, 5), None, 72, 20)
    assert shape_problem((4, 5), None, 72, 20, crop=True) is None
    assert shape_problem((4, 9), None, 72, 36) is None  # two whole passes: repeated scans


def _cli(args, timeout=60):
    return subprocess.run([sys.executable, "-m", "ricom", "live", "merlin", *args], capture_output=True,
                          text=True, timeout=timeout)


def test_cli_three_acquisitions_three_files(tmp_path):
    with MerlinServer(frames_for(12), scan_shape=SCAN, data_port=0, control_port=None, start_on="connect",
                      acquisitions=3, between_s=0.1) as server:
        res = _cli(["--data-port", str(server.data_port), "--acquisitions", "3", "--kernel-size", "5",
                    "--center", "15.5", "15.5", "--timeout", "20", "-o", str(tmp_path / "live.h5")])
    assert res.returncode == 0, res.stderr
    for i in (1, 2, 3):
        with h5py.File(tmp_path / f"live_{i:04d}.h5") as f:
            assert f.attrs["acquisition"] == i and f.attrs["n_received"] == N and f.attrs["scan_consistent"]
            assert str(f.attrs["acquisition_header"]).startswith("HDR,")
    assert res.stderr.count("acquisition: 72 frames") == 3


def test_cli_scan_shape_mismatch_warns_and_exits_non_zero(tmp_path):
    out = tmp_path / "wrong.h5"
    with MerlinServer(frames_for(12), scan_shape=SCAN, data_port=0, control_port=None,
                      start_on="connect") as server:
        res = _cli(["--data-port", str(server.data_port), "--scan-shape", "16", "16", "--kernel-size", "5",
                    "--center", "15.5", "15.5", "--timeout", "20", "--no-progress", "-o", str(out)])
    assert res.returncode == 4, res.stderr
    assert "warning: the scan shape 16×16 disagrees with the acquisition header (8×9, 72 frames)" in res.stderr
    with h5py.File(out) as f:
        assert f.attrs["n_expected"] == N and f.attrs["n_received"] == N
        assert f.attrs["n_empty_positions"] == 256 - N and not f.attrs["scan_consistent"]
        assert np.asarray(f.attrs["empty_positions"]).size == 256 - N


@pytest.mark.parametrize("flag", ["--scan-pad"])
def test_cli_scan_shape_mismatch_accepted_with_pad(tmp_path, flag):
    out = tmp_path / "padded.h5"
    with MerlinServer(frames_for(12), scan_shape=SCAN, data_port=0, control_port=None,
                      start_on="connect") as server:
        res = _cli(["--data-port", str(server.data_port), "--scan-shape", "16", "16", flag, "--kernel-size", "5",
                    "--center", "15.5", "15.5", "--timeout", "20", "--no-progress", "-o", str(out)])
    assert res.returncode == 0, res.stderr
    assert "disagrees" not in res.stderr


def test_cli_records_what_it_reconstructs(tmp_path):
    import ricom

    out, rec = tmp_path / "live.h5", tmp_path / "raw.h5"
    with MerlinServer(frames_for(12), scan_shape=SCAN, data_port=0, control_port=None,
                      start_on="connect") as server:
        res = _cli(["--data-port", str(server.data_port), "--record", str(rec), "--kernel-size", "5",
                    "--center", "15.5", "15.5", "--timeout", "20", "--no-progress", "-o", str(out)])
    assert res.returncode == 0, res.stderr
    replay = ricom.reconstruct(f"{rec}:/data", kernel_size=5, center_yx=(15.5, 15.5))
    with h5py.File(out) as f:
        assert f.attrs["n_recorded"] == N and f.attrs["n_not_recorded"] == 0  # 72 small frames: the queue never fills
        np.testing.assert_allclose(replay.ricom, f["ricom"][()], rtol=1e-9, atol=1e-12)


def test_reconnect_after_a_dropped_connection():
    with MerlinServer(frames_for(12), scan_shape=SCAN, data_port=0, control_port=None, start_on="connect",
                      disconnect_after=30) as server:
        stream = MerlinAcquisitions("127.0.0.1", server.data_port, timeout=10)
        session = LiveSession(stream, acquisitions=2, reconnect=True, reconnect_s=5,
                              reconstruct={"settings": SETTINGS, "chunk_size": 8})
        first, second = session.run()
    assert first.state is State.FAILED and "closed after 30 of 72 frames" in first.reason
    assert first.result.snapshot.n_patterns == 30
    assert session.reconnects >= 1 and second.index == 2 and second.count.n_received == 30


def test_without_reconnect_a_dropped_connection_ends_the_session():
    with MerlinServer(frames_for(12), scan_shape=SCAN, data_port=0, control_port=None, start_on="connect",
                      disconnect_after=30) as server:
        session = _session(server, 3, timeout=10)
        done = session.run()
    assert [a.state for a in done] == [State.FAILED] and session.reconnects == 0


def test_a_long_session_keeps_no_reconstruction_when_asked():
    handed = []
    with MerlinServer(frames_for(12), scan_shape=SCAN, data_port=0, control_port=None, start_on="connect",
                      acquisitions=3, between_s=0.05) as server:
        stream = MerlinAcquisitions("127.0.0.1", server.data_port, timeout=10)
        session = LiveSession(stream, acquisitions=3, keep=False, on_acquisition=lambda a: handed.append(a.index),
                              reconstruct={"settings": SETTINGS, "chunk_size": 8})
        assert session.run() == []
    assert handed == [1, 2, 3] and session.n_done == 3


def test_cli_active_mode_starts_each_acquisition(tmp_path):
    with MerlinServer(frames_for(12), scan_shape=SCAN, data_port=0, control_port=0, start_on="command") as server:
        res = _cli(["--data-port", str(server.data_port), "--control-port", str(server.control_port), "--start",
                    "--scan-shape", "8", "9", "--acquisitions", "2", "--kernel-size", "5", "--center", "15.5", "15.5",
                    "--timeout", "20", "--no-progress", "-o", str(tmp_path / "act.h5")])
    assert res.returncode == 0, res.stderr
    assert server.acquisitions == 2
    for i in (1, 2):
        with h5py.File(tmp_path / f"act_{i:04d}.h5") as f:
            assert f.attrs["n_received"] == N and f.attrs["n_patterns"] == N
