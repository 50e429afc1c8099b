"""The riCOM update's deferred rows and cost model against the slow reference."""
from __future__ import annotations

import numpy as np
import pytest

import reference as ref
from ricom import DetectorGeometry, KernelSettings, Reconstruction, Settings
from ricom.engine.pipeline import run
from ricom.engine.ricom_update import BlockScatter
from ricom.sources.arrays import ArraySource


@pytest.fixture
def tall_data():
    """A 20×13 scan of 8×8 patterns: kernels of 9–11 rows see whole and partial rows."""
    rng = np.random.default_rng(7)
    base = rng.random((8, 8)) + 1
    return rng.poisson(base * rng.uniform(5, 20, (20, 13, 1, 1))).astype(np.uint16)


def _make(data, kernel):
    s = Settings(kernel=KernelSettings(kernel), geometry=DetectorGeometry(center_yx=(3.5, 3.5)))
    return Reconstruction(data.shape[:2], data.shape[2:], s)


def _reference_image(data, n_seen, kernel):
    seen = data.astype(np.float64)
    seen.reshape(-1, *data.shape[2:])[n_seen:] = 0
    cx, cy = ref.com_maps(seen, (3.5, 3.5))
    return ref.ricom(cx, cy, kernel)


@pytest.mark.parametrize("cost", [None, 0.0, np.inf])  # measured model, always the FFT, never the FFT
@pytest.mark.parametrize("chunk", [5, 13, 30])  # partial rows, whole rows, several rows
def test_deferred_rows_are_in_every_snapshot(tall_data, monkeypatch, cost, chunk):
    """Raster chunks wait for more rows, yet every snapshot equals the correlation of what was seen."""
    if cost is not None:
        monkeypatch.setattr(BlockScatter, "FFT_COST", cost)
    frames = tall_data.reshape(-1, 8, 8)
    rec = _make(tall_data, 11)
    waited = 0
    for a in range(0, len(frames), chunk):
        rec.process_frames(frames[a:a + chunk], start=a)
        waited = max(waited, rec.image.n_pending)
        np.testing.assert_allclose(rec.snapshot().ricom, _reference_image(tall_data, a + chunk, 11),
                                   rtol=1e-10, atol=1e-12)
        assert rec.image.n_pending == 0
    assert waited > 0  # the deferral was taken


def test_rows_wait_until_they_span_the_kernel(tall_data):
    """Dense rows are scattered once they are as many as the kernel is wide, not before."""
    frames = tall_data.reshape(-1, 8, 8)
    rec = _make(tall_data, 9)
    rec.process_frames(frames[:13 * 8], start=0)  # 8 rows: fewer than 9
    assert rec.image.n_pending == 13 * 8
    rec.process_frames(frames[13 * 8:13 * 9], start=13 * 8)  # the 9th row
    assert rec.image.n_pending == 0


def test_scattered_positions_are_not_deferred(tall_data):
    """Positions in random order do not fill rows: they are scattered at once."""
    frames = tall_data.reshape(-1, 8, 8)
    order = np.random.default_rng(1).permutation(len(frames))
    rec = _make(tall_data, 11)
    for a in range(0, len(frames), 40):
        rec.process_frames(frames[order[a:a + 40]], positions=order[a:a + 40])
        assert rec.image.n_pending == 0
    np.testing.assert_allclose(rec.snapshot().ricom, _reference_image(tall_data, len(frames), 11),
                               rtol=1e-10, atol=1e-12)


def test_flush_counts_as_processing_and_settings_changes_keep_the_image(tall_data):
    frames = tall_data.reshape(-1, 8, 8)
    rec = _make(tall_data, 11)
    rec.process_frames(frames[:26], start=0)
    assert rec.image.n_pending == 26
    before = rec.seconds_processing
    rec.flush()
    assert rec.image.n_pending == 0 and rec.seconds_processing >= before
    rec.process_frames(frames[26:52], start=26)
    rec.update_settings(rec.settings.with_(kernel=KernelSettings(9)))  # pending rows go in with the old kernel
    np.testing.assert_allclose(rec.snapshot().ricom, _reference_image(tall_data, 52, 9), rtol=1e-10, atol=1e-12)


def test_a_run_ends_with_nothing_pending(tall_data):
    rec = _make(tall_data, 11)
    res = run(ArraySource(tall_data), rec, chunk_size=7)
    assert rec.image.n_pending == 0
    np.testing.assert_allclose(res.snapshot.ricom, _reference_image(tall_data, tall_data.shape[0] * 13, 11),
                               rtol=1e-10, atol=1e-12)


def test_cost_model_prefers_the_fft_for_whole_rows_and_direct_for_a_few_positions():
    k = np.ones((61, 61))
    block = BlockScatter(k, k)
    assert block.pays(4 * 128, (4, 128))  # a 512-pattern chunk of a 128-wide scan
    assert not block.pays(8, (1, 8))
    assert not BlockScatter(np.ones((3, 3)), np.ones((3, 3))).pays(512, (4, 128))
