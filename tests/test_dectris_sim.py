"""The DECTRIS simulator: streams V1/V2 decoded independently, the REST API, trigger modes, ROI, masks."""
from __future__ import annotations

import time

import numpy as np
import pytest

pytest.importorskip("zmq")
pytest.importorskip("cbor2")
pytest.importorskip("dectris.compression")
pytest.importorskip("bitshuffle")

from dectris_stream import Receiver, command, det, parse_v1, parse_v2, rest
from ricom.core.errors import SettingsError
from ricom.simulators.dectris import DectrisSimulator


@pytest.fixture
def frames(rng):
    """A 3×4 scan of 12×10 patterns (non-square, to catch shape order) with counts up to ~40."""
    return rng.poisson(rng.uniform(0, 20, (3, 4, 12, 10))).astype(np.uint16)


def _series(sim, v2=False):
    rx = Receiver(sim)
    try:
        seq = command(sim, "arm")["sequence id"]
        msgs = rx.until_end(v2)
    finally:
        rx.close()
    return seq, (parse_v2(msgs) if v2 else parse_v1(msgs))


@pytest.mark.parametrize("compression", ["bslz4", "lz4", "none"])
@pytest.mark.parametrize("bit_depth", [8, 16, 32])
def test_v1_frames_equal_input(frames, compression, bit_depth):
    with DectrisSimulator(frames, compression=compression, bit_depth=bit_depth) as sim:
        seq, out = _series(sim)
    assert seq == 1 and out["dheader"]["series"] == 1 and out["end"]["series"] == 1
    assert out["dheader"]["header_detail"] == "all"
    assert out["config"]["bit_depth_image"] == bit_depth and out["config"]["ntrigger"] == 12
    assert [m["frame"] for m in out["images"]] == list(range(12))
    got = np.stack(out["frames"])
    assert got.dtype == np.dtype(f"u{bit_depth // 8}")
    np.testing.assert_array_equal(got, frames.reshape(-1, 12, 10))
    assert out["extra"]["dpixelmask-1.0"].shape == (12, 10) and not out["extra"]["dpixelmask-1.0"].any()
    assert out["extra"]["dflatfield-1.0"].shape == (12, 10)


def test_bslz4_tail_and_blocks(rng):
    """Frames larger than a bitshuffle block and with a pixel count not a multiple of 8."""
    data = rng.integers(0, 60000, (2, 67, 71)).astype(np.uint16)
    with DectrisSimulator(data) as sim:
        _, out = _series(sim)
    np.testing.assert_array_equal(np.stack(out["frames"]), data)


@pytest.mark.parametrize("compression", ["bslz4", "lz4", "none"])
def test_v2_frames_equal_input(frames, compression):
    with DectrisSimulator(frames, stream="v2", compression=compression, bit_depth=32) as sim:
        seq, out = _series(sim, v2=True)
    start = out["start"]
    assert start["series_id"] == seq == out["end"]["series_id"]
    assert start["series_unique_id"] == out["end"]["series_unique_id"]
    assert (start["image_size_x"], start["image_size_y"], start["number_of_images"]) == (10, 12, 12)
    assert start["image_dtype"] == "uint32" and start["saturation_value"] == 2**32 - 2
    assert start["pixel_mask"]["threshold_1"].shape == (12, 10)
    assert [m["image_id"] for m in out["images"]] == list(range(12))
    img = out["images"][3]
    assert img["series_id"] == seq and list(img["real_time"]) == [1_000_000, 1_000_000_000]
    assert img["start_time"][0] == 3 * 1_000_000 and img["stop_time"][0] == 4 * 1_000_000
    np.testing.assert_array_equal(np.stack(out["frames"]), frames.reshape(-1, 12, 10))


def test_v2_basic_header_has_no_mask(frames):
    with DectrisSimulator(frames, stream="v2", header_detail="basic") as sim:
        _, out = _series(sim, v2=True)
    assert "pixel_mask" not in out["start"] and "flatfield" not in out["start"]


def test_rest_answers_and_errors(frames):
    with DectrisSimulator(frames) as sim:
        assert rest(sim, "GET", "detector/api/version/") == (200, {"value": "1.8.0", "value_type": "string"})
        body = det(sim, "trigger_mode")
        assert body["value"] == "exte" and body["access_mode"] == "rw" and "exts" in body["allowed_values"]
        assert det(sim, "x_pixels_in_detector")["value"] == 10 and det(sim, "y_pixels_in_detector")["value"] == 12
        assert det(sim, "count_time", 0.01) == ["count_time", "frame_time"]  # frame_time follows
        assert det(sim, "frame_time")["value"] == 0.01
        assert det(sim, "nimages", 2) == ["nimages"]
        assert "nimages" in rest(sim, "GET", "detector/api/1.8.0/config/keys")[1]
        for path, value, code in [("detector/api/1.8.0/config/no_such_key", None, 404),
                                  ("detector/api/1.7.0/config/nimages", None, 404),
                                  ("detector/api/1.8.0/config/nimages", 0, 400),
                                  ("detector/api/1.8.0/config/nimages", "many", 400),
                                  ("detector/api/1.8.0/config/trigger_mode", "sometimes", 400),
                                  ("detector/api/1.8.0/config/x_pixels_in_detector", 5, 400),
                                  ("detector/api/1.8.0/command/explode", None, 404),
                                  ("nosuch/api/1.8.0/config/mode", None, 404)]:
            status, text = rest(sim, "PUT" if value is not None or "command" in path else "GET", path, value)
            assert status == code, (path, status, text)
            assert isinstance(text, str) and "\n" not in text.strip()
        assert rest(sim, "GET", "stream/api/1.8.0/status/state")[1]["value"] == "ready"
        assert rest(sim, "GET", "detector/api/1.8.0/status/state")[1]["value"] == "idle"
        status, changed = rest(sim, "PUT", "stream/api/1.8.0/config/",
                               raw=b'{"format": {"value": "cbor"}, "header_detail": {"value": "basic"}}')
        assert status == 200 and changed == ["format", "header_detail"]


def test_arm_sequence_ids_and_busy(frames):
    with DectrisSimulator(frames) as sim:
        det(sim, "trigger_mode", "ints")
        assert command(sim, "arm") == {"sequence id": 1}
        assert rest(sim, "GET", "detector/api/1.8.0/status/state")[1]["value"] == "ready"
        status, text = rest(sim, "PUT", "detector/api/1.8.0/command/arm")
        assert status == 400 and "ready" in text
        assert rest(sim, "PUT", "detector/api/1.8.0/config/nimages", 3)[0] == 400  # config locked while armed
        command(sim, "disarm")
        assert command(sim, "arm") == {"sequence id": 2}
        command(sim, "abort")
        assert command(sim, "arm") == {"sequence id": 3}
        command(sim, "disarm")
        assert [s for s, _ in sim.series_sent] == [1, 2, 3]


def test_exts_needs_no_trigger_and_trigger_rejected(frames):
    with DectrisSimulator(frames) as sim:
        det(sim, "trigger_mode", "exts")
        det(sim, "nimages", 3)
        det(sim, "ntrigger", 2)
        rx = Receiver(sim)
        command(sim, "arm")
        out = parse_v1(rx.until_end())
        rx.close()
        assert len(out["frames"]) == 6
        assert rest(sim, "PUT", "detector/api/1.8.0/command/trigger")[0] == 400


@pytest.mark.parametrize("mode", ["ints", "inte"])
def test_software_triggers_release_nimages_each(frames, mode):
    with DectrisSimulator(frames) as sim:
        det(sim, "trigger_mode", mode)
        det(sim, "nimages", 2)
        det(sim, "ntrigger", 3)
        rx = Receiver(sim)
        command(sim, "arm")
        header = rx.recv()
        assert b"dheader" in header[0]
        for _ in range(3):
            command(sim, "trigger")
            for _ in range(2):
                assert b"dimage-1.0" in rx.recv()[0]
        assert b"dseries_end" in rx.recv()[0]
        rx.close()
        _wait(lambda: sim.state == "idle")
        assert sim.series_sent == [(1, 6)]


def test_series_longer_than_data_repeats_frames(frames):
    with DectrisSimulator(frames) as sim:
        det(sim, "ntrigger", 30)
        _, out = _series(sim)
    flat = frames.reshape(-1, 12, 10)
    np.testing.assert_array_equal(np.stack(out["frames"]), flat[np.arange(30) % 12])


def test_merge2x2_sums_like_arina(frames):
    with DectrisSimulator(frames, roi="merge2x2") as sim:
        assert det(sim, "x_pixels_in_detector")["value"] == 5
        _, out = _series(sim)
        det(sim, "roi_mode", "disabled")
        assert det(sim, "y_pixels_in_detector")["value"] == 12
    binned = frames.reshape(-1, 6, 2, 5, 2).sum(axis=(2, 4))
    np.testing.assert_array_equal(np.stack(out["frames"]), binned)


def test_pixel_mask_from_rest_is_applied(frames):
    with DectrisSimulator(frames, stream="v2") as sim:
        darray = det(sim, "pixel_mask")["value"]
        assert darray["shape"] == [10, 12] and darray["filters"] == ["base64"] and darray["type"] == "<u4"
        mask = np.zeros((12, 10), np.uint32)
        mask[2, 7] = 1 << 1
        mask[11, 0] = 1 << 8
        import base64

        darray["data"] = base64.b64encode(mask.tobytes()).decode()
        assert "pixel_mask" in det(sim, "pixel_mask", darray)
        assert det(sim, "number_of_excluded_pixels")["value"] == 2
        _, out = _series(sim, v2=True)
        det(sim, "mask_to_zero", True)
        _, zero = _series(sim, v2=True)
    np.testing.assert_array_equal(out["start"]["pixel_mask"]["threshold_1"], mask)
    got, expect = np.stack(out["frames"]), frames.reshape(-1, 12, 10).copy()
    expect[:, mask != 0] = 65535
    np.testing.assert_array_equal(got, expect)
    assert (np.stack(zero["frames"])[:, mask != 0] == 0).all()


def test_v1_split_header(frames):
    with DectrisSimulator(frames, split_header=True, header_detail="basic") as sim:
        rx = Receiver(sim)
        command(sim, "arm")
        first, second = rx.recv(), rx.recv()
        rest_msgs = rx.until_end()
        rx.close()
    assert len(first) == 1 and b"dheader-1.0" in first[0]
    assert len(second) == 1 and b'"ntrigger"' in second[0]
    out = parse_v1([first, second, *rest_msgs])
    np.testing.assert_array_equal(np.stack(out["frames"]), frames.reshape(-1, 12, 10))


def test_disarm_mid_series_sends_end(frames):
    with DectrisSimulator(frames, rate_hz=200) as sim:
        det(sim, "ntrigger", 1000)
        rx = Receiver(sim)
        command(sim, "arm")
        for _ in range(5):
            rx.recv()
        command(sim, "disarm")
        msgs = rx.until_end()
        rx.close()
        assert sim.state == "idle" and sim.series_sent[0][0] == 1 and 3 < sim.series_sent[0][1] < 1000
    assert len(msgs) - 1 == sim.series_sent[0][1] - 4  # 1 header + 4 frames read before


def test_rate_paces_with_a_clock(frames):
    with DectrisSimulator(frames, rate_hz=400) as sim:
        det(sim, "ntrigger", 40)
        t0 = time.monotonic()
        _series(sim)
        elapsed = time.monotonic() - t0
    assert 0.08 < elapsed < 2.0


def test_passive_acquisitions(frames):
    with DectrisSimulator(frames, acquisitions=2, between_s=0.05, stream="v2") as sim:
        rx = Receiver(sim)
        a, b = parse_v2(rx.until_end(v2=True)), parse_v2(rx.until_end(v2=True))
        rx.close()
        _wait(lambda: len(sim.series_sent) == 2)
    assert (a["start"]["series_id"], b["start"]["series_id"]) == (1, 2)
    assert len(a["frames"]) == len(b["frames"]) == 12


def test_demo_specimen_and_bad_settings():
    from ricom.simulators.specimen import SimulationParams

    params = SimulationParams(scan_shape=(2, 3), detector_shape=(16, 16), dose_e_per_probe=200)
    with DectrisSimulator(params, stream="v2") as sim:
        _, out = _series(sim, v2=True)
    assert len(out["frames"]) == 6 and 0 < np.stack(out["frames"]).sum() <= 6 * 200 * 1.5
    with pytest.raises(SettingsError):
        DectrisSimulator(np.zeros((2, 4, 4), np.uint16), stream="v3")
    with pytest.raises(SettingsError):
        DectrisSimulator(np.zeros((2, 4, 4), np.uint16), compression="zip")
    with pytest.raises(SettingsError):
        DectrisSimulator(np.zeros((2, 4, 4), np.float32))


def test_file_input(tmp_path, frames):
    path = tmp_path / "scan.npy"
    np.save(path, frames)
    with DectrisSimulator(str(path), compression="lz4") as sim:
        _, out = _series(sim)
    np.testing.assert_array_equal(np.stack(out["frames"]), frames.reshape(-1, 12, 10))


def _wait(cond, timeout=5.0):
    t0 = time.monotonic()
    while not cond():
        assert time.monotonic() - t0 < timeout, "timed out"
        time.sleep(0.01)
