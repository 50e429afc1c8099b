"""Merlin .mib files: real samples, the writer, the reader's bad-input handling, scan layouts."""
from __future__ import annotations

import glob
import os
import warnings
import zipfile

import numpy as np
import pytest

import ricom
from ricom.core.errors import InputError, SettingsError
from ricom.sources import open_source
from ricom.sources.merlin.encode import encode_frames
from ricom.sources.merlin.file import MerlinSource
from ricom.sources.merlin.hdr import acquisition_scan_shape, make_acquisition_header, parse_acquisition_header
from ricom.sources.merlin.mib import decode_frames, parse_frame_header

REAL = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "merlin_real"))


@pytest.fixture(scope="module")
def real(tmp_path_factory):
    """The real Merlin samples, unzipped for this test run (name → path)."""
    zips = sorted(glob.glob(os.path.join(REAL, "*.zip")))
    if not zips:
        pytest.skip("../shared/data/merlin_real is not present")
    root = tmp_path_factory.mktemp("merlin_real")
    for z in zips:
        with zipfile.ZipFile(z) as zf:
            zf.extractall(root)
    return {os.path.basename(p): p for p in glob.glob(str(root / "**" / "*.*"), recursive=True)}


def load(path, **options) -> np.ndarray:
    with MerlinSource(path, **options) as src:
        return np.concatenate([c.frames for c in src.chunks(4)])


def write(path, frames, depth=12, raw=False, quad=False, start_seq=1, hdr=None, **fields):
    with open(path, "wb") as fh:
        fh.write(encode_frames(frames, depth, raw, quad, start_seq, **fields))
    if hdr is not None:
        with open(os.path.splitext(path)[0] + ".hdr", "w", newline="") as fh:
            fh.write(hdr)
    return str(path)


def numbered(n, shape=(8, 64)):
    """Frames whose pixel (0, 0) holds the frame index (to follow frames through layouts)."""
    frames = np.zeros((n, *shape), np.uint16)
    frames[:, 0, 0] = np.arange(n)
    return frames


def test_every_real_sample_decodes(real):
    mibs = sorted(k for k in real if k.endswith(".mib"))
    assert len(mibs) == 24
    for name in mibs:
        header = parse_frame_header(open(real[name], "rb").read(4096))
        frames = load(real[name])
        n_expected = os.path.getsize(real[name]) // header.frame_bytes
        assert frames.shape == (n_expected, *header.detector_shape), name
        assert frames.dtype == header.out_dtype and frames.max() < 2 ** header.counter_depth, name
        assert frames.sum() > 0, name
        quad = name.startswith("Quad")
        assert header.detector_shape[1] == (512 if quad else 256), name
        assert header.header_bytes == (768 if quad else 384), name
        assert header.raw == name.endswith("RAW.mib"), name
        depth = int(name.split("CounterDepth_")[1].split("_")[0]) if "CounterDepth" in name else None
        assert depth in (None, header.counter_depth), name


@pytest.mark.parametrize("geometry", ["Quad_1", "Quad_9", "Single_1", "Single_9"])
def test_raw_and_processed_samples_agree(real, geometry):
    raw = load(real[f"{geometry}_Frame_CounterDepth_1_Rows_256RAW.mib"])
    processed = load(real[f"{geometry}_Frame_CounterDepth_1_Rows_256.mib"])
    assert raw.shape == processed.shape
    # separate exposures: pixels agree to 99.93 % (quad, FORMATS.md), far above chance (~96 %)
    assert (raw == processed).mean() > 0.999
    assert (raw[:, ::-1] == processed).mean() < 0.99
    if raw.shape[1] == 512:  # each chip lands where the processed data has it, the right way round
        quads = [np.s_[:, :256, :256], np.s_[:, :256, 256:], np.s_[:, 256:, :256], np.s_[:, 256:, 256:]]
        flips = [np.s_[:, :, :], np.s_[:, ::-1, :], np.s_[:, :, ::-1], np.s_[:, ::-1, ::-1]]
        for i, qp in enumerate(quads):
            scores = {(j, k): (raw[qr][f] == processed[qp]).mean() for j, qr in enumerate(quads)
                      for k, f in enumerate(flips)}
            best = scores.pop((i, 0))
            assert best > 0.995 and best > max(scores.values()) + 0.03


@pytest.mark.parametrize("name,shape", [("002_merlin_test_roi_sig256x128_nav4x2_hot_pixel_52x_39y.mib", (128, 256)),
                                        ("003_merlin_test_roi_sig256x64_nav4x2_hot_pixel_52x_39y.mib", (64, 256))])
def test_orientation_hot_pixel_at_row_39_col_52(real, name, shape):
    with MerlinSource(real[name]) as src:
        assert src.detector_shape == shape
        assert src.scan_shape == (2, 4) and src.describe()["scan_shape_from"] == ".hdr ScanX/ScanY"
        total = sum(c.frames.sum(axis=0, dtype=np.int64) for c in src.chunks(3))
    assert np.unravel_index(np.argmax(total), total.shape) == (39, 52)


def test_scan_shape_from_frames_per_trigger_and_given(real):
    with MerlinSource(real["Single_9_Frame_CounterDepth_12_Rows_256.mib"]) as src:
        assert src.scan_shape == (1, 9) and src.describe()["scan_shape_from"] == ".hdr frames per trigger"
    with MerlinSource(real["Single_9_Frame_CounterDepth_12_Rows_256.mib"], scan_shape=(3, 3)) as src:
        assert src.scan_shape == (3, 3) and src.describe()["scan_shape_from"] == "given"
    text = open(real["001_4x2_6bit.hdr"], "rb").read()
    hdr = parse_acquisition_header(text)
    assert hdr["Counter Depth (number)"] == "6" and hdr["Frames in Acquisition (Number)"] == "8"
    assert acquisition_scan_shape({"Frames in Acquisition (Number)": "580", "Frames per Trigger (Number)": "29"},
                                  flyback_frames=1) == ((20, 28), ".hdr frames per trigger")


def test_encoded_headers_match_real_ones(real):
    for name, depth, raw, quad in [("Single_1_Frame_CounterDepth_12_Rows_256.mib", 12, False, False),
                                   ("Quad_1_Frame_CounterDepth_24_Rows_256.mib", 24, False, True),
                                   ("Quad_1_Frame_CounterDepth_1_Rows_256RAW.mib", 1, True, True),
                                   ("Single_1_Frame_CounterDepth_1_Rows_256RAW.mib", 1, True, False)]:
        real_h = parse_frame_header(open(real[name], "rb").read(4096))
        shape = real_h.detector_shape
        ours = parse_frame_header(encode_frames(np.zeros((1, *shape), np.uint8), depth, raw, quad))
        for field in ("header_bytes", "n_chips", "width", "height", "dtype", "layout", "counter_depth", "raw",
                      "pixel_bytes", "frame_bytes", "detector_shape"):
            assert getattr(ours, field) == getattr(real_h, field), (name, field)


@pytest.mark.parametrize("quad", [False, True])
@pytest.mark.parametrize("raw", [False, True])
@pytest.mark.parametrize("depth", [1, 6, 12, 24])
def test_encode_decode_round_trip(depth, raw, quad):
    rng = np.random.default_rng(depth)
    shape = (512, 512) if quad else (64, 256)
    frames = rng.integers(0, 2 ** depth, (3, *shape), dtype=np.uint32)
    data = encode_frames(frames, depth, raw, quad, start_seq=5)
    header = parse_frame_header(data)
    assert header.sequence_number == 5 and header.raw == raw and header.counter_depth == depth
    assert len(data) == 3 * header.frame_bytes
    decoded = decode_frames(np.frombuffer(data, np.uint8), header, 3)
    assert decoded.shape == frames.shape and np.array_equal(decoded, frames)
    assert decoded.dtype == {1: np.uint8, 6: np.uint8, 12: np.uint16, 24: np.uint32}[depth]
    into = decode_frames(data, header, 3, out=np.zeros((4, *shape), np.float64))  # any dtype, larger out
    assert into.shape == frames.shape and np.array_equal(into, frames)


@pytest.mark.parametrize("raw", [False, True])
def test_quad_with_gaps_round_trip(raw):
    frames = np.random.default_rng(1).integers(0, 64, (2, 514, 514), dtype=np.uint8)
    frames[:, 256:258, :] = 0
    frames[:, :, 256:258] = 0
    data = encode_frames(frames, 6, raw, quad=True, gap=True)
    header = parse_frame_header(data)
    assert header.layout == "2x2G" and header.detector_shape == (514, 514)
    assert np.array_equal(decode_frames(data, header, 2), frames)


def test_reconstruction_of_mib_equals_npy(tmp_path):
    from ricom.simulators.specimen import SimulationParams, simulate
    sim = simulate(SimulationParams(scan_shape=(16, 16), detector_shape=(32, 32), dose_e_per_probe=500))
    data = sim.data
    assert data.max() < 4096
    np.save(tmp_path / "sim.npy", data)
    settings = {"kernel_size": 7, "center_yx": (15.5, 15.5)}
    expected = ricom.reconstruct(str(tmp_path / "sim.npy"), **settings)
    for depth, raw in [(12, False), (12, True), (24, False)]:
        path = write(tmp_path / f"sim_{depth}_{raw}.mib", data.reshape(-1, 32, 32), depth, raw,
                     hdr=make_acquisition_header(256, (16, 16), depth))
        snap = ricom.reconstruct(path, **settings)
        assert snap.n_patterns == 256
        for name in ("ricom", "com_x", "com_y"):
            np.testing.assert_array_equal(getattr(snap, name), getattr(expected, name))


def test_truncated_file_keeps_complete_frames_and_warns(tmp_path):
    path = write(tmp_path / "cut.mib", numbered(10), hdr=make_acquisition_header(10, (2, 5), 12))
    size = os.path.getsize(path)
    frame = size // 10
    with open(path, "r+b") as fh:
        fh.truncate(size - frame // 2)
    with pytest.warns(UserWarning, match=r"incomplete .*\(\d+ of \d+ bytes\).*1 of the 10 frames.*missing"):
        src = open_source(path)
    assert src.n_frames == 9 and src.scan_shape == (2, 5)
    frames = np.concatenate([c.frames for c in src.chunks(4)])
    assert frames[:, 0, 0].tolist() == list(range(9))
    with pytest.warns(UserWarning, match="incomplete"):
        snap = ricom.reconstruct(path, kernel_size=3, center_yx=(3.5, 31.5), strict=False)
    assert snap.n_patterns == 9 and not snap.complete and "1 of 10 scan positions" in snap.reason


@pytest.mark.parametrize("prefetch", [False, True])
def test_header_change_mid_file_keeps_what_came_before(tmp_path, prefetch):
    path = tmp_path / "change.mib"
    with open(path, "wb") as fh:
        fh.write(encode_frames(numbered(5), 12, False))
        fh.write(encode_frames(numbered(3).astype(np.uint8), 6, False, start_seq=6))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        src = MerlinSource(path, scan_shape=(2, 4), pad=True, prefetch=prefetch)
    seen = []
    with pytest.raises(InputError, match=r"frame 6: its header changes from U16 .* to U08 .*5 frames before"):
        for chunk in src.chunks(4):
            seen.extend(chunk.frames[:, 0, 0].tolist())
    assert seen == [0, 1, 2, 3, 4]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result, _, _ = ricom.api.reconstruct_run(str(path), source_options={"scan_shape": (2, 4), "pad": True},
                                                 kernel_size=3, center_yx=(3.5, 31.5))
    assert result.snapshot.n_patterns == 5 and "header changes" in result.error


def test_non_mib_bytes_give_one_line_errors(tmp_path):
    bad = tmp_path / "bad.mib"
    bad.write_bytes(b"\x89PNG\r\n" + bytes(1000))
    for call in (lambda: open_source(str(bad)), lambda: parse_frame_header(b"hello, world")):
        with pytest.raises(InputError, match="not Merlin MIB data") as exc:
            call()
        assert "\n" not in str(exc.value)
    empty = tmp_path / "empty.mib"
    empty.write_bytes(b"")
    with pytest.raises(InputError, match="empty"):
        open_source(str(empty))
    good = encode_frames(numbered(3), 12, False)
    corrupt = bytearray(good)
    frame = len(good) // 3
    corrupt[2 * frame:2 * frame + 4] = b"XXXX"
    with pytest.raises(InputError, match="frame 3 of 3"):
        decode_frames(bytes(corrupt), parse_frame_header(good), 3)
    other = encode_frames(np.zeros((2, 16, 64), np.uint8), 6, False)  # same frame size, other geometry
    with pytest.raises(InputError, match="frame 1 of 2"):
        decode_frames(other, parse_frame_header(encode_frames(np.zeros((1, 8, 64), np.uint16), 12, False)), 2)
    (tmp_path / "c.mib").write_bytes(bytes(corrupt))
    with pytest.raises(InputError, match=r"frame 3: no MIB header where one should be"):
        list(MerlinSource(tmp_path / "c.mib").chunks(8))


def test_split_files_join_in_sequence_order(tmp_path):
    frames = numbered(12)
    write(tmp_path / "scan2.mib", frames[6:], start_seq=7)
    write(tmp_path / "scan1.mib", frames[:6], start_seq=1)
    write(tmp_path / "scan3.mib", numbered(4), start_seq=1)  # another acquisition: not joined
    (tmp_path / "scan.hdr").write_text(make_acquisition_header(12, (3, 4), 12), newline="")
    for name in ("scan1.mib", "scan2.mib", "scan.hdr"):
        src = open_source(str(tmp_path / name))
        assert [os.path.basename(f.path) for f in src.files] == ["scan1.mib", "scan2.mib"]
        assert src.scan_shape == (3, 4) and src.n_frames == 12
        got = np.concatenate([c.frames[:, 0, 0] for c in src.chunks(5)])
        assert got.tolist() == list(range(12))
        src.close()
    with pytest.warns(UserWarning, match="6 of the 12 frames of the acquisition are missing"):
        src = MerlinSource(tmp_path / "scan1.mib", split_files=False, scan_shape=(2, 3))
    assert src.n_frames == 6


def test_skip_and_flyback_frames_map_to_positions(tmp_path):
    path = write(tmp_path / "fly.mib", numbered(10))
    src = MerlinSource(path, scan_shape=(2, 3), skip_frames=2, flyback_frames=1)
    chunks = list(src.chunks(3))
    positions = np.concatenate([c.positions for c in chunks]).tolist()
    assert positions == [-1, -1, 0, 1, 2, -1, 3, 4, 5, -1]
    index = np.concatenate([c.frames[:, 0, 0] for c in chunks])
    assert index[np.array(positions) == 4].tolist() == [7]
    src = MerlinSource(path, scan_shape=(2, 2), frames_per_position=2, skip_frames=2)
    assert np.concatenate([c.positions for c in src.chunks(4)]).tolist() == [-1, -1, 0, 0, 1, 1, 2, 2, 3, 3]


def test_scan_shape_that_does_not_fit_needs_pad_or_crop(tmp_path):
    path = write(tmp_path / "ten.mib", numbered(10))
    with pytest.raises(SettingsError, match=r"10 frames are not a whole number of 3×3 scans.*crop=True"):
        MerlinSource(path, scan_shape=(3, 3))
    assert MerlinSource(path, scan_shape=(3, 3), crop=True).n_frames == 9
    assert MerlinSource(path, scan_shape=(3, 3), pad=True).n_frames == 10
    with pytest.raises(SettingsError, match=r"too few for the 4×4 scan.*pad=True"):
        MerlinSource(path, scan_shape=(4, 4))
    cropped = MerlinSource(path, scan_shape=(4, 4), crop=True)
    assert cropped.scan_shape == (2, 4) and cropped.n_frames == 8
    assert MerlinSource(path, scan_shape=(4, 4), pad=True).n_frames == 10
    assert MerlinSource(path, scan_shape=(5, 2)).n_frames == 10
    assert MerlinSource(path, scan_shape=(1, 5)).n_frames == 10  # two whole passes


def test_sequence_gap_warns(tmp_path):
    path = tmp_path / "gap.mib"
    path.write_bytes(encode_frames(numbered(3), 12, False) + encode_frames(numbered(2), 12, False, start_seq=9))
    for chunk_size in (8, 3):  # the jump inside a chunk, and between two chunks
        src = MerlinSource(path, scan_shape=(1, 5))
        with pytest.warns(UserWarning, match="sequence number jumps from 3 to 9 at frame 4"):
            assert sum(len(c.frames) for c in src.chunks(chunk_size)) == 5


def test_acquisition_header_round_trip_and_describe(tmp_path):
    text = make_acquisition_header(24, (4, 5), 6, flyback_frames=1)
    assert text.startswith("HDR,") and len(text) == 2048 and "\r\n" in text
    hdr = parse_acquisition_header(text.encode("latin-1"))
    assert hdr["ScanX"] == "5" and hdr["Frames per Trigger (Number)"] == "6"
    assert acquisition_scan_shape(hdr) == ((4, 5), ".hdr ScanX/ScanY")
    with pytest.raises(InputError, match="not a Merlin acquisition header"):
        parse_acquisition_header("MQ1,000001")
    path = write(tmp_path / "d.mib", numbered(24).astype(np.uint8), depth=6, hdr=text)
    d = MerlinSource(path, flyback_frames=1).describe()
    assert d["counter_depth"] == 6 and d["scan_shape"] == (4, 5) and d["flyback_frames"] == 1
    assert d["frames_in_acquisition"] == 24 and d["layout"] == "1x1" and d["mib_dtype"] == "U08"


@pytest.mark.parametrize("vd", [False, True])
def test_raw_1bit_read_in_place_equals_decoded(tmp_path, vd):
    """Raw 1-bit frames are reduced from their packed words; same images as decoded frames."""
    rng = np.random.default_rng(5)
    frames = (rng.random((48, 256, 256)) < 0.05).astype(np.uint8)
    path = tmp_path / "r1.mib"
    write(path, frames, depth=1, raw=True)
    opts = dict(virtual_detector=(20, 90)) if vd else dict(virtual_names=())
    with MerlinSource(str(path), scan_shape=(6, 8)) as src:
        chunk = next(src.chunks(64))
        assert chunk.packed is not None and chunk.packed.bits == 1
        np.testing.assert_array_equal(chunk.frames, frames)
    import ricom
    a = ricom.reconstruct(str(path), scan_shape=(6, 8), kernel_size=5, center_yx=(120.3, 131.7), threads=2,
                          chunk_size=16, **opts)
    b = ricom.reconstruct(frames, scan_shape=(6, 8), kernel_size=5, center_yx=(120.3, 131.7), **opts)
    np.testing.assert_array_equal(a.ricom, b.ricom)
    np.testing.assert_array_equal(a.counts, b.counts)
    for name in b.virtual:
        np.testing.assert_array_equal(a.virtual[name], b.virtual[name])


def test_raw_1bit_files_suggest_bigger_chunks_with_the_same_image(tmp_path):
    """Raw 1-bit frames read in place ask the pipeline for 4× the chunk; the image is the decoded frames'."""
    from ricom.engine.pipeline import chunk_frames, run
    rng = np.random.default_rng(9)
    frames = (rng.random((40, 256, 256)) < 0.05).astype(np.uint8)
    write(tmp_path / "r1.mib", frames, depth=1, raw=True)
    write(tmp_path / "p8.mib", frames, depth=6, raw=False)
    raw, processed = MerlinSource(str(tmp_path / "r1.mib"), scan_shape=(5, 8)), \
        MerlinSource(str(tmp_path / "p8.mib"), scan_shape=(5, 8))
    assert chunk_frames(raw, 3) == 12 and chunk_frames(processed, 3) == 3
    assert chunk_frames(MerlinSource(str(tmp_path / "r1.mib"), scan_shape=(5, 8), in_place=False), 3) == 3
    sizes = []
    rec = ricom.Reconstruction((5, 8), (256, 256), ricom.Settings(kernel=ricom.KernelSettings(5),
                                                                  geometry=ricom.DetectorGeometry((120.3, 131.7))))
    res = run(raw, rec, chunk_size=3, progress=sizes.append)
    assert sizes == [12, 12, 12, 4]
    want = ricom.reconstruct(frames, scan_shape=(5, 8), kernel_size=5, center_yx=(120.3, 131.7), virtual_names=())
    np.testing.assert_allclose(res.snapshot.ricom, want.ricom, rtol=1e-12, atol=1e-12 * np.abs(want.ricom).max())
    np.testing.assert_array_equal(res.snapshot.counts, want.counts)
    processed.close()
