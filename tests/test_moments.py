"""The moments reducer and the reducer contract: process, merge, get_results.

Independent computation: per-position sums written out in plain NumPy, and a single
pass over the same data; merging partial results of any split equals it exactly.
"""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import ricom
from ricom import DetectorGeometry, KernelSettings, Settings, VirtualDetector
from ricom.core.chunks import EventChunk
from ricom.engine.moments import Moments
from ricom.engine.reducer import PatternSum, ReducedChunk
from ricom.engine.reduction import ChunkReduction

SCAN, DET = (5, 6), (8, 8)
VDS = (VirtualDetector("vbf", 0, 2.5), VirtualDetector("vadf", 2.5, 6))


def _data(seed, k):
    rng = np.random.default_rng(seed)
    frames = rng.poisson(rng.uniform(1, 30, (k, 1, 1)), (k, *DET)).astype(np.uint16)
    positions = rng.integers(-1, SCAN[0] * SCAN[1], k)  # repeats and frames outside the scan
    return frames, positions


def _plain_sums(frames, positions):
    """Per-position total, Σ I·x, Σ I·y and hits, written out in NumPy."""
    n = SCAN[0] * SCAN[1]
    yy, xx = np.indices(DET)
    state, hits = np.zeros((3, n)), np.zeros(n, np.int64)
    for f, p in zip(frames.astype(np.float64), positions, strict=True):
        if p >= 0:
            state[:, p] += (f.sum(), (f * xx).sum(), (f * yy).sum())
            hits[p] += 1
    return state, hits


def test_single_pass_equals_plain_sums():
    frames, positions = _data(1, 90)
    red = ChunkReduction(SCAN, DET)
    red.process_frames(frames, positions)
    state, hits = _plain_sums(frames, positions)
    got = red.moments.get_results()
    np.testing.assert_array_equal(got["state"], state)
    np.testing.assert_array_equal(got["hits"], hits)
    assert red.n_patterns == int((positions >= 0).sum()) and red.n_outside == int((positions < 0).sum())


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), n_parts=st.integers(1, 5), vds=st.booleans())
def test_merged_shuffled_splits_equal_the_single_pass_exactly(seed, n_parts, vds):
    frames, positions = _data(seed, 120)
    s = Settings(geometry=DetectorGeometry((3.5, 3.5)), virtual_detectors=VDS if vds else ())
    single = ChunkReduction(SCAN, DET, s)
    single.process_frames(frames, positions)
    rng = np.random.default_rng(seed + 1)
    order = rng.permutation(len(frames))  # the same patterns, shuffled over the parts
    cuts = np.sort(rng.choice(np.arange(1, len(frames)), n_parts - 1, replace=False))
    parts = []
    for idx in np.split(order, cuts):
        part = ChunkReduction(SCAN, DET, s, lookups=single.lookups)
        for sub in np.array_split(idx, 3):  # several chunks per part
            part.process_frames(frames[sub], positions[sub])
        parts.append(part.moments.part())
    total = Moments(SCAN[0] * SCAN[1], single.lookups.n_rings)
    for i in rng.permutation(len(parts)):
        total.merge(parts[i])
    want, got = single.moments.get_results(), total.get_results()
    np.testing.assert_array_equal(got["state"], want["state"])
    np.testing.assert_array_equal(got["hits"], want["hits"])
    assert total.counters == single.moments.counters
    np.testing.assert_allclose(total.running_centre(), single.moments.running_centre(), rtol=1e-12)


def test_merged_events_equal_the_single_pass():
    rng = np.random.default_rng(3)
    n = 5000
    pos = np.sort(rng.integers(0, SCAN[0] * SCAN[1], n))
    x, y = rng.integers(0, DET[1], n).astype(np.uint16), rng.integers(0, DET[0], n).astype(np.uint16)
    single = ChunkReduction(SCAN, DET)
    single.process_events(EventChunk(pos, x, y))
    total = Moments(SCAN[0] * SCAN[1])
    for a, b in ((0, 1700), (1700, 4000), (4000, n)):
        part = ChunkReduction(SCAN, DET)
        part.process_events(EventChunk(pos[a:b], x[a:b], y[a:b]))
        total.merge(part.moments)
    np.testing.assert_array_equal(total.state, single.moments.state)
    assert total.counters.n_events == single.n_events == n


def test_merge_in_replace_mode_keeps_the_newest_pass():
    m = Moments(2, repeats="replace")
    old = Moments(2, repeats="replace")
    old.process(ReducedChunk(np.array([0, 1]), np.array([[1.0, 1.0], [0.0, 0.0], [0.0, 0.0]]),
                             np.array([True, True]), scan_pass=0))
    new = Moments(2, repeats="replace")
    new.process(ReducedChunk(np.array([1]), np.array([[5.0], [5.0], [0.0]]), np.array([True]), scan_pass=1))
    m.merge(new)
    m.merge(old)  # older pass of position 1 arrives later: ignored there
    np.testing.assert_array_equal(m.state[0], [1.0, 5.0])
    np.testing.assert_array_equal(m.hits, [1, 1])


def test_reconstruction_from_merged_moments_equals_the_single_pass(poisson_data):
    frames = poisson_data.reshape(-1, 16, 16)
    s = Settings(kernel=KernelSettings(7), geometry=DetectorGeometry((7.5, 7.5)))
    single = ricom.Reconstruction((8, 9), (16, 16), s)
    single.process_frames(frames, start=0)
    merged = ricom.Reconstruction((8, 9), (16, 16), s)
    for a, b in ((40, 72), (0, 40)):
        part = ChunkReduction((8, 9), (16, 16), s)
        part.process_frames(frames[a:b], positions=np.arange(a, b))
        merged.merge_moments(part.moments.part())
    np.testing.assert_allclose(merged.snapshot().ricom, single.snapshot().ricom, atol=1e-12)
    assert merged.n_patterns == single.n_patterns == 72


def test_a_further_reducer_sees_the_same_chunks_beside_ricom(poisson_data):
    frames = poisson_data.reshape(-1, 16, 16)
    s = Settings(kernel=KernelSettings(5), geometry=DetectorGeometry((7.5, 7.5)))
    plain = ricom.Reconstruction((8, 9), (16, 16), s)
    plain.process_frames(frames, start=0)
    rec = ricom.Reconstruction((8, 9), (16, 16), s)
    patterns = PatternSum((16, 16))
    rec.add_reducer(patterns)
    pos = np.arange(72)
    pos[::7] = -1  # outside the scan: not in the pattern sum
    for a in range(0, 72, 20):
        rec.process_frames(frames[a:a + 20], positions=pos[a:a + 20])
    np.testing.assert_allclose(patterns.mean(), frames[pos >= 0].mean(axis=0), rtol=1e-12)
    other = PatternSum((16, 16))
    other.merge(patterns)
    assert other.get_results()["n"] == int((pos >= 0).sum())
    plain2 = ricom.Reconstruction((8, 9), (16, 16), s)
    plain2.process_frames(frames, positions=pos)
    np.testing.assert_allclose(rec.snapshot().ricom, plain2.snapshot().ricom, atol=1e-12)


def test_merge_rejects_other_moment_rows():
    with pytest.raises(ricom.InputError, match="rows"):
        Moments(4).merge(Moments(4, n_rings=2))
