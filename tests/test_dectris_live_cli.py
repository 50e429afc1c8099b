"""``ricom live dectris`` against the project's DECTRIS simulator (REST + stream, 127.0.0.1):
active and passive sessions, masks, recording, early ends and REST refusals."""
from __future__ import annotations

import h5py
import numpy as np
import pytest

pytest.importorskip("zmq")
pytest.importorskip("dectris.compression")

from ricom import api
from ricom.cli.main import main
from ricom.simulators.dectris import DectrisSimulator
from ricom.simulators.dectris.faults import DectrisFaults

SCAN, DET = (8, 8), (24, 24)
OPTS = ["--kernel-size", "5", "--center", "12", "12", "--no-progress"]


@pytest.fixture(scope="module")
def frames():
    rng = np.random.default_rng(3)
    yy, xx = np.mgrid[:DET[0], :DET[1]]
    out = np.empty((SCAN[0] * SCAN[1], *DET), np.uint16)
    for i in range(len(out)):
        disc = (yy - 12 - (i % 3 - 1)) ** 2 + (xx - 12 + (i % 5 - 2) * 0.5) ** 2 < 25
        out[i] = rng.poisson(np.where(disc, 4.0, 0.05))
    return out


def _offline(frames, mask_bad=None):
    data = frames.copy()
    if mask_bad is not None:
        data[:, mask_bad] = 0
    return api.reconstruct(data.reshape(*SCAN, *DET), kernel_size=5, center_yx=(12.0, 12.0))


def _args(sim, out, *extra, stream="v1"):
    return ["live", "dectris", "--host", "127.0.0.1", "--api-port", str(sim.api_port), "--stream-port",
            str(sim.stream_port), "--stream", stream, "-o", str(out), *OPTS, *extra]


@pytest.mark.parametrize("stream", ["v1", "v2"])
def test_active_session_equals_offline_and_disarms(tmp_path, frames, stream):
    with DectrisSimulator(frames, stream=stream) as sim:
        code = main(_args(sim, tmp_path / "live.h5", "--active", "--scan-shape", "8", "8", stream=stream))
        assert code == 0
        assert sim.series_sent[-1][1] == 64 and sim.state in ("idle", "na")
    with h5py.File(tmp_path / "live.h5") as f:
        np.testing.assert_allclose(f["ricom"][...], _offline(frames).ricom, rtol=1e-9, atol=1e-12)
        assert f.attrs["input"].startswith("dectris://127.0.0.1") and f.attrs["series"] == sim.series_sent[-1][0]


def test_passive_two_acquisitions_with_masked_pixels_and_recording(tmp_path, frames):
    faults = DectrisFaults(masked_pixels=5)
    with DectrisSimulator(frames, acquisitions=2, between_s=0.2, faults=faults) as sim:
        code = main(_args(sim, tmp_path / "live.h5", "--acquisitions", "2", "--timeout", "10",
                          "--record", str(tmp_path / "raw.h5")))
        mask = sim.pixel_mask if hasattr(sim, "pixel_mask") else None
    assert code == 0
    for k in (1, 2):
        with h5py.File(tmp_path / f"live_000{k}.h5") as f:
            assert f.attrs["masked_pixels"] >= 5 and f.attrs["frames_received"] == 64
            ricom_img = f["ricom"][...]
        with h5py.File(tmp_path / f"raw_000{k}.h5") as f:
            bad = (f["pixel_mask"][...] & 0xFFFF) != 0
            assert bad.sum() >= 5 and f.attrs["n_stored_as_received"] == 64
            assert (f["data"][...].reshape(64, *DET)[:, bad] == 65535).all()  # stored as the detector sent them
        np.testing.assert_allclose(ricom_img, _offline(frames, bad).ricom, rtol=1e-9, atol=1e-12)
    assert mask is None or ((mask & 0xFFFF) != 0).sum() == bad.sum()


def test_series_that_ends_early_is_saved_as_partial(tmp_path, frames, capsys):
    with DectrisSimulator(frames, faults=DectrisFaults(end_after=20)) as sim:
        code = main(_args(sim, tmp_path / "live.h5", "--active", "--scan-shape", "8", "8"))
    assert code == 3
    with h5py.File(tmp_path / "live.h5") as f:
        assert f.attrs["acquisition_state"] == "aborted" and f.attrs["n_patterns"] == 20
        assert "ended after 20 of 64 frames" in f.attrs["partial_reason"]


def test_leftover_images_of_a_previous_series_are_skipped(tmp_path, frames):
    with DectrisSimulator(frames, faults=DectrisFaults(leftover_images=5), stream="v2") as sim:
        code = main(_args(sim, tmp_path / "live.h5", "--active", "--scan-shape", "8", "8", stream="v2"))
    assert code == 0


def test_rest_refusals_are_one_line_errors(tmp_path, frames, capsys):
    with DectrisSimulator(frames) as sim:
        code = main(_args(sim, tmp_path / "a.h5", "--active", "--scan-shape", "8", "8", "--roi", "lines"))
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2 and err[-1].startswith("ricom: error: the DECTRIS detector at 127.0.0.1"), err
        assert "refused PUT /detector/api/1.8.0/config/roi_mode: HTTP 400 (value 'lines' not allowed" in err[-1]
        code = main(_args(sim, tmp_path / "b.h5", "--active", "--scan-shape", "8", "8", "--trigger-mode", "ints",
                          "--count-time", "-1"))
        assert code == 2 and "count_time_s must be > 0" in capsys.readouterr().err
    code = main(["live", "dectris", "--host", "127.0.0.1", "--api-port", "9", "--active", "--scan-shape", "8", "8",
                 "-o", str(tmp_path / "c.h5"), *OPTS])
    err = capsys.readouterr().err
    assert code == 2 and "cannot reach the DECTRIS detector at 127.0.0.1:9" in err
    assert not (tmp_path / "c.h5").exists()


def test_active_needs_scan_shape(tmp_path, capsys):
    code = main(["live", "dectris", "--host", "127.0.0.1", "--active", "-o", str(tmp_path / "x.h5"), *OPTS])
    assert code == 2 and "--active needs --scan-shape" in capsys.readouterr().err
