"""The Merlin live client against the project's Merlin simulator (and plain sockets), over loopback.

Every server is started and stopped here (port 0: a free port); every wait is bounded.
"""
from __future__ import annotations

import os
import re
import signal
import socket
import struct
import subprocess
import sys
import threading
import warnings

import h5py
import numpy as np
import pytest

from ricom import api
from ricom.cli.main import main
from ricom.core.errors import InputError
from ricom.simulators.merlin.server import MerlinServer
from ricom.sources.merlin import live as merlin_live
from ricom.sources.merlin.encode import encode_frames
from ricom.sources.merlin.file import MerlinSource
from ricom.sources.merlin.hdr import make_acquisition_header
from ricom.sources.merlin.live import MerlinControl, MerlinLiveSource, mpx_prefix

SCAN, DET = (8, 9), (32, 32)
N = SCAN[0] * SCAN[1]
SETTINGS = api.make_settings(kernel_size=5, center_yx=(15.5, 15.5), virtual_detector=(4, 12))
SIGNALS = ("ricom", "com_x", "com_y", "vbf", "vadf")


def frames_for(depth: int, seed: int = 3) -> np.ndarray:
    """Counts of a bright disc whose centre moves with the scan position (so the COM varies)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:DET[0], :DET[1]]
    shift = rng.normal(0, 1.5, (N, 2))
    r2 = (yy - 15.5 - shift[:, :1, None]) ** 2 + (xx - 15.5 - shift[:, 1:, None]) ** 2
    lam = np.where(r2 < 64, 2.0 if depth > 1 else 0.4, 0.05)
    return np.minimum(rng.poisson(lam), 2**depth - 1).astype(np.uint16)


def write_mib(path, frames, depth, raw) -> str:
    with open(path, "wb") as fh:
        fh.write(encode_frames(frames, depth, raw))
    return str(path)


def offline(frames):
    result, _, _ = api.reconstruct_run(frames.reshape(*SCAN, *DET), settings=SETTINGS)
    return result.snapshot


def assert_same(a, b) -> None:
    assert a.n_patterns == b.n_patterns
    for name in SIGNALS:
        x, y = np.asarray(getattr(a, name) if name in ("ricom", "com_x", "com_y") else a.signal(name)), \
            np.asarray(getattr(b, name) if name in ("ricom", "com_x", "com_y") else b.signal(name))
        np.testing.assert_allclose(x, y, rtol=1e-9, atol=1e-9 * (np.abs(y).max() + 1e-30), err_msg=name)


def live(port, **options):
    return MerlinLiveSource("127.0.0.1", port, timeout=10, **options)


@pytest.mark.parametrize("depth,raw", [(1, False), (6, False), (12, False), (1, True), (6, True), (12, True)])
def test_live_equals_offline(tmp_path, depth, raw):
    frames = frames_for(depth)
    mib = write_mib(tmp_path / "scan.mib", frames, depth, raw)
    reference = offline(frames)
    offline_mib, _, _ = api.reconstruct_run(MerlinSource(mib, scan_shape=SCAN), settings=SETTINGS)
    assert_same(offline_mib.snapshot, reference)
    with MerlinServer(mib, scan_shape=SCAN, data_port=0, control_port=0, start_on="connect") as server:
        source = live(server.data_port)
        assert (source.frame_header.counter_depth, source.frame_header.raw) == (depth, raw)
        result, _, _ = api.reconstruct_run(source, settings=SETTINGS, chunk_size=16)
    assert result.complete and server.error is None
    assert_same(result.snapshot, reference)


def test_split_messages_and_junk_before_header():
    frames = frames_for(12)
    with MerlinServer(frames, scan_shape=SCAN, data_port=0, control_port=None, start_on="connect",
                      split_messages=True, junk_bytes=5000, seed=7) as server:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            source = live(server.data_port)
        assert source.skipped_bytes == 5000
        assert any("5000 stale bytes" in str(w.message) for w in caught)
        result, _, _ = api.reconstruct_run(source, settings=SETTINGS, chunk_size=7)
    assert result.complete
    assert_same(result.snapshot, offline(frames))


def test_frame_length_mismatch_is_an_error():
    frames = frames_for(6)
    with MerlinServer(frames, scan_shape=SCAN, data_port=0, control_port=None, depth=6, start_on="connect",
                      truncate_frame=40) as server:
        source = live(server.data_port)
        got = 0
        with pytest.raises(InputError, match=r"frame 40 is \d+ bytes but the first frame was \d+"):
            for chunk in source.chunks(16):
                got += len(chunk.positions)
        source.close()
    assert got == 39  # every complete frame before the bad one was yielded


def test_disconnect_keeps_partial_result():
    frames = frames_for(12)
    with MerlinServer(frames, scan_shape=SCAN, data_port=0, control_port=None, start_on="connect",
                      disconnect_after=30) as server:
        result, _, _ = api.reconstruct_run(live(server.data_port), settings=SETTINGS, chunk_size=8)
    assert result.snapshot.n_patterns == 30
    assert "closed after 30 of 72 frames" in result.error and "partial frame" in result.error


def test_cli_disconnect_saves_partial_result_exit_3(tmp_path, capsys):
    out = tmp_path / "partial.h5"
    with MerlinServer(frames_for(12), scan_shape=SCAN, data_port=0, control_port=0, start_on="command",
                      disconnect_after=50) as server:
        code = main(["live", "merlin", "--data-port", str(server.data_port), "--control-port",
                     str(server.control_port), "--start", "--depth", "6", "--scan-shape", "8", "9",
                     "--kernel-size", "5", "--center", "15.5", "15.5", "--no-progress", "-o", str(out)])
    assert code == 3
    assert "closed after 50 of 72 frames" in capsys.readouterr().err
    with h5py.File(out) as f:
        assert f.attrs["n_patterns"] == 50 < N and f["ricom"].shape == SCAN


def test_control_port_start_soft_trigger_and_return_codes():
    frames = frames_for(12)
    with MerlinServer(frames, scan_shape=(1, 1), data_port=0, control_port=0, start_on="command") as server:
        control = MerlinControl("127.0.0.1", server.control_port)

        def trigger():
            control.configure(depth=6, n_frames=60, scan_shape=(6, 10), raw=True, soft_trigger=True)
            assert control.get("COUNTERDEPTH") == "6" and control.get("IMAGEX") == str(DET[1])
            control.start(soft_trigger=True)

        source = live(server.data_port, trigger=trigger, control=control)
        assert source.scan_shape == (6, 10) and source.n_frames == 60 and source.frame_header.raw
        chunks = [(c.frames.copy(), c.positions.copy()) for c in source.chunks(32)]
        source.close()
        assert np.array_equal(np.concatenate([f for f, _ in chunks]), np.minimum(frames[:60], 63))
        with MerlinControl("127.0.0.1", server.control_port) as c:
            with pytest.raises(InputError, match="out of range"):
                c.set("COUNTERDEPTH", 5)
            with pytest.raises(InputError, match="does not recognise"):
                c.cmd("MAKECOFFEE")
            assert c.request("GET", "NOSUCHTHING")[1] == 2


def test_stop_request_ends_the_run():
    stop = threading.Event()
    with MerlinServer(frames_for(12), scan_shape=SCAN, data_port=0, control_port=None, start_on="connect",
                      rate_hz=100) as server:
        source = live(server.data_port, stop=stop, max_latency=0.02)
        threading.Timer(0.2, stop.set).start()
        result, _, _ = api.reconstruct_run(source, settings=SETTINGS, chunk_size=64, stop=stop)
    assert result.interrupted and 0 < result.snapshot.n_patterns < N


def plain_server(payload: bytes):
    """A one-shot TCP server that sends ``payload`` and closes (an independent 'detector')."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(10)

    def serve():
        conn, _ = listener.accept()
        with conn:
            conn.sendall(payload)
        listener.close()

    threading.Thread(target=serve, daemon=True).start()
    return listener.getsockname()[1]


def test_independent_stream_lf_header_and_sequence_gap():
    """A stream written by hand: LF-only header without ScanX/ScanY (LiberTEM-style) and a lost frame."""
    frames = frames_for(12)[:12]
    hdr = b"HDR,\nFrames in Acquisition (Number):\t12\nFrames per Trigger (Number):\t4\nEnd\t"
    msgs = [mpx_prefix(len(hdr)) + hdr]
    for i in [*range(5), *range(6, 12)]:  # frame 6 is lost
        body = encode_frames(frames[i:i + 1], 12, False, start_seq=i + 1)
        msgs.append(mpx_prefix(len(body)) + body)
    source = live(plain_server(b"".join(msgs)))
    assert source.scan_shape == (3, 4) and source.n_frames == 12
    with pytest.warns(RuntimeWarning, match="1 frames lost"):
        chunks = [(c.frames.copy(), c.positions.copy()) for c in source.chunks(64)]
    source.close()
    assert source.frames_lost == 1
    positions = np.concatenate([p for _, p in chunks])
    assert positions.tolist() == [0, 1, 2, 3, 4, 6, 7, 8, 9, 10, 11]
    assert np.array_equal(np.concatenate([f for f, _ in chunks]), frames[positions])


def test_independent_stream_numbered_from_elsewhere():
    """Frames replayed from the second file of a split acquisition start at sequence number 101."""
    frames = frames_for(6)[:6]
    hdr = make_acquisition_header(6, (2, 3), 6).encode()
    body = encode_frames(frames, 6, False, start_seq=101)
    size = len(body) // 6
    stream = mpx_prefix(len(hdr)) + hdr + b"".join(mpx_prefix(size) + body[i * size:(i + 1) * size] for i in range(6))
    with pytest.warns(RuntimeWarning, match="sequence number 101, not 1"):
        source = live(plain_server(stream))
    chunks = [(c.frames.copy(), c.positions.copy()) for c in source.chunks(4)]
    source.close()
    assert np.concatenate([p for _, p in chunks]).tolist() == list(range(6))
    assert np.array_equal(np.concatenate([f for f, _ in chunks]), frames)


def test_plain_client_reads_simulator_stream():
    """Interoperability: a minimal client (socket + struct only) checks the framing the simulator sends."""
    frames = frames_for(12)[:10]
    with MerlinServer(frames, scan_shape=(2, 5), data_port=0, control_port=0, start_on="command") as server:
        ctrl = socket.create_connection(("127.0.0.1", server.control_port), timeout=10)
        data = socket.create_connection(("127.0.0.1", server.data_port), timeout=10)

        def read_exact(sock, n):
            buf = b""
            while len(buf) < n:
                more = sock.recv(n - len(buf))
                assert more, "connection closed early"
                buf += more
            return buf

        def message(sock):
            prefix = read_exact(sock, 15)
            assert re.fullmatch(rb"MPX,\d{10},", prefix)
            return read_exact(sock, int(prefix[4:14]) - 1)

        def request(body):
            ctrl.sendall(b"MPX,%010d,%s" % (len(body) + 1, body))
            return message(ctrl)

        assert request(b"GET,IMAGEX") == b"GET,IMAGEX,32,0"
        assert request(b"SET,COUNTERDEPTH,12") == b"SET,COUNTERDEPTH,0"
        assert request(b"CMD,STARTACQUISITION") == b"CMD,STARTACQUISITION,0"
        header = message(data).decode("latin-1")
        assert header.startswith("HDR,") and "End" in header and len(header) >= 2048
        assert re.search(r"Frames in Acquisition \(Number\):\t10\r?\n", header)
        for i in range(10):
            frame = message(data)
            fields = frame[:100].split(b",")
            assert fields[0] == b"MQ1" and int(fields[1]) == i + 1 and fields[6] == b"U16"
            hb, w, h = int(fields[2]), int(fields[4]), int(fields[5])
            assert len(frame) == hb + 2 * w * h
            pixels = struct.unpack(f">{w * h}H", frame[hb:])
            assert np.array_equal(np.array(pixels).reshape(h, w), frames[i])
        data.settimeout(0.3)
        with pytest.raises(TimeoutError):  # no end message: the count says when it is over
            data.recv(1)
        ctrl.close()
        data.close()


def test_cli_live_end_to_end_subprocess(tmp_path):
    frames = frames_for(6)
    out = tmp_path / "live.h5"
    mib = write_mib(tmp_path / "scan.mib", frames, 6, True)
    with MerlinServer(mib, scan_shape=SCAN, data_port=0, control_port=0, rate_hz=2000) as server:
        env = {**os.environ, "PYTHONWARNINGS": "ignore"}
        proc = subprocess.run(
            [sys.executable, "-m", "ricom", "live", "merlin", "--host", "127.0.0.1", "--data-port",
             str(server.data_port), "--scan-shape", "8", "9", "--kernel-size", "5", "--center", "15.5", "15.5",
             "--virtual-detector", "4", "12", "--timeout", "20", "--no-progress", "-o", str(out)],
            capture_output=True, text=True, timeout=50, env=env)
    assert proc.returncode == 0, proc.stderr
    reference = offline(frames)
    with h5py.File(out) as f:
        assert f.attrs["n_patterns"] == N
        np.testing.assert_allclose(f["ricom"][()], reference.ricom, rtol=1e-6, atol=1e-9)
        np.testing.assert_allclose(f["vadf"][()], reference.signal("vadf"), rtol=1e-6)


def test_acquisition_header_fields_reach_the_client():
    text = make_acquisition_header(6, (2, 3), 12)
    assert text.startswith("HDR,") and len(text) == 2048
    with MerlinServer(frames_for(12)[:6], scan_shape=(2, 3), data_port=0, control_port=None,
                      start_on="connect") as server:
        source = merlin_live.open(f"merlin://127.0.0.1:{server.data_port}", timeout=10)  # the reader entry point
        assert source.scan_shape == (2, 3) and source.header_fields["ScanX"] == "3"
        assert sum(len(c.positions) for c in source.chunks(4)) == 6
        source.close()


def test_cli_ctrl_c_saves_partial_result_exit_130(tmp_path):
    out = tmp_path / "stopped.h5"
    with MerlinServer(frames_for(12), scan_shape=SCAN, data_port=0, control_port=None, start_on="connect",
                      rate_hz=40) as server:
        proc = subprocess.Popen(
            [sys.executable, "-m", "ricom", "live", "merlin", "--data-port", str(server.data_port),
             "--kernel-size", "5", "--center", "15.5", "15.5", "--chunk-size", "4", "--timeout", "20",
             "--no-progress", "-o", str(out)], stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        killer = threading.Timer(50, proc.kill)
        killer.start()
        try:
            assert "acquisition: 72 frames" in proc.stderr.readline() + proc.stderr.readline()
            threading.Event().wait(0.5)
            proc.send_signal(signal.SIGINT)
            _, err = proc.communicate(timeout=30)
        finally:
            killer.cancel()
    assert proc.returncode == 130, err
    with h5py.File(out) as f:
        assert 0 < f.attrs["n_patterns"] < N


def test_simulator_cli_serves_a_file(tmp_path):
    frames = frames_for(6)
    mib = write_mib(tmp_path / "scan.mib", frames, 6, False)
    proc = subprocess.Popen([sys.executable, "-m", "ricom", "simulate", "merlin", "--from", mib, "--scan-shape",
                             "8", "9", "--port", "0", "--control-port", "0", "--once", "--quiet", "--raw",
                             "--start-on", "connect"], stdout=subprocess.PIPE, text=True)
    try:
        banner = proc.stdout.readline()
        port = int(re.search(r"data port (\d+)", banner).group(1))
        source = live(port)
        assert source.frame_header.raw and source.scan_shape == SCAN
        got = np.concatenate([c.frames.copy() for c in source.chunks(32)])
        source.close()
        assert np.array_equal(got, frames)
        assert proc.wait(timeout=20) == 0
    finally:
        proc.kill()


def test_continuous_acquisition_until_stop():
    stop = threading.Event()
    with MerlinServer(frames_for(12), scan_shape=SCAN, data_port=0, control_port=0, start_on="command") as server:
        control = MerlinControl("127.0.0.1", server.control_port)

        def trigger():
            control.set("NUMFRAMESTOACQUIRE", 0)
            control.start(soft_trigger=False)

        source = live(server.data_port, trigger=trigger, control=control, stop=stop)
        assert source.n_frames is None  # continuous: the scan repeats until stopped
        seen = []
        for chunk in source.chunks(50):
            seen.append(chunk.positions.copy())
            if sum(map(len, seen)) > 2 * N:
                stop.set()
        source.close()  # sends STOPACQUISITION
        positions = np.concatenate(seen)
        assert np.array_equal(positions[:2 * N], np.tile(np.arange(N), 2))
        with MerlinControl("127.0.0.1", server.control_port) as c:
            for _ in range(100):
                if c.get("DETECTORSTATUS") == "0":
                    break
                threading.Event().wait(0.05)
            assert c.get("DETECTORSTATUS") == "0"


REAL = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "merlin_real", "Merlin_Single_Quad.zip")


@pytest.mark.skipif(not os.path.exists(REAL), reason="../shared/data/merlin_real is not present")
def test_real_merlin_files_stream_byte_for_byte(tmp_path):
    import zipfile

    names = ["Quad_9_Frame_CounterDepth_1_Rows_256RAW", "Quad_9_Frame_CounterDepth_24_Rows_256",
             "Single_9_Frame_CounterDepth_12_Rows_256"]
    with zipfile.ZipFile(REAL) as z:
        for member in z.namelist():
            if os.path.splitext(os.path.basename(member))[0] in names:
                (tmp_path / os.path.basename(member)).write_bytes(z.read(member))
    for name in names:
        path = str(tmp_path / f"{name}.mib")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            offline_frames = np.concatenate([c.frames.copy() for c in MerlinSource(path).chunks(64)])
        with MerlinServer(path, scan_shape=(3, 3), data_port=0, control_port=None, start_on="connect") as server:
            source = live(server.data_port)
            got = np.concatenate([c.frames.copy() for c in source.chunks(4)])
            source.close()
        assert np.array_equal(got, offline_frames), name


def test_sequence_numbers_past_a_million_wrap_without_loss():
    """The six-digit sequence field wraps in long scans; positions continue regardless."""
    from ricom.sources.merlin.mib import unwrap_sequence
    seq = (np.arange(999_990, 1_000_020) % 1_000_000)
    np.testing.assert_array_equal(unwrap_sequence(seq, 999_990), np.arange(999_990, 1_000_020))
    np.testing.assert_array_equal(unwrap_sequence(seq[12:], 1_000_002), np.arange(1_000_002, 1_000_020))


def test_preloaded_server_two_threads_and_latency(tmp_path):
    """A preloaded simulator, the threaded pipeline: same image; each chunk's arrival→image time is recorded."""
    from ricom.engine.pipeline import run
    from ricom.engine.reconstruction import Reconstruction
    frames = frames_for(12)
    mib = write_mib(tmp_path / "scan.mib", frames, 12, False)
    with MerlinServer(mib, scan_shape=SCAN, data_port=0, control_port=None, start_on="connect", preload=True,
                      cache_bytes=1 << 26) as server:
        assert server._cache, "the pass is encoded before serving"
        res = run(live(server.data_port), Reconstruction(SCAN, DET, SETTINGS, threads=2), chunk_size=16)
    assert res.complete
    assert_same(res.snapshot, offline(frames))
    assert len(res.latency_s) >= -(-N // 16) and all(0 <= t < 10 for t in res.latency_s)


def test_warm_up_leaves_the_engine_untouched():
    from ricom.engine.reconstruction import Reconstruction
    rec = Reconstruction(SCAN, DET, SETTINGS)
    rec.warm_up(np.zeros((2, *DET), np.uint16))
    snap = rec.snapshot()
    assert snap.n_patterns == 0 and not snap.ricom.any() and not snap.hits.any()


def test_raw_1bit_live_frames_arrive_packed(tmp_path):
    """Raw 1-bit single-chip frames reach the engine as packed words; same image as the decoded file."""
    rng = np.random.default_rng(5)
    frames = (rng.random((N, 64, 128)) < np.linspace(0.05, 0.6, 128)).astype(np.uint16)
    mib = write_mib(tmp_path / "raw1.mib", frames, 1, True)
    settings = api.make_settings(kernel_size=5, center_yx=(31.5, 63.5), virtual_detector=(10, 40))
    offline_mib, _, _ = api.reconstruct_run(MerlinSource(mib, scan_shape=SCAN, in_place=False), settings=settings)
    with MerlinServer(mib, scan_shape=SCAN, data_port=0, control_port=None, start_on="connect") as server:
        source = live(server.data_port)
        assert source.sample_frames().bits == 1
        chunks = list(source.chunks(16))
    assert all(c.packed is not None and c.packed.bits == 1 for c in chunks)
    np.testing.assert_array_equal(np.concatenate([c.frames for c in chunks]), frames.astype(np.uint8))
    with MerlinServer(mib, scan_shape=SCAN, data_port=0, control_port=None, start_on="connect") as server:
        result, _, _ = api.reconstruct_run(live(server.data_port), settings=settings, chunk_size=16)
    assert_same(result.snapshot, offline_mib.snapshot)
