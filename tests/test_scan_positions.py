"""Scans in any order: position files, Direct Electron movies with their coordinates, EMD datacubes.

The reference is always the same patterns reconstructed as a raster: a scan whose
frames arrive in another order, placed by a position list, must give the raster's images.
"""
from __future__ import annotations

import struct

import h5py
import numpy as np
import pytest

from ricom import api
from ricom.cli.main import main
from ricom.core.chunks import ScanLayout
from ricom.core.errors import InputError, SettingsError
from ricom.core.scan_positions import ScanPositions
from ricom.live.bookkeeping import count_scan
from ricom.sources import open_input, open_source

SCAN, DET = (7, 9), (16, 16)
N = SCAN[0] * SCAN[1]
SETTINGS = api.make_settings(kernel_size=5, center_yx=(7.5, 7.5), virtual_detector=(3, 7))


def patterns(seed: int = 5) -> np.ndarray:
    """``(N, dy, dx)`` uint16: a disc whose centre moves with the position (so the COM varies)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:DET[0], :DET[1]]
    shift = rng.normal(0, 1.2, (N, 2))
    r2 = (yy - 7.5 - shift[:, :1, None]) ** 2 + (xx - 7.5 - shift[:, 1:, None]) ** 2
    return rng.poisson(np.where(r2 < 20, 30.0, 1.0)).astype(np.uint16)


def raster(frames: np.ndarray):
    return api.reconstruct(frames.reshape(*SCAN, *DET), settings=SETTINGS)


def assert_same(a, b) -> None:
    for name in ("ricom", "com_x", "com_y", "vadf", "hits"):
        x, y = np.asarray(a.signal(name), float), np.asarray(b.signal(name), float)
        np.testing.assert_allclose(x, y, rtol=1e-6, atol=1e-6 * (np.abs(y).max() + 1e-30), err_msg=name)


@pytest.fixture
def shuffled():
    """(patterns in raster order, the same in a random order, the flat position of each)."""
    frames = patterns()
    order = np.random.default_rng(11).permutation(N)
    return frames, frames[order], order


@pytest.mark.parametrize("form", ["csv_rowcol", "csv_flat", "npy_rowcol", "npy_flat", "csv_xy_header"])
def test_random_order_from_a_file_gives_the_raster_result(tmp_path, shuffled, form):
    frames, stack, order = shuffled
    rows, cols = np.divmod(order, SCAN[1])
    path = tmp_path / ("pos.npy" if form.startswith("npy") else "pos.csv")
    if form == "csv_rowcol":
        path.write_text("".join(f"{r}, {c}\n" for r, c in zip(rows, cols, strict=True)))
    elif form == "csv_flat":
        path.write_text("# flat index\n" + "\n".join(str(p) for p in order))
    elif form == "csv_xy_header":
        path.write_text("x,y\n" + "".join(f"{c},{r}\n" for r, c in zip(rows, cols, strict=True)))
    elif form == "npy_rowcol":
        np.save(path, np.stack([rows, cols], axis=1))
    else:
        np.save(path, order)
    snap = api.reconstruct(stack, scan_shape=SCAN, scan_positions=str(path), settings=SETTINGS)
    assert snap.complete and snap.n_patterns == N
    assert_same(snap, raster(frames))


def test_repeats_are_summed_and_unvisited_positions_stay_empty(shuffled):
    frames, _, _ = shuffled
    rng = np.random.default_rng(2)
    visited = np.sort(rng.choice(N, N - 10, replace=False))
    twice = visited[:6]
    order = np.concatenate([visited, twice])
    rng.shuffle(order)
    extra = patterns(seed=9)[:len(order)]  # the second visits bring other patterns
    stack = frames[order]
    first: dict = {}
    for k, p in enumerate(order.tolist()):
        if p in first:
            stack[k] = extra[k]
        first.setdefault(p, k)
    # the independent expectation: a raster whose patterns are the sums of each position's visits
    summed = np.zeros((N, *DET), np.uint32)
    np.add.at(summed, order, stack)
    snap = api.reconstruct(stack, scan_shape=SCAN, scan_positions=order, settings=SETTINGS)
    assert snap.complete, snap.reason
    expected = np.bincount(order, minlength=N).reshape(SCAN)
    np.testing.assert_array_equal(snap.hits, expected)
    assert int((snap.hits == 0).sum()) == 10
    ref = raster(summed)
    seen = expected > 0
    for name in ("com_x", "com_y", "vadf"):
        np.testing.assert_allclose(snap.signal(name)[seen], ref.signal(name)[seen], rtol=1e-6, atol=1e-9,
                                   err_msg=name)
    assert np.all(snap.signal("vadf")[~seen] == 0) and np.all(snap.com_x[~seen] == 0)


def test_cli_reports_and_saves_the_unvisited_positions(tmp_path, shuffled, capsys):
    _, stack, order = shuffled
    keep = order[:-5]  # five positions never visited
    np.save(tmp_path / "stack.npy", stack[:-5])
    (tmp_path / "pos.csv").write_text("\n".join(f"{p // SCAN[1]},{p % SCAN[1]}" for p in keep))
    out = tmp_path / "r.h5"
    code = main(["reconstruct", str(tmp_path / "stack.npy"), "--scan-shape", *map(str, SCAN), "--scan-positions",
                 str(tmp_path / "pos.csv"), "-o", str(out), "--kernel-size", "5", "--center", "7.5", "7.5",
                 "--signals", "ricom,hits", "--no-progress"])
    assert code == 0
    assert "5 of 63 scan positions received no pattern" in capsys.readouterr().err
    with h5py.File(out) as f:
        assert f.attrs["n_unvisited_positions"] == 5 and f.attrs["complete"]
        assert f.attrs["scan_positions"] == str(tmp_path / "pos.csv") and f.attrs["n_scan_points"] == N - 5
        assert int((f["hits"][()] == 0).sum()) == 5


def test_a_truncated_listed_scan_is_partial(shuffled):
    _, stack, order = shuffled
    source = open_input(stack[:40], scan_shape=SCAN, scan_positions=order, pad=True)
    result, _, _ = api.reconstruct_run(source, settings=SETTINGS, full_scan=True)
    assert not result.complete and "23 of 63 listed scan positions received no pattern" in result.reason


def test_position_outside_the_scan_is_a_one_line_error(tmp_path):
    path = tmp_path / "pos.csv"
    path.write_text("0, 0\n6, 9\n")
    with pytest.raises(SettingsError) as err:
        open_input(np.zeros((2, 4, 4), np.uint16), scan_shape=SCAN, scan_positions=str(path))
    msg = str(err.value)
    assert "scan point 1 at (row, col) (6, 9) lies outside the 7×9 scan" in msg and "\n" not in msg
    assert "scan_shape" in msg


@pytest.mark.parametrize("text,match", [("1, 2, 3\n", "one flat index or two numbers"),
                                        ("1\n2\nabc\n", "line 3 is not numbers"),
                                        ("0.5\n", "whole numbers")])
def test_malformed_position_files_are_one_line_errors(tmp_path, text, match):
    path = tmp_path / "pos.csv"
    path.write_text(text)
    with pytest.raises(InputError, match=match):
        ScanPositions.load(str(path)).flat(SCAN)


def test_frame_count_must_fit_the_list_and_flyback_is_refused():
    order = np.arange(10)
    with pytest.raises(SettingsError, match="not a whole number"):
        open_input(np.zeros((15, 4, 4), np.uint16), scan_shape=SCAN, scan_positions=order)
    two_passes = open_input(np.zeros((20, 4, 4), np.uint16), scan_shape=SCAN, scan_positions=order)
    assert two_passes.layout.frames_per_pass == 10
    with pytest.raises(SettingsError, match="flyback frames do not combine"):
        ScanLayout(SCAN, flyback_frames=1, order=ScanPositions(order))


def test_layout_with_skip_and_frames_per_position():
    layout = ScanLayout((2, 2), skip_frames=1, frames_per_position=2, order=ScanPositions(np.array([3, -1, 0])))
    assert layout.positions(0, 9).tolist() == [-1, 3, 3, -1, -1, 0, 0, 3, 3]
    assert layout.passes(0, 9).tolist() == [0, 0, 0, 0, 0, 0, 0, 1, 1]
    assert layout.visited().tolist() == [True, False, False, True]


def test_an_input_that_cannot_take_an_order_says_so():
    with pytest.raises(SettingsError, match="cannot take a scan order"):
        open_input("demo", scan_positions=np.arange(4))


def test_live_bookkeeping_counts_unvisited_positions_apart(shuffled):
    _, stack, order = shuffled
    keep = order[:50]

    class Source:  # what count_scan reads of a live source
        scan_shape, n_frames, frames_received = SCAN, 50, 50
        layout = ScanLayout(SCAN, order=ScanPositions(keep))

    rec = api.Reconstruction(SCAN, DET, SETTINGS)
    rec.process_frames(stack[:50], positions=keep)
    count = count_scan(rec, Source())
    assert count.consistent and count.n_needed == 50 and count.n_unvisited == N - 50
    assert count.empty_positions.size == 0
    assert count.as_attrs()["n_unvisited_positions"] == N - 50


def test_merlin_live_stream_in_a_listed_order(tmp_path, shuffled):
    from ricom.simulators.merlin.server import MerlinServer
    from ricom.sources.merlin.live import MerlinLiveSource

    frames, stack, order = shuffled
    with MerlinServer(stack, scan_shape=SCAN, data_port=0, control_port=None, start_on="connect") as server:
        source = MerlinLiveSource("127.0.0.1", server.data_port, timeout=10, scan_positions=order)
        result, _, _ = api.reconstruct_run(source, settings=SETTINGS, chunk_size=8, full_scan=True)
    assert result.complete and server.error is None
    assert_same(result.snapshot, raster(frames))


# --------------------------------------------------------------------- Direct Electron


def write_de_movie(folder, stem: str, frames: np.ndarray, scan_shape, coords_xy=None, step_nm=None,
                   extended: int = 0) -> str:
    """A DE 4D-STEM movie as DE-Server writes it (the documented format, little endian):
    ``<stem>_movie.mrc`` (1024-byte MRC header, NEXT extended bytes, frames uint16),
    ``<stem>_info.txt`` and, for a custom scan, ``<stem>_scan_coordinates.csv`` (x, y)."""
    n, ny, nx = frames.shape
    head = bytearray(1024)
    struct.pack_into("<4i", head, 0, nx, ny, n, 6)
    struct.pack_into("<i", head, 92, extended)
    head[208:212], head[212:214] = b"MAP ", b"\x44\x44"
    movie = folder / f"{stem}_movie.mrc"
    movie.write_bytes(bytes(head) + b"\x00" * extended + frames.astype("<u2").tobytes())
    info = {"Scan - Enable": "Enable", "Scan - Size X": scan_shape[1], "Scan - Size Y": scan_shape[0],
            "Scan - Type": "Raster" if coords_xy is None else "Custom", "Image Size X (pixels)": nx,
            "Image Size Y (pixels)": ny, "Specimen Pixel Size X (nanometers)": step_nm or -1}
    (folder / f"{stem}_info.txt").write_text("".join(f"{k} = {v}\n" for k, v in info.items()))
    if coords_xy is not None:
        (folder / f"{stem}_scan_coordinates.csv").write_text("".join(f"{x},{y}\n" for x, y in coords_xy))
    return str(movie)


def test_de_movie_is_read_in_its_scan_order(tmp_path, shuffled):
    frames, stack, order = shuffled
    rows, cols = np.divmod(order, SCAN[1])
    movie = write_de_movie(tmp_path, "20260101_00042", stack, SCAN, coords_xy=zip(cols, rows, strict=True),
                           step_nm=0.05, extended=128)
    source = open_source(movie)
    assert source.scan_shape == SCAN and source.scan_positions is not None
    assert source.hints()["step_A"] == pytest.approx(0.5)
    snap = api.reconstruct(source, settings=SETTINGS)
    assert_same(snap, raster(frames))


def test_de_raster_movie_without_coordinates(tmp_path, shuffled):
    frames, _, _ = shuffled
    movie = write_de_movie(tmp_path, "scan_7", frames, SCAN)
    source = open_source(movie)
    assert source.scan_positions is None and source.scan_shape == SCAN
    assert_same(api.reconstruct(source, settings=SETTINGS), raster(frames))


def test_de_movie_from_the_command_line(tmp_path, shuffled):
    frames, stack, order = shuffled
    rows, cols = np.divmod(order, SCAN[1])
    movie = write_de_movie(tmp_path, "a_b", stack, SCAN, coords_xy=zip(cols, rows, strict=True))
    out = tmp_path / "de.h5"
    assert main(["reconstruct", movie, "-o", str(out), "--kernel-size", "5", "--center", "7.5", "7.5",
                 "--virtual-detector", "3", "7", "--no-progress"]) == 0
    with h5py.File(out) as f:
        np.testing.assert_allclose(f["ricom"][()], raster(frames).ricom, rtol=1e-6, atol=1e-9)
        assert f.attrs["n_unvisited_positions"] == 0


def test_de_movie_header_problems_are_one_line_errors(tmp_path):
    movie = tmp_path / "x_movie.mrc"
    movie.write_bytes(b"\x00" * 100)
    with pytest.raises(InputError, match="shorter than the 1024-byte MRC header"):
        open_source(str(movie))
    head = bytearray(1024)
    struct.pack_into("<4i", head, 0, 4, 4, 2, 4)  # complex
    head[212:214] = b"\x44\x44"
    movie.write_bytes(bytes(head) + b"\x00" * 256)
    with pytest.raises(InputError, match="MRC mode 4"):
        open_source(str(movie))


# --------------------------------------------------------------------- EMD 1.0 / py4DSTEM


def write_emd(path, cubes: dict, step_A=None) -> None:
    """EMD 1.0 as emdfile/py4DSTEM write it: root attributes, and per array a group with
    ``emd_group_type`` 1, ``emd_class``, ``data`` and ``dim1 … dim4`` (``name``, ``units``)."""
    with h5py.File(path, "w") as f:
        f.attrs.update({"emd_group_type": "file", "version_major": 1, "version_minor": 0})
        root = f.create_group("experiment")
        root.attrs["emd_group_type"] = "root"
        for name, data in cubes.items():
            g = root.create_group(f"tree/{name}") if name != "datacube" else root.create_group(name)
            g.attrs.update({"emd_group_type": 1, "emd_class": "DataCube", "name": name})
            g.create_dataset("data", data=data)
            for i, (n, unit) in enumerate([("Rx", "A" if step_A else "pixels"), ("Ry", "A" if step_A else "pixels"),
                                           ("Qx", "pixels"), ("Qy", "pixels")]):
                d = g.create_dataset(f"dim{i + 1}", data=np.arange(data.shape[i]) * (step_A or 1.0))
                d.attrs.update({"name": n, "units": unit})
        meta = root.create_group("metadata")
        meta.attrs["emd_group_type"] = 0


def test_emd_datacube_found_by_name(tmp_path, shuffled):
    frames, _, _ = shuffled
    cube = frames.reshape(*SCAN, *DET)
    other = np.zeros((3, 4, *DET), np.uint16)
    path = tmp_path / "scan.emd"
    write_emd(path, {"datacube": cube, "dark": other}, step_A=0.7)
    with pytest.raises(InputError, match=r"several 3D/4D datasets .* EMD array by name \(datacube, dark\)"):
        open_source(str(path))
    source = open_source(f"{path}:datacube")
    assert source.scan_shape == SCAN and source.hints()["step_A"] == pytest.approx(0.7)
    assert_same(api.reconstruct(source, settings=SETTINGS), raster(frames))
    assert open_source(f"{path}:dark").scan_shape == (3, 4)  # a nested group, by its name alone


def test_emd_single_datacube_without_a_name(tmp_path, shuffled):
    frames, _, _ = shuffled
    path = tmp_path / "py4dstem.h5"
    write_emd(path, {"datacube": frames.reshape(*SCAN, *DET)})
    source = open_source(str(path))
    assert source.dataset == "/experiment/datacube/data" and "step_A" not in source.hints()


# --------------------------------------------------------------------- event lists


def test_event_list_in_a_listed_order(tmp_path):
    from ricom.sources.events_h5 import EventsH5Writer

    rng = np.random.default_rng(4)
    counts = rng.poisson(30, N)
    pos = np.repeat(np.arange(N), counts)
    x = rng.normal(7.5 + (pos % 3), 2.0).astype(np.float32)
    y = rng.normal(7.5 - (pos % 5) * 0.4, 2.0).astype(np.float32)
    order = rng.permutation(N)
    with EventsH5Writer(str(tmp_path / "raster.h5"), SCAN, DET) as w:
        w.append(pos, x, y)
    with EventsH5Writer(str(tmp_path / "listed.h5"), SCAN, DET) as w:  # slot k holds position order[k]'s events
        for k, p in enumerate(order):
            sel = pos == p
            w.append(np.full(int(sel.sum()), k), x[sel], y[sel])
    expected = api.reconstruct(str(tmp_path / "raster.h5"), settings=SETTINGS)
    wrong = api.reconstruct(str(tmp_path / "listed.h5"), settings=SETTINGS)
    got = api.reconstruct(str(tmp_path / "listed.h5"), scan_positions=order, settings=SETTINGS)
    assert not np.allclose(wrong.com_x, expected.com_x)
    assert_same(got, expected)



def test_convert_places_frames_by_the_list_and_sums_repeats(tmp_path, shuffled):
    frames, stack, order = shuffled
    listed = np.concatenate([order, order[:3]])  # three positions visited twice
    np.save(tmp_path / "stack.npy", np.concatenate([stack, stack[:3]]))
    np.save(tmp_path / "pos.npy", listed)
    out = tmp_path / "cube.npy"
    assert main(["convert", str(tmp_path / "stack.npy"), "--scan-shape", *map(str, SCAN), "--scan-positions",
                 str(tmp_path / "pos.npy"), "-o", str(out), "--no-progress"]) == 0
    expected = frames.reshape(N, *DET).astype(np.int64)
    expected[order[:3]] *= 2
    np.testing.assert_array_equal(np.load(out).reshape(N, *DET), expected)
