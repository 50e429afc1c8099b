"""Recording every received pattern while reconstructing (`ricom.io.recorder`).

In memory and over loopback from the project's Merlin simulator: the recording equals
what was sent, reconstructs to the live image, and a slow writer never costs the
reconstruction a pattern.
"""
from __future__ import annotations

import os
import sys
import threading

import h5py
import numpy as np
import pytest

import ricom
from ricom import api
from ricom.core.errors import SettingsError
from ricom.engine.pipeline import run
from ricom.engine.reconstruction import Reconstruction
from ricom.io import recorder as recorder_module
from ricom.io.attach import attach_recorder, source_dtype
from ricom.io.recorder import FrameRecorder
from ricom.simulators.merlin.server import MerlinServer
from ricom.sources.arrays import ArraySource
from ricom.sources.merlin.live import MerlinLiveSource

SCAN, DET = (8, 9), (32, 32)
N = SCAN[0] * SCAN[1]
SETTINGS = api.make_settings(kernel_size=5, center_yx=(15.5, 15.5), virtual_detector=(4, 12), step_A=0.4)


def frames_for(seed: int = 3, n: int = N) -> np.ndarray:
    """12-bit counts of a bright disc whose centre moves with the scan position."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:DET[0], :DET[1]]
    shift = rng.normal(0, 1.5, (n, 2))
    r2 = (yy - 15.5 - shift[:, :1, None]) ** 2 + (xx - 15.5 - shift[:, 1:, None]) ** 2
    return np.minimum(rng.poisson(np.where(r2 < 64, 2.0, 0.05)), 4095).astype(np.uint16)


def recorder_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("ricom-recorder")]


@pytest.mark.parametrize("compression", ["bitshuffle-lz4", "zstd", None])
def test_in_memory_recording_equals_input(tmp_path, compression):
    """Flyback frames (−1) are skipped; of two passes the second (newest) is kept."""
    first, second = frames_for(1), frames_for(2)
    line = SCAN[1] + 1  # one flyback frame per line
    stream = np.zeros((2 * SCAN[0] * line, *DET), np.uint16)
    for p, data in enumerate((first, second)):
        for iy in range(SCAN[0]):
            a = (p * SCAN[0] + iy) * line
            stream[a:a + SCAN[1]] = data[iy * SCAN[1]:(iy + 1) * SCAN[1]]
            stream[a + SCAN[1]] = 4000  # flyback: never recorded
    source = ArraySource(stream, scan_shape=SCAN, flyback_frames=1)
    rec = Reconstruction(SCAN, DET, SETTINGS)
    path = str(tmp_path / "rec.h5")
    recorder = attach_recorder(rec, path, source, compression=compression)
    assert not os.path.exists(path)  # appears only when complete
    result = run(source, rec, chunk_size=13)
    counts = recorder.close()
    assert result.complete and counts["n_recorded"] == 2 * N and counts["n_not_recorded"] == 0
    assert counts["n_skipped"] == 2 * SCAN[0]
    with h5py.File(path) as f:
        np.testing.assert_array_equal(f["data"][()], second.reshape(*SCAN, *DET))
        assert f["data"].dtype == np.uint16 and f.attrs["complete"] and f.attrs["n_recorded"] == 2 * N
        assert f["data"].attrs["step_A"] == 0.4 and list(f.attrs["scan_shape"]) == list(SCAN)
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".")]  # no temporary left


@pytest.mark.parametrize("depth,raw", [(12, False), (1, True)])  # raw 1-bit: packed patterns, unpacked by the writer
def test_live_recording_reconstructs_to_the_live_image(tmp_path, depth, raw):
    frames = np.minimum(frames_for(5), 2**depth - 1)
    path = str(tmp_path / "live.h5")
    with MerlinServer(frames, scan_shape=SCAN, data_port=0, control_port=None, start_on="connect", depth=depth,
                      raw=raw) as server:
        source = MerlinLiveSource("127.0.0.1", server.data_port, timeout=10)
        assert (source.frame_header.counter_depth, source.frame_header.raw) == (depth, raw)
        rec = Reconstruction(source.scan_shape, source.detector_shape, SETTINGS)
        with attach_recorder(rec, path, source) as recorder:
            result = run(source, rec, chunk_size=16)
        source.close()
    assert result.complete and recorder.n_recorded == N and recorder.n_not_recorded == 0
    with h5py.File(path) as f:
        np.testing.assert_array_equal(f["data"][()], frames.reshape(*SCAN, *DET))
        assert "HDR" in f.attrs["acquisition_header"] and f.attrs["complete"]
        assert f["data"].dtype == source_dtype(source)
    replay = ricom.reconstruct(f"{path}:/data", settings=SETTINGS)
    assert replay.n_patterns == result.snapshot.n_patterns == N
    np.testing.assert_allclose(replay.ricom, result.snapshot.ricom, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(replay.com_x, result.snapshot.com_x, rtol=1e-9, atol=1e-12)
    hinted = api.reconstruct_run(f"{path}:/data", kernel_size=5, center_yx=(15.5, 15.5))[0].snapshot
    assert hinted.settings.calibration.step_A == 0.4  # the calibration comes back as a hint


def test_slow_writer_counts_what_it_did_not_record(tmp_path):
    frames = frames_for(7)
    rec = Reconstruction(SCAN, DET, SETTINGS)
    path = str(tmp_path / "slow.h5")
    recorder = attach_recorder(rec, path, dtype=np.uint16, max_queue_bytes=3 * frames[0].nbytes)
    recorder.write_delay_s = 0.05
    result = run(ArraySource(frames, scan_shape=SCAN), rec, chunk_size=2)
    counts = recorder.close()
    assert result.snapshot.n_patterns == N  # the reconstruction has every pattern
    assert counts["n_not_recorded"] > 0 and counts["n_recorded"] + counts["n_not_recorded"] == N
    missed = counts["not_recorded_positions"]
    assert len(missed) == counts["n_not_recorded"] and not counts["recorded"].flat[missed].any()
    with h5py.File(path) as f:
        assert not f.attrs["complete"] and f.attrs["n_not_recorded"] == counts["n_not_recorded"]
        stored = f["data"][()].reshape(N, *DET)
        done = np.flatnonzero(f["recorded"][()].ravel())
        np.testing.assert_array_equal(stored[done], frames[done])
        np.testing.assert_array_equal(np.sort(f["not_recorded_positions"][()]), np.sort(missed))


def test_writer_thread_ends_with_close(tmp_path):
    before = recorder_threads()
    recorder = FrameRecorder(str(tmp_path / "t.h5"), SCAN, DET, np.uint16, writer_nice=3)
    assert recorder_threads() == before  # started with the first patterns
    rec = Reconstruction(SCAN, DET, SETTINGS)
    rec.add_reducer(recorder)
    recorder.write_delay_s = 0.2  # the writer is still busy below
    rec.process_frames(frames_for(), start=0)
    (writer,) = set(recorder_threads()) - set(before)
    if sys.platform == "linux":  # only the writer thread is niced
        assert os.getpriority(os.PRIO_PROCESS, writer.native_id) == os.getpriority(os.PRIO_PROCESS, 0) + 3
    recorder.close()
    assert recorder_threads() == before
    assert recorder.close()["n_recorded"] == N  # closing twice does nothing
    with pytest.raises(RuntimeError, match="closed"):
        rec.process_frames(frames_for(), start=0)
    with pytest.raises(NotImplementedError, match="one stream"):
        recorder.merge(recorder)


def test_bad_arguments(tmp_path, monkeypatch):
    with pytest.raises(SettingsError, match=r"\.h5"):
        FrameRecorder(str(tmp_path / "x.npy"), SCAN, DET, np.uint16)
    with pytest.raises(SettingsError, match="compression"):
        FrameRecorder(str(tmp_path / "x.h5"), SCAN, DET, np.uint16, compression="lzma")
    monkeypatch.setattr(recorder_module, "hdf5plugin", None)
    with pytest.raises(SettingsError, match=r"needs hdf5plugin .*compression=None"):
        FrameRecorder(str(tmp_path / "x.h5"), SCAN, DET, np.uint16)
    with FrameRecorder(str(tmp_path / "plain.h5"), SCAN, DET, np.uint16, compression=None):
        pass  # plain h5py needs no plugin
    os.remove(tmp_path / "plain.h5")
    assert not os.listdir(tmp_path)


def test_a_failed_write_is_reported_and_leaves_no_file(tmp_path, monkeypatch):
    path = str(tmp_path / "fail.h5")
    recorder = FrameRecorder(path, SCAN, DET, np.uint16)

    def full_disk(positions, frames):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(recorder, "_write", full_disk)
    rec = Reconstruction(SCAN, DET, SETTINGS)
    rec.add_reducer(recorder)
    result = run(ArraySource(frames_for(), scan_shape=SCAN), rec, chunk_size=8)
    assert result.snapshot.n_patterns == N
    with pytest.raises(OSError, match="No space"):
        recorder.close()
    assert recorder.n_not_recorded == N and recorder.n_recorded == 0
    assert not os.listdir(tmp_path) and recorder_threads() == []
