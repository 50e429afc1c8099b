"""A new acceptance time rebuilds the scan from the kept events (`ChunkReduction.set_acceptance`).

The reference is the ``.tpx3`` reader's own acceptance filter (the file run with that
acceptance time from the start), an independent path through the source's compiled
assignment; the rebuilt image must match it.
"""
from __future__ import annotations

import threading

import numpy as np
import pytest

from ricom.api import reconstruct_run
from ricom.core.chunks import EventChunk
from ricom.core.errors import SettingsError
from ricom.engine.reconstruction import Reconstruction
from ricom.simulators.timepix.raw import RawSimulator, demo_tpx3
from ricom.sources.timepix.stream import Tpx3Connection, Tpx3StreamSource

SCAN = (16, 16)
KW = {"kernel_size": 7, "center_yx": (255.5, 255.5)}
A_NS = 400.0  # of a 1000 ns dwell


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("acc") / "scan.tpx3")
    demo_tpx3(path, SCAN, (32, 32), dose=80, sync="line")
    return path


def _file(path, acceptance_ns=None):
    opts = {"acceptance_ns": acceptance_ns} if acceptance_ns else {}
    with pytest.warns(UserWarning) if acceptance_ns else _quiet():
        return reconstruct_run(path, source_options=opts, **KW)[0].snapshot


class _quiet:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def _same(ref, snap):
    np.testing.assert_array_equal(ref.counts, snap.counts)
    assert np.corrcoef(ref.ricom.ravel(), snap.ricom.ravel())[0, 1] >= 0.9999
    np.testing.assert_allclose(snap.ricom, ref.ricom, rtol=1e-6, atol=1e-9 * np.abs(ref.ricom).max())
    assert ref.n_patterns == snap.n_patterns


def _kept_run(path, before=None, during=None):
    """A file run with every event kept (times on); ``during(rec)`` after the first chunk."""
    def attach(rec, src):
        rec.keep_events()
        if before is not None:
            rec.set_acceptance(before)
        if during is not None:
            original, calls = rec.process_events, []

            def process(chunk):
                original(chunk)
                calls.append(1)
                if len(calls) == 1:
                    during(rec)
            rec.process_events = process

    res, rec, _ = reconstruct_run(path, source_options={"keep_times": True, "events_per_chunk": 3000},
                                  chunk_size=16, before_run=attach, **KW)
    return res.snapshot, rec


def test_acceptance_before_data_equals_file_filter(demo):
    snap, _ = _kept_run(demo, before=A_NS)
    full = _file(demo)
    _same(_file(demo, A_NS), snap)
    assert snap.counts.sum() < 0.6 * full.counts.sum()  # the filter really removed electrons


def test_acceptance_changed_after_and_during_the_scan(demo):
    ref = _file(demo, A_NS)
    _, rec = _kept_run(demo)
    _same(_file(demo), rec.snapshot())
    rec.set_acceptance(A_NS)  # after the end: rebuilt from the kept events
    _same(ref, rec.snapshot())
    rec.set_acceptance(None)  # back to every electron
    _same(_file(demo), rec.snapshot())
    snap, rec = _kept_run(demo, during=lambda r: r.set_acceptance(A_NS))  # mid-scan
    assert rec.event_store.n_events > 3000
    _same(ref, snap)


def test_acceptance_needs_kept_events_and_times():
    rec = Reconstruction(SCAN, (32, 32))
    rec.set_acceptance(100.0)  # nothing received yet: fine
    with pytest.raises(SettingsError, match="arrival times"):
        rec.process_events(EventChunk(np.array([0]), np.array([3], np.uint16), np.array([4], np.uint16)))
    rec.set_acceptance(None)
    rec.process_events(EventChunk(np.array([0]), np.array([3], np.uint16), np.array([4], np.uint16)))
    with pytest.raises(SettingsError, match=r"were not kept.*next scan"):
        rec.set_acceptance(100.0)
    assert rec.acceptance_ns is None
    rec = Reconstruction(SCAN, (32, 32))
    rec.keep_events(max_events=2)
    for _ in range(3):
        rec.process_events(EventChunk(np.array([0]), np.array([3], np.uint16), np.array([4], np.uint16),
                                      t_ns=np.array([5.0], np.float32)))
    with pytest.raises(SettingsError, match="more than the 2 kept"):
        rec.set_acceptance(100.0)
    with pytest.raises(SettingsError, match="positive"):
        rec.set_acceptance(-1)


def test_live_stream_acceptance_changed_while_streaming(demo):
    """Over loopback: the engine keeps the events of the stream; a new acceptance time set
    from another thread while the scan arrives gives the file run with that time."""
    ref = _file(demo, A_NS)
    seen = threading.Event()
    with RawSimulator(demo, rate=2e5) as sim:  # about 0.1 s: the change lands mid-scan
        conn = Tpx3Connection("127.0.0.1", sim.port)
        src = Tpx3StreamSource(conn.next_socket(), SCAN, sync="line", where=conn.where, connection=conn,
                               keep_times=True, order_window_ns=20000.0)

        def attach(rec, _src):
            rec.keep_events()
            original = rec.process_events

            def process(chunk):
                original(chunk)
                seen.set()
            rec.process_events = process

        changed = []

        def change_live(rec_box):
            seen.wait(10)
            rec_box[0].set_acceptance(A_NS)
            changed.append(rec_box[0].moments.counters.n_patterns)

        box = []
        t = threading.Thread(target=change_live, args=(box,))

        def before(rec, s):
            box.append(rec)
            attach(rec, s)
            t.start()
        try:
            res, _, _ = reconstruct_run(src, before_run=before, settings=ref.settings)  # the file's calibration
        finally:
            t.join(10)
            conn.close()
    assert res.error is None and changed
    assert changed[0] < SCAN[0] * SCAN[1]  # the change came while the scan was arriving
    _same(ref, res.snapshot)
