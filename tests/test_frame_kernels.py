"""The 8/16-bit moments kernels: 16-bit column sums over row blocks, their exactness check
and the masked ring sums, against plain NumPy sums; the counter-depth hint of Merlin files."""
import numpy as np
import pytest

from ricom.core.chunks import PackedFrames
from ricom.engine.detector import block_rows, frame_moments, ring_masks, ring_runs
from ricom.engine.lookups import DetectorLookups
from ricom.sources.merlin.encode import encode_frames
from ricom.sources.merlin.file import MerlinSource


def _lookups(shape, bounds, centre):
    """Rings of radius ``bounds`` around ``centre`` (pixels outside all rings: −1)."""
    yy, xx = np.indices(shape)
    r = np.hypot(yy - centre[0], xx - centre[1])
    ring = np.searchsorted(np.asarray(bounds, float), r, side="right") - 1
    ring[(ring < 0) | (ring >= len(bounds) - 1)] = -1
    ring = ring.astype(np.int32)
    bounds = np.asarray(bounds, float)
    return DetectorLookups(ring_of_pixel=ring, ring_runs=ring_runs(ring), ring_bounds_px=bounds), ring


def _reference(frames, ring, n_rings):
    """Total, Σ I·x, Σ I·y and ring sums in exact integers."""
    f = frames.astype(np.int64)
    ny, nx = f.shape[1:]
    rows = [f.sum(axis=(1, 2)), (f.sum(axis=1) * np.arange(nx)).sum(axis=1),
            (f.sum(axis=2) * np.arange(ny)).sum(axis=1)]
    rows += [(f * (ring == j)).sum(axis=(1, 2)) for j in range(n_rings)]
    return np.array(rows, np.float64)


def _frames(rng, k, shape, top, spikes=0):
    f = rng.integers(0, top + 1, (k, *shape)).astype(np.uint16 if top > 255 else np.uint8)
    if spikes:  # values far above the depth the kernel assumes: 16-bit column sums wrap
        f[:, ::3, ::2] = spikes
    return f


@pytest.mark.parametrize("shape", [(64, 96), (37, 53), (256, 256)])
@pytest.mark.parametrize("top,spikes", [(4095, 0), (4095, 65535), (255, 0), (63, 0), (65535, 0)])
@pytest.mark.parametrize("bounds", [None, (0.0, 5.0, 9.0, np.inf), (3.0, 7.5), (0.0, 2.0, 4.0, 8.0, 12.0),
                                    (0.0, np.inf)])  # the last: one ring holds every pixel, no mask at all
def test_plain_arrays_match_exact_sums(shape, top, spikes, bounds):
    rng = np.random.default_rng(hash((shape, top, spikes)) % 2**32)
    frames = _frames(rng, 5, shape, top, spikes)
    centre = (shape[0] / 2 - 0.3, shape[1] / 2 + 0.2)
    if bounds is None:
        lookups, ring, n_rings = DetectorLookups(), None, 0
    else:
        lookups, ring = _lookups(shape, bounds, centre)
        n_rings = lookups.n_rings
    out = np.zeros((3 + n_rings, 5))
    frame_moments(frames, lookups, out)
    np.testing.assert_array_equal(out, _reference(frames, ring, n_rings))
    big = frames.astype(frames.dtype.newbyteorder(">"))  # big-endian: byte-swapped in place
    out[:] = 0
    frame_moments(big, lookups, out)
    np.testing.assert_array_equal(out, _reference(frames, ring, n_rings))


@pytest.mark.parametrize("max_value", [0, 63, 4095, 65535])
def test_packed_frames_with_a_wrong_depth_hint_stay_exact(max_value):
    """A hint below the real values costs a second pass over a block, never a wrong sum."""
    rng = np.random.default_rng(max_value)
    frames = _frames(rng, 6, (32, 64), 4095, spikes=60000)
    header = 7
    rows = np.zeros((6, header + 32 * 64), np.uint16)
    rows[:, header:] = frames.reshape(6, -1).byteswap()
    packed = PackedFrames(rows, header, (32, 64), big_endian=True, max_value=max_value)
    lookups, ring = _lookups((32, 64), (0.0, 6.0, 11.0, np.inf), (15.5, 31.5))
    out = np.zeros((3 + lookups.n_rings, 6))
    frame_moments(packed, lookups, out)
    np.testing.assert_array_equal(out, _reference(frames, ring, lookups.n_rings))


def test_block_rows_follow_the_depth():
    assert block_rows(np.uint16, 4095) == 16  # 16 rows of 12-bit values: < 2¹⁶
    assert 16 * 4095 < 2**16 <= 17 * 4095
    assert block_rows(np.uint8) == 257 and block_rows(np.uint16, 1) == 65535
    assert block_rows(np.uint16, 65535) < 2  # no 16-bit blocks: 32-bit sums


def test_ring_masks_leave_the_largest_ring_to_subtraction():
    lookups, ring = _lookups((40, 40), (0.0, 4.0, 8.0, np.inf), (19.5, 19.5))
    masks, mask_ring, bands, derived = ring_masks(lookups.ring_runs, 3, (40, 40), np.uint16)
    assert derived == 2 and sorted(mask_ring.tolist()) == [0, 1]
    for m, j in zip(masks, mask_ring, strict=True):
        np.testing.assert_array_equal(m == 0xFFFF, ring == j)
    rows = np.flatnonzero((ring < 2).any(axis=1))
    assert bands.tolist() == [[rows[0], rows[-1] + 1]]


def test_ring_masks_are_paired_by_the_rows_they_span_and_an_odd_one_is_alone():
    """Tallest masks first, two per band, the shortest alone: each pass covers rows of
    similar extent (the default vbf/vadf rings give three masks, no padding pass)."""
    lookups, _ring = _lookups((60, 50), (0.0, 3.0, 9.0, 14.0, np.inf), (29.5, 24.5))
    masks, mask_ring, bands, derived = ring_masks(lookups.ring_runs, 4, (60, 50), np.uint16)
    assert derived == 3 and len(masks) == 3 and sorted(mask_ring.tolist()) == [0, 1, 2]
    spans = [np.ptp(np.flatnonzero(m.any(axis=1))) + 1 for m in masks]
    assert spans == sorted(spans, reverse=True) and spans[-1] < spans[0]
    assert mask_ring[-1] == 0  # the disc spans the fewest rows
    for j, (y0, y1) in enumerate(bands.tolist()):
        rows = np.flatnonzero(masks[2 * j:2 * j + 2].any(axis=(0, 2)))
        assert (y0, y1) == (rows[0], rows[-1] + 1)
    assert bands.shape == (2, 2)


@pytest.mark.parametrize("depth,top", [(12, 4095), (6, 63)])
def test_merlin_frames_carry_the_counter_depth(tmp_path, depth, top):
    rng = np.random.default_rng(depth)
    frames = rng.integers(0, top + 1, (8, 32, 64)).astype(np.uint16)
    path = tmp_path / "a.mib"
    path.write_bytes(encode_frames(frames, depth, raw=False))
    src = MerlinSource(str(path), scan_shape=(2, 4))
    chunk = next(iter(src.chunks(8)))
    assert chunk.packed.max_value == top
    out = np.zeros((3, 8))
    frame_moments(chunk.packed, DetectorLookups(), out)
    np.testing.assert_array_equal(out, _reference(frames, None, 0))
    src.close()


def test_mean_pattern_is_computed_once_per_chunk_and_never_stale():
    from ricom.engine.detector import mean_pattern

    frames = np.arange(4 * 3 * 5, dtype=np.uint16).reshape(4, 3, 5)
    first = mean_pattern(frames)
    np.testing.assert_array_equal(first, frames.mean(axis=0))
    assert mean_pattern(frames) is first  # the second estimate from the same chunk reuses it
    frames[:] = 7  # the same array with new contents: computed again
    np.testing.assert_array_equal(mean_pattern(frames), np.full((3, 5), 7.0))


def test_file_sources_sample_their_first_frames_as_chunks_hold_them(tmp_path):
    """The pipeline warms the engine up with these before its clock starts."""
    from ricom.sources.arrays import open_npy

    rng = np.random.default_rng(3)
    frames = rng.integers(0, 4096, (8, 32, 64)).astype(np.uint16)
    (tmp_path / "a.mib").write_bytes(encode_frames(frames, 12, raw=False))
    src = MerlinSource(str(tmp_path / "a.mib"), scan_shape=(2, 4))
    sample = src.sample_frames()
    assert isinstance(sample, PackedFrames) and sample.max_value == 4095
    np.testing.assert_array_equal(sample[:], frames[:2])
    src.close()
    np.save(tmp_path / "a.npy", frames.reshape(2, 4, 32, 64))
    npy = open_npy(str(tmp_path / "a.npy"))
    sample, chunk = npy.sample_frames(), next(iter(npy.chunks(8))).frames
    np.testing.assert_array_equal(sample, frames[:2])
    assert sample.flags.writeable == chunk.flags.writeable  # the kernels the chunks will use


@pytest.mark.parametrize("chunked", [False, True])
def test_contiguous_hdf5_is_read_in_place(tmp_path, chunked):
    import h5py

    from ricom.sources.hdf5 import open as open_hdf5

    rng = np.random.default_rng(5)
    data = rng.integers(0, 4096, (3, 4, 16, 24)).astype(">u2")  # big-endian on disk
    with h5py.File(tmp_path / "a.h5", "w") as f:
        f.create_dataset("d", data=data, chunks=(1, 4, 16, 24) if chunked else None)
    src = open_hdf5(str(tmp_path / "a.h5") + ":/d")
    assert (src.mapped is not None) == (not chunked)
    got = np.concatenate([c.frames for c in src.chunks(5)])
    np.testing.assert_array_equal(got, data.reshape(12, 16, 24))
    assert got.dtype.isnative
    src.close()


@pytest.mark.parametrize("kind", ["packed", "native", "big-endian", "uint8", "strided", "float"])
def test_mean_pattern_read_in_place_equals_numpy(kind):
    """Packed file frames and contiguous 8/16-bit arrays are summed where they lie (compiled);
    the mean is NumPy's of the same sampled patterns, bit for bit."""
    from ricom.engine.detector import _mean_pattern

    rng = np.random.default_rng(11)
    frames = rng.integers(0, 65536, (150, 12, 20)).astype(np.uint16)
    picks = np.unique(np.linspace(0, 149, 64).astype(np.int64))
    expected = frames[picks].mean(axis=0, dtype=np.float64)
    if kind == "packed":
        rows = np.zeros((150, 5 + 12 * 20), np.uint16)
        rows[:, 5:] = frames.reshape(150, -1).byteswap()
        data = PackedFrames(rows, 5, (12, 20), big_endian=True, max_value=65535)
    elif kind == "native":
        data = frames
    elif kind == "big-endian":
        data = frames.astype(">u2")
    elif kind == "uint8":
        data = (frames >> 8).astype(np.uint8)
        expected = data[picks].mean(axis=0, dtype=np.float64)
    elif kind == "strided":
        data = np.repeat(frames, 2, axis=2)[:, :, ::2]  # not contiguous: the NumPy path
    else:
        data = frames.astype(np.float32)
    got = _mean_pattern(data, 64)
    assert got.dtype == np.float64 and got.shape == (12, 20)
    np.testing.assert_array_equal(got, expected)


def test_ring_sums_of_a_large_detector_stay_exact_beyond_32_bits():
    """The disc holds ~125 000 pixels of 16-bit values (a sum far above 2³²): the ring pass
    sums it in pieces that each fit 32 bits."""
    rng = np.random.default_rng(7)
    shape = (512, 512)
    frames = (65535 - rng.integers(0, 3, (2, *shape))).astype(np.uint16)
    lookups, ring = _lookups(shape, (0.0, 200.0, 300.0, np.inf), (255.5, 255.5))
    assert (frames[0].astype(np.int64) * (ring == 0)).sum() > 2**32
    out = np.zeros((3 + lookups.n_rings, 2))
    frame_moments(frames, lookups, out)
    np.testing.assert_array_equal(out, _reference(frames, ring, lookups.n_rings))
    out[:] = 0
    frame_moments(frames.astype(">u2"), lookups, out)
    np.testing.assert_array_equal(out, _reference(frames, ring, lookups.n_rings))
