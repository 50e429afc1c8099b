"""Recording events while reconstructing (`ricom.io.event_recorder.EventRecorder`).

The recording is checked by reading it back with ricom's event-list reader and against
an independent grouping (NumPy's stable argsort) of the events sent, and end to end:
a live Timepix3 stream recorded with ``ricom live timepix3 --record`` reconstructs to
the same image as the stream and as the ``.tpx3`` file it came from.
"""
from __future__ import annotations

import h5py
import numpy as np
import pytest

from ricom.api import reconstruct_run
from ricom.core.chunks import EventChunk
from ricom.engine.reconstruction import Reconstruction
from ricom.io.attach import attach_recorder
from ricom.io.event_recorder import EventRecorder
from ricom.simulators.timepix.raw import RawSimulator, demo_tpx3
from ricom.sources.events_h5 import EventsH5Source

SCAN = (16, 16)
KW = {"kernel_size": 7, "center_yx": (255.5, 255.5)}


def _chunks(rng, n_chunks, in_order):
    out, start = [], 0
    for _ in range(n_chunks):
        k = int(rng.integers(0, 400))
        if in_order:
            pos = np.sort(rng.integers(start, min(start + 40, 256), k))
            start = int(pos[-1]) if k else start
        else:
            pos = rng.integers(-1, 256, k)
        out.append(EventChunk(pos, rng.integers(0, 64, k).astype(np.uint16), rng.integers(0, 64, k).astype(np.uint16),
                              rng.uniform(0, 900, k).astype(np.float32), rng.integers(0, 200, k).astype(np.uint16)))
    return out


@pytest.mark.parametrize("in_order", [True, False])
def test_grouped_by_position_like_a_stable_sort(tmp_path, in_order):
    chunks = _chunks(np.random.default_rng(3), 30, in_order)
    path = str(tmp_path / "ev.h5")
    rec = EventRecorder(path, SCAN, (64, 64), attrs={"dwell_ns": 1000.0, "step_A": 0.2}, memory_bytes=4096)
    for c in chunks:
        rec.process_event_chunk(c)
    counts = rec.close()
    pos = np.concatenate([c.positions for c in chunks])
    keep = pos >= 0
    order = np.argsort(pos[keep], kind="stable")
    assert counts["n_recorded"] == keep.sum() and counts["n_skipped"] == (~keep).sum()
    with h5py.File(path) as f:
        g = f["events"]
        np.testing.assert_array_equal(g["offsets"][:], np.concatenate([[0], np.cumsum(np.bincount(pos[keep],
                                                                                         minlength=256))]))
        for name in ("x", "y", "t_ns", "tot"):
            np.testing.assert_array_equal(g[name][:], np.concatenate([getattr(c, name) for c in chunks])[keep][order])
        assert g.attrs["dwell_ns"] == 1000.0 and g.attrs["step_A"] == 0.2 and f.attrs["complete"]
    src = EventsH5Source(path)
    assert src.scan_shape == SCAN and src.n_frames == keep.sum()
    assert not list((tmp_path).glob(".*staging*"))  # the staging folder is gone


def test_full_queue_counts_events_not_recorded(tmp_path):
    rec = EventRecorder(str(tmp_path / "ev.h5"), SCAN, (64, 64), max_queue_bytes=1)
    chunk = _chunks(np.random.default_rng(0), 1, True)[0]
    rec.process_event_chunk(chunk)
    out = rec.close()
    assert out["n_recorded"] == 0 and out["n_not_recorded"] == len(chunk.positions)
    with h5py.File(tmp_path / "ev.h5") as f:
        assert not f.attrs["complete"]


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("rec") / "scan.tpx3")
    demo_tpx3(path, SCAN, (32, 32), dose=60, sync="line")
    return path


def test_recording_a_file_run_reconstructs_the_same(demo, tmp_path):
    out = str(tmp_path / "rec.h5")
    recorders = []
    res, rec, _ = reconstruct_run(demo, source_options={"keep_times": True}, chunk_size=8,
                                  before_run=lambda r, s: recorders.append(attach_recorder(r, out, s)), **KW)
    recorders[0].close()
    again, _, _ = reconstruct_run(out, **KW)
    np.testing.assert_array_equal(again.snapshot.counts, res.snapshot.counts)
    np.testing.assert_allclose(again.snapshot.ricom, res.snapshot.ricom, rtol=1e-9, atol=1e-12)
    assert isinstance(rec, Reconstruction)
    with pytest.warns(UserWarning):
        acc_file, _, _ = reconstruct_run(demo, source_options={"acceptance_ns": 300.0}, **KW)
    with pytest.warns(UserWarning):
        acc_rec, _, _ = reconstruct_run(out, source_options={"acceptance_ns": 300.0}, **KW)
    np.testing.assert_array_equal(acc_rec.snapshot.counts, acc_file.snapshot.counts)
    assert np.corrcoef(acc_rec.snapshot.ricom.ravel(), acc_file.snapshot.ricom.ravel())[0, 1] >= 0.9999


def test_cli_live_record(demo, tmp_path, capsys):
    """``ricom live timepix3 --raw --record``: the recording reconstructs to the live image."""
    from ricom.cli.main import main

    out, record = tmp_path / "live.h5", tmp_path / "events.h5"
    with RawSimulator(demo, scans=1) as sim:
        rc = main(["live", "timepix3", "--raw", "--host", "127.0.0.1", "--port", str(sim.port), "--scan-shape",
                   "16", "16", "--kernel-size", "7", "--center", "255.5", "255.5", "--no-progress",
                   "--record", str(record), "-o", str(out)])
    assert rc == 0 and out.exists() and record.exists()
    again = tmp_path / "again.h5"
    assert main(["reconstruct", str(record), "--kernel-size", "7", "--center", "255.5", "255.5",
                 "--no-progress", "-o", str(again)]) == 0
    with h5py.File(out) as a, h5py.File(again) as b:
        live, rec = a["ricom"][:], b["ricom"][:]
    assert np.corrcoef(live.ravel(), rec.ravel())[0, 1] >= 0.9999
    with h5py.File(record) as f:
        assert "t_ns" in f["events"] and f["events/offsets"][-1] > 0
