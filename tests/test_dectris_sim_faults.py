"""Faults of the DECTRIS simulator, checked with the independent decoder of `dectris_stream`."""
from __future__ import annotations

import json
import time

import numpy as np
import pytest

pytest.importorskip("zmq")
pytest.importorskip("cbor2")
pytest.importorskip("dectris.compression")

import zmq

from dectris_stream import Receiver, command, decode_v2, det, parse_v1, parse_v2
from ricom.core.errors import SettingsError
from ricom.simulators.dectris import DectrisFaults, DectrisSimulator


@pytest.fixture
def frames(rng):
    return rng.poisson(5.0, (20, 8, 6)).astype(np.uint16)


def _arm_and_read(sim, v2=False):
    rx = Receiver(sim)
    command(sim, "arm")
    msgs = rx.until_end(v2)
    rx.close()
    return msgs


def test_faults_validate():
    with pytest.raises(SettingsError):
        DectrisFaults(end_after=-1)
    with pytest.raises(SettingsError):
        DectrisFaults(masked_pixels=1.5)
    assert DectrisFaults(end_after=5, stall_after=3).stalls(10)
    assert not DectrisFaults(end_after=3, stall_after=5).stalls(10)
    assert not DectrisFaults(stall_after=10).stalls(10)


def test_leftover_images_precede_the_header(frames):
    with DectrisSimulator(frames, faults=DectrisFaults(leftover_images=3)) as sim:
        # One receiver for both series: a second PULL socket connecting while the first is still
        # closing lets the simulator's PUSH hand messages to the closing one (lost under load).
        rx = Receiver(sim)
        command(sim, "arm")
        rx.until_end()  # series 1 (its leftovers carry series 0)
        command(sim, "arm")
        msgs = rx.until_end()
        rx.close()
    stale = [json.loads(m[0]) for m in msgs[:3]]
    assert [(s["htype"], s["series"], s["frame"]) for s in stale] == [("dimage-1.0", 1, i) for i in range(3)]
    out = parse_v1(msgs[3:])
    assert out["dheader"]["series"] == 2 and len(out["frames"]) == 20


def test_leftover_images_v2(frames):
    with DectrisSimulator(frames, stream="v2", faults=DectrisFaults(leftover_images=2)) as sim:
        msgs = _arm_and_read(sim, v2=True)
    first = [decode_v2(m) for m in msgs[:3]]
    assert [(x["type"], x["series_id"]) for x in first] == [("image", 0), ("image", 0), ("start", 1)]


@pytest.mark.parametrize("stream", ["v1", "v2"])
def test_end_after(frames, stream):
    with DectrisSimulator(frames, stream=stream, faults=DectrisFaults(end_after=7)) as sim:
        msgs = _arm_and_read(sim, stream == "v2")
        out = parse_v2(msgs) if stream == "v2" else parse_v1(msgs)
        assert len(out["frames"]) == 7
        time.sleep(0.05)
        assert sim.series_sent == [(1, 7)] and sim.state == "idle"


def test_stall_after_keeps_socket_open_without_end(frames):
    with DectrisSimulator(frames, faults=DectrisFaults(stall_after=5)) as sim:
        rx = Receiver(sim)  # a generous timeout for what must come, a short one for the silence after
        command(sim, "arm")
        got = [rx.recv() for _ in range(1 + 5)]  # header + 5 images
        rx.sock.setsockopt(zmq.RCVTIMEO, 500)
        with pytest.raises(zmq.Again):
            got.append(rx.recv())  # then silence
        assert b"dheader" in got[0][0] and all(b"dimage" in m[0] for m in got[1:])
        assert sim.state == "acquire"
        command(sim, "disarm")
        assert sim.state == "idle" and sim.series_sent == [(1, 5)]
        with pytest.raises(zmq.Again):  # still no end message
            rx.recv()
        rx.close()


def test_masked_pixels_read_full_scale(frames):
    faults = DectrisFaults(masked_pixels=4, seed=3)
    with DectrisSimulator(frames, faults=faults) as sim:
        out = parse_v1(_arm_and_read(sim))
        assert det(sim, "number_of_excluded_pixels")["value"] == 0  # the user mask only counts PUTs
    mask = out["extra"]["dpixelmask-1.0"]
    assert np.count_nonzero(mask) == 4 and set(np.unique(mask[mask != 0])) <= {2, 16}
    got = np.stack(out["frames"])
    assert (got[:, mask != 0] == 65535).all()
    np.testing.assert_array_equal(got[:, mask == 0], frames[:, mask == 0])


def test_hot_readings_hit_saturation(frames):
    with DectrisSimulator(frames, stream="v2", bit_depth=8, faults=DectrisFaults(hot_readings=5)) as sim:
        out = parse_v2(_arm_and_read(sim, v2=True))
    got = np.stack(out["frames"])
    assert out["start"]["saturation_value"] == 254
    assert 1 <= np.count_nonzero(got == 254) <= 5 and got.max() == 254


def test_omit_bit_depth_and_no_header(frames):
    with DectrisSimulator(frames, faults=DectrisFaults(omit_bit_depth=True)) as sim:
        out = parse_v1(_arm_and_read(sim))
    assert "bit_depth_image" not in out["config"] and out["config"]["ntrigger"] == 20
    with DectrisSimulator(frames, faults=DectrisFaults(no_header=True)) as sim:
        msgs = _arm_and_read(sim)
    assert b"dimage-1.0" in msgs[0][0] and len(msgs) == 21
    with DectrisSimulator(frames, stream="v2", faults=DectrisFaults(no_header=True)) as sim:
        msgs = _arm_and_read(sim, v2=True)
    assert decode_v2(msgs[0])["type"] == "image"


def test_cli_flags_reach_the_simulator():
    from ricom.cli.main import build_parser
    from ricom.cli.simulate_dectris import build_simulator

    args = build_parser().parse_args([
        "simulate", "dectris", "--demo", "--scan-shape", "2", "2", "--detector-shape", "16", "16",
        "--api-port", "0", "--stream-port", "0", "--stream", "v2", "--compression", "lz4", "--bit-depth", "32",
        "--roi", "merge2x2", "--acquisitions", "2", "--leftover-images", "1", "--end-after", "3",
        "--masked-pixels", "2", "--omit-bit-depth", "--quiet"])
    sim = build_simulator(args)
    assert sim.config["stream"]["format"] == "cbor" and sim.config["detector"]["compression"] == "lz4"
    assert sim.image_shape == (8, 8) and sim.acquisitions == 2 and sim.config["detector"]["ntrigger"] == 4
    f = sim.faults
    assert (f.leftover_images, f.end_after, f.masked_pixels, f.omit_bit_depth) == (1, 3, 2, True)


def test_cli_serves_and_stops_on_ctrl_c(tmp_path, frames):
    import re
    import signal
    import subprocess
    import sys

    path = tmp_path / "scan.npy"
    np.save(path, frames.reshape(4, 5, 8, 6))
    proc = subprocess.Popen([sys.executable, "-m", "ricom", "simulate", "dectris", "--from", str(path),
                             "--api-port", "0", "--stream-port", "0", "--acquisitions", "1", "--between", "0.1"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        banner = proc.stdout.readline()
        port = int(re.search(r"stream tcp://[\d.]+:(\d+)", banner).group(1))

        class _Sim:
            stream_port = port

        rx = Receiver(_Sim)
        out = parse_v1(rx.until_end())
        rx.close()
        np.testing.assert_array_equal(np.stack(out["frames"]), frames)
        assert "armed series 1" in proc.stderr.readline()
        assert "series 1 ended: 20 frames sent" in proc.stderr.readline()
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=20)
        assert proc.returncode == 0, err
    finally:
        proc.kill()
