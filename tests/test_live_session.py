"""Live sessions over loopback: several acquisitions per connection, aborts, stalls and
scan bookkeeping, against the project's Merlin simulator driven through its control port.

Every server is started and stopped here (port 0: a free port); every wait is bounded.
"""
from __future__ import annotations

import subprocess
import sys
import threading
import time

import h5py
import numpy as np
import pytest

from ricom.live.bookkeeping import shape_problem
from ricom.live.merlin import MerlinAcquisitions
from ricom.live.session import LiveSession, State
from ricom.simulators.merlin.server import MerlinServer
from ricom.sources.merlin.live import MerlinControl
from test_merlin_live import N, SCAN, SETTINGS, assert_same, frames_for, offline


def _wait(predicate, seconds=20.0) -> None:
    t_end = time.monotonic() + seconds
    while not predicate():
        if time.monotonic() > t_end:
            raise AssertionError("timed out")
        time.sleep(0.01)


def _operator(server, plan) -> threading.Thread:
    """A microscope operator on the control port: ``plan`` is a list of ("start" | "stop", delay_s)."""
    def act():
        with MerlinControl("127.0.0.1", server.control_port) as control:
            for what, delay in plan:
                time.sleep(delay)
                if what == "start":
                    _wait(lambda: server._state == "idle")
                    control.cmd("STARTACQUISITION")
                else:
                    control.cmd("STOPACQUISITION")
    thread = threading.Thread(target=act, daemon=True)
    thread.start()
    return thread


def _session(server, n, **options) -> LiveSession:
    stream = MerlinAcquisitions("127.0.0.1", server.data_port, **options)
    return LiveSession(stream, acquisitions=n, reconstruct={"settings": SETTINGS, "chunk_size": 8})


def test_passive_session_handles_three_acquisitions_on_one_connection():
    frames = frames_for(12)
    with MerlinServer(frames, scan_shape=SCAN, data_port=0, control_port=0, start_on="command") as server:
        seen = []
        session = _session(server, 3, timeout=10)
        session.on_status = lambda s: seen.append(s.state)
        operator = _operator(server, [("start", 0.2), ("start", 0.0), ("start", 0.0)])
        done = session.run()
        operator.join(5)
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
    with MerlinServer(frames, scan_shape=SCAN, data_port=0, control_port=0, start_on="command",
                      rate_hz=150) as server:
        session = _session(server, 2, timeout=10)
        operator = _operator(server, [("start", 0.2), ("stop", 0.15), ("start", 0.05)])
        done = session.run()
        operator.join(5)
    first, second = done
    assert first.state is State.ABORTED and "new acquisition started" in first.reason
    assert 0 < first.count.n_received < N and first.count.n_missing == N - first.count.n_received
    assert first.count.empty_positions.size == N - first.count.n_received
    assert second.complete
    assert_same(second.result.snapshot, offline(frames))


def test_a_stalled_acquisition_times_out_naming_the_detector():
    with MerlinServer(frames_for(12), scan_shape=SCAN, data_port=0, control_port=0, start_on="command",
                      rate_hz=100) as server:
        session = _session(server, 1, timeout=0.5)
        operator = _operator(server, [("start", 0.2), ("stop", 0.2)])  # stopped without a word to the client
        t0 = time.monotonic()
        (acq,) = session.run()
        operator.join(5)
    assert time.monotonic() - t0 < 10
    assert acq.state is not State.FINISHED
    assert f"127.0.0.1:{server.data_port}" in acq.reason and "no data from the detector" in acq.reason
    assert f"received {acq.count.n_received} of {N} frames" in acq.reason
    assert 0 < acq.result.snapshot.n_patterns < N


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
    with MerlinServer(frames_for(12), scan_shape=SCAN, data_port=0, control_port=0, start_on="command") as server:
        operator = _operator(server, [("start", 1.5), ("start", 0.0), ("start", 0.0)])
        res = _cli(["--data-port", str(server.data_port), "--acquisitions", "3", "--kernel-size", "5",
                    "--center", "15.5", "15.5", "--timeout", "20", "-o", str(tmp_path / "live.h5")])
        operator.join(5)
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
