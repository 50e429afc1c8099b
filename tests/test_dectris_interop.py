"""Interoperability: libertem-dectris (LiberTEM-rs, independent of ricom) receives the simulator's V1 stream,
and its own simulator's stream decodes as documented in `dectris_third_party`."""
from __future__ import annotations

import json

import numpy as np
import pytest

libertem_dectris = pytest.importorskip("libertem_dectris")
pytest.importorskip("zmq")

from dectris_stream import command  # noqa: E402
from dectris_third_party import LiberTEMDectrisSim  # noqa: E402
from ricom.simulators.dectris import DectrisSimulator  # noqa: E402


def _receive(conn, cam, shape, dtype) -> np.ndarray:
    out = []
    while (stack := conn.get_next_stack(max_size=16)) is not None:
        buf = np.zeros((len(stack), *shape), dtype)
        cam.decode_range_into_buffer(stack, buf, 0, len(stack))
        cam.done(stack)
        out.append(buf)
    return np.concatenate(out)


@pytest.mark.parametrize(("compression", "bit_depth", "split", "passive"), [
    ("bslz4", 16, False, False), ("lz4", 16, True, True), ("bslz4", 32, True, False), ("bslz4", 8, False, True)])
def test_libertem_dectris_receives_our_v1_stream(tmp_path, rng, compression, bit_depth, split, passive):
    data = rng.poisson(3.0, (4, 5, 24, 20)).astype(np.uint16)
    # libertem-dectris takes the header parts as dheader + config only: header_detail basic
    with DectrisSimulator(data, compression=compression, bit_depth=bit_depth, header_detail="basic",
                          split_header=split) as sim:
        conn = libertem_dectris.DectrisConnection(
            uri=f"tcp://127.0.0.1:{sim.stream_port}", frame_stack_size=8, handle_path=str(tmp_path / "shm"),
            num_slots=64, bytes_per_frame=24 * 20 * 4, huge=False)
        cam = None
        try:
            if passive:
                conn.start_passive()
                seq = command(sim, "arm")["sequence id"]
                _config, series = conn.wait_for_arm(10.0)
                assert series == seq
            else:
                seq = command(sim, "arm")["sequence id"]
                conn.start(seq)
            cam = libertem_dectris.CamClient(conn.get_socket_path())
            got = _receive(conn, cam, (24, 20), np.dtype(f"<u{bit_depth // 8}"))
        finally:
            if cam is not None:
                cam.close()
            conn.close()
    np.testing.assert_array_equal(got, data.reshape(-1, 24, 20))


def test_libertem_dectris_simulator_stream():
    """The third-party simulator behaves as `dectris_third_party` documents (for client tests)."""
    import bitshuffle
    import zmq

    sim = LiberTEMDectrisSim(n_frames=3)
    ctx = zmq.Context()
    sock = ctx.socket(zmq.PULL)
    sock.setsockopt(zmq.RCVTIMEO, 10000)
    sock.connect(f"tcp://127.0.0.1:{sim.port}")
    sim.send()
    try:
        head, config = sock.recv_multipart(), sock.recv_multipart()
        assert len(head) == 1 and json.loads(head[0])["series"] == 34
        assert json.loads(config[0])["ntrigger"] == 3
        frames = []
        for _ in range(3):
            _dimage, dimage_d, blob, _dconfig = sock.recv_multipart()
            meta = json.loads(dimage_d)
            assert meta["encoding"] == "bs16-lz4<" and blob[:12] == bytes(12)  # zeros, not the HDF5 header
            frames.append(bitshuffle.decompress_lz4(np.frombuffer(blob[12:], np.uint8), (512, 512),
                                                    np.dtype("<u2"), 0))
        assert json.loads(sock.recv_multipart()[0])["htype"] == "dseries_end-1.0"
        sim.wait()
    finally:
        sock.close(0)
        ctx.term()
    np.testing.assert_array_equal(np.stack(frames), sim.expected_frames())
