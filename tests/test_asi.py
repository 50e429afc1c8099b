"""ASI's sparse Timepix3 stream: the simulator and the reader over loopback."""
from __future__ import annotations

import socket
import threading

import numpy as np
import pytest

import ricom
from ricom.api import reconstruct_run
from ricom.core.errors import InputError, SettingsError
from ricom.live.asi import AsiAcquisitions
from ricom.live.session import LiveSession, State
from ricom.simulators.timepix.asi import AsiServer
from ricom.sources import open_source
from ricom.sources.timepix.asi import AsiConnection, AsiScanSource

SY, SX, DY, DX = 6, 7, 16, 16


@pytest.fixture(scope="module")
def counts():
    rng = np.random.default_rng(5)
    yy, xx = np.indices((DY, DX))
    iy, ix = np.indices((SY, SX))
    cy = 7.5 + 1.5 * np.sin(ix / 2.0)[..., None, None]
    cx = 7.5 + 1.5 * np.cos(iy / 3.0)[..., None, None]
    return rng.poisson(3.0 * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 12.0) + 0.05).astype(np.uint16)


def _dense(source) -> np.ndarray:
    """Counts ``(SY·SX, DY, DX)`` of everything a source yields (and each chunk's positions_done)."""
    out = np.zeros((SY * SX, DY * DX), np.int64)
    done = []
    for chunk in source.chunks():
        np.add.at(out, (chunk.positions, chunk.y.astype(np.int64) * DX + chunk.x), 1)
        done.append(chunk.positions_done)
    return out.reshape(SY * SX, DY, DX), np.concatenate(done)


def test_stream_gives_the_dense_arrays_image(counts):
    with AsiServer(counts, frames_per_chunk=5) as server:
        src = open_source(f"asi://127.0.0.1:{server.port}")
        assert src.scan_shape == (SY, SX) and src.detector_shape == (DY, DX) and src.kind == "events"
        snap = ricom.reconstruct(src, kernel_size=5)
        src.close()
    ref = ricom.reconstruct(counts, kernel_size=5)
    np.testing.assert_allclose(snap.ricom, ref.ricom, rtol=1e-5, atol=1e-6 * np.abs(ref.ricom).max())
    np.testing.assert_array_equal(snap.counts, counts.sum(axis=(2, 3)))
    assert src.frames_received == SY * SX and "scan 6×7, detector 16×16" in src.summary()


@pytest.mark.parametrize("dtypes", [("u1", "u1", "u1"), ("u2", "u2", "u2"), ("u4", "u4", "u4"), ("u8", "u2", "u1")])
def test_dtype_codes_and_chunk_boundaries_anywhere(counts, dtypes):
    ip, ix, vt = dtypes
    with AsiServer(counts, frames_per_chunk=3, indptr_dtype=ip, indices_dtype=ix, values_dtype=vt,
                   max_piece=11, seed=len(ip)) as server:
        with AsiScanSource(host="127.0.0.1", port=server.port) as src:
            dense, done = _dense(src)
    np.testing.assert_array_equal(dense, counts.reshape(-1, DY, DX))
    np.testing.assert_array_equal(done, np.arange(SY * SX))  # empty positions are processed too


def test_dtype_too_small_is_a_settings_error(counts):
    with pytest.raises(SettingsError, match="indices as uint8 cannot hold"):
        AsiServer(np.zeros((2, 2, 32, 32), np.uint8), indices_dtype="u1")


def test_several_scans_one_source_each(counts):
    with AsiServer(counts, scans=3, frames_per_chunk=8) as server:
        with AsiConnection("127.0.0.1", server.port, timeout=5) as conn:
            for seq in (1, 2, 3):
                assert conn.wait_for_scan() == seq
                dense, _ = _dense(AsiScanSource(conn))
                np.testing.assert_array_equal(dense, counts.reshape(-1, DY, DX))


def test_cancelled_scan_keeps_the_partial_result():
    # few events: the engine still holds them back for its look-ups when the scan is cancelled
    bright = np.random.default_rng(7).poisson(0.5, (SY, SX, DY, DX)).astype(np.uint16)
    assert bright.sum() < 100_000
    with AsiServer(bright, cancel_after=17, frames_per_chunk=4) as server:
        src = open_source(f"asi://127.0.0.1:{server.port}")
        result, _, _ = reconstruct_run(src, kernel_size=5)
        src.close()
    assert "scan #1 was cancelled (AcquisitionEnd) after 17 of 42 frames" in result.error
    got = result.snapshot.counts.ravel()
    np.testing.assert_array_equal(got[:17], bright.sum(axis=(2, 3)).ravel()[:17])
    assert not got[17:].any() and src.frames_received == 17


def test_tot_format_gives_one_event_per_entry(counts):
    with AsiServer(counts, with_tot=True, frames_per_chunk=6) as server:
        with AsiScanSource(host="127.0.0.1", port=server.port) as src:
            assert src.describe()["format"] == "ToT"
            chunks = list(src.chunks())
    assert all(c.tot is not None and (c.tot >= 5).all() for c in chunks)
    assert sum(len(c.positions) for c in chunks) == counts.sum()


def test_closed_connection_and_wrong_stream_say_so(counts):
    listener = socket.create_server(("127.0.0.1", 0))

    def junk():
        conn, _ = listener.accept()
        conn.sendall(b"\x07" + bytes(31))
        conn.close()

    threading.Thread(target=junk, daemon=True).start()
    with pytest.raises(InputError, match="unknown ASI header tag 7"):
        open_source(f"asi://127.0.0.1:{listener.getsockname()[1]}")
    port = listener.getsockname()[1]
    listener.close()
    with pytest.raises(InputError, match="cannot connect to the ASI sparse stream"):
        open_source(f"asi://127.0.0.1:{port}")


def test_live_session_over_two_scans(counts):
    with AsiServer(counts, scans=2, frames_per_chunk=5, rate_hz=2000) as server:
        stream = AsiAcquisitions("127.0.0.1", server.port, timeout=5)
        session = LiveSession(stream, acquisitions=2, reconstruct={"kernel_size": 5, "chunk_size": 8})
        first, second = session.run()
    ref = ricom.reconstruct(counts, kernel_size=5)
    for acq in (first, second):
        assert acq.state is State.FINISHED and acq.complete, acq.reason
        assert acq.count.n_received == SY * SX and "ASI sparse stream" in acq.header
        np.testing.assert_allclose(acq.result.snapshot.ricom, ref.ricom, rtol=1e-5,
                                   atol=1e-6 * np.abs(ref.ricom).max())


def test_reader_takes_libertem_asi_tpx3s_own_encoding():
    """The reader decodes a stream made by LiberTEM-rs's serializer (``make_sim_data``)."""
    asi = pytest.importorskip("libertem_asi_tpx3")
    rng = np.random.default_rng(3)
    frames = rng.poisson(0.3, (2 * 3, 512 * 512)).astype(np.uint32)
    rows, cols = np.nonzero(frames)
    indptr = np.concatenate([[0], np.cumsum(np.bincount(rows, minlength=6))])
    wire = bytes(asi.make_sim_data((2, 3), indptr.tolist(), cols.tolist(), frames[rows, cols].tolist()))
    listener = socket.create_server(("127.0.0.1", 0))

    def serve():
        conn, _ = listener.accept()
        conn.sendall(wire)
        conn.close()

    threading.Thread(target=serve, daemon=True).start()
    with open_source(f"asi://127.0.0.1:{listener.getsockname()[1]}") as src:
        assert src.scan_shape == (2, 3) and src.detector_shape == (512, 512)
        out = np.zeros_like(frames)
        for chunk in src.chunks():
            np.add.at(out, (chunk.positions, chunk.y.astype(np.int64) * 512 + chunk.x), 1)
    listener.close()
    np.testing.assert_array_equal(out, frames)


def test_libertem_asi_tpx3_client_receives_the_simulator(counts, tmp_path):
    """LiberTEM-rs's own client (``libertem_asi_tpx3``) reads our server: same frames, two scans."""
    asi = pytest.importorskip("libertem_asi_tpx3")
    with AsiServer(counts, frames_per_chunk=5, scans=2) as server:
        sock = str(tmp_path / "shm.sock")
        conn = asi.ASITpx3Connection(uri=f"127.0.0.1:{server.port}", chunks_per_stack=4, handle_path=sock,
                                     num_slots=64, bytes_per_chunk=1 << 16, huge=False)
        conn.start_passive()
        try:
            for _ in range(2):
                header = None
                for _ in range(20):
                    header = header or conn.wait_for_arm(timeout=0.5)
                assert header is not None and header.get_nav_shape() == (SY, SX)
                client = asi.CamClient(handle_path=sock)
                dense, cursor = np.zeros((SY * SX, DY * DX), np.int64), 0
                while (stack := conn.get_next_stack(max_size=16)) is not None:
                    for layout, indptr, indices, values in client.get_chunks(handle=stack):
                        ip = np.frombuffer(indptr, dtype=layout.get_indptr_dtype())
                        n = layout.get_nframes()
                        rows = cursor + np.repeat(np.arange(n), np.diff(ip))
                        np.add.at(dense, (rows, np.frombuffer(indices, dtype=layout.get_indices_dtype())),
                                  np.frombuffer(values, dtype=layout.get_value_dtype()))
                        cursor += n
                    client.done(stack)
                client.close()
                np.testing.assert_array_equal(dense.reshape(counts.shape), counts)
        finally:
            conn.close()


def test_cli_live_timepix3_asi(tmp_path, capsys):
    import h5py

    from ricom.cli.main import main

    frames = np.random.default_rng(5).poisson(0.3, (6, 7, 16, 16)).astype(np.uint16)
    with AsiServer(frames, scans=2) as server:
        code = main(["live", "timepix3", "--asi", "--host", "127.0.0.1", "--port", str(server.port),
                     "--acquisitions", "2", "--timeout", "10", "--kernel-size", "5", "--center", "7.5", "7.5",
                     "--no-progress", "-o", str(tmp_path / "live.h5")])
    assert code == 0, capsys.readouterr().err
    want = ricom.reconstruct(frames, kernel_size=5, center_yx=(7.5, 7.5))
    for k in (1, 2):
        with h5py.File(tmp_path / f"live_000{k}.h5") as f:
            np.testing.assert_allclose(f["ricom"][...], want.ricom, rtol=1e-9, atol=1e-12)
            assert f.attrs["input"] == f"asi://127.0.0.1:{server.port}"
    code = main(["live", "timepix3", "--asi", "--listen", "9", "-o", str(tmp_path / "x.h5")])
    assert code == 2 and "--asi connects to the camera software" in capsys.readouterr().err


def test_cli_simulate_timepix3_asi(tmp_path):
    import re
    import subprocess
    import sys

    frames = np.random.default_rng(6).poisson(0.3, (5, 6, 16, 16)).astype(np.uint16)
    np.save(tmp_path / "f.npy", frames)
    server = subprocess.Popen([sys.executable, "-m", "ricom", "simulate", "timepix3", "--asi", "--port", "0",
                               "--from", str(tmp_path / "f.npy")], stdout=subprocess.PIPE, text=True)
    try:
        port = int(re.search(r"listening on [^:]+:(\d+)", server.stdout.readline()).group(1))
        with ricom.sources.open_source(f"asi://127.0.0.1:{port}") as src:
            snap = ricom.reconstruct(src, kernel_size=5, center_yx=(7.5, 7.5))
    finally:
        server.kill()
        server.wait()
    want = ricom.reconstruct(frames, kernel_size=5, center_yx=(7.5, 7.5))
    np.testing.assert_allclose(snap.ricom, want.ricom, rtol=1e-9, atol=1e-12)
