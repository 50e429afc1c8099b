"""Other frame formats (HDF5, Zarr, raw binary, EMPAD, RosettaSciIO) and `ricom convert` / `ricom info`."""
from __future__ import annotations

import os
import sys
import types

import h5py
import numpy as np
import pytest

import ricom
from ricom.cli.main import main
from ricom.core.errors import InputError, SettingsError
from ricom.sources import open_source
from ricom.sources.merlin.encode import encode_frames
from ricom.sources.merlin.hdr import make_acquisition_header


@pytest.fixture
def data4d():
    rng = np.random.default_rng(7)
    base = rng.random((12, 10)) + 0.5
    return rng.poisson(base * rng.uniform(3, 9, (5, 6, 1, 1))).astype(np.uint16)


def frames_of(src, chunk_size=7):
    chunks = list(src.chunks(chunk_size))
    return np.concatenate([c.frames for c in chunks]), np.concatenate([c.positions for c in chunks])


def same_reconstruction(spec, data, **options):
    settings = {"kernel_size": 3, "center_yx": (5.5, 4.5)}
    a = ricom.reconstruct(data, **settings)
    result, _, _ = ricom.api.reconstruct_run(spec, source_options=options, **settings)
    np.testing.assert_array_equal(result.snapshot.ricom, a.ricom)
    np.testing.assert_array_equal(result.snapshot.com_x, a.com_x)


def test_hdf5_4d_chunked_compressed_with_and_without_dataset_path(tmp_path, data4d):
    path = tmp_path / "d.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("entry/data", data=data4d, chunks=(1, 3, 12, 10), compression="gzip")
        f.create_dataset("entry/small", data=np.zeros((4, 4)))
    for spec in (f"{path}:/entry/data", f"{path}:entry/data", str(path)):
        src = open_source(spec)
        assert src.scan_shape == (5, 6) and src.detector_shape == (12, 10) and src.n_frames == 30
        frames, positions = frames_of(src)
        assert np.array_equal(frames, data4d.reshape(30, 12, 10)) and positions.tolist() == list(range(30))
        assert src.describe()["compression"] == "gzip"
        src.close()
    same_reconstruction(f"{path}:/entry/data", data4d)


def test_hdf5_3d_needs_scan_shape_and_series_join(tmp_path, data4d):
    stack = data4d.reshape(30, 12, 10)
    path = tmp_path / "master.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("entry/data/data_000002", data=stack[20:], chunks=(4, 12, 10))
        f.create_dataset("entry/data/data_000001", data=stack[:20], chunks=(4, 12, 10))
    src = open_source(str(path))
    assert src.scan_shape is None and src.n_frames == 30 and src.describe()["n_datasets"] == 2
    assert np.array_equal(frames_of(src, 8)[0], stack)
    src = open_source(str(path), scan_shape=(5, 6))
    assert src.scan_shape == (5, 6)
    same_reconstruction(f"{path}:/entry/data", data4d, scan_shape=(5, 6))
    with pytest.raises(SettingsError, match="scan_shape"):
        ricom.reconstruct(str(path), kernel_size=3)


def test_hdf5_errors_are_one_line(tmp_path, monkeypatch):
    path = tmp_path / "two.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("a", data=np.zeros((2, 4, 4)))
        f.create_dataset("b", data=np.zeros((3, 4, 4)))
    with pytest.raises(InputError, match=r"several 3D/4D datasets \(/a, /b\); choose one as"):
        open_source(str(path))
    with pytest.raises(InputError, match="no dataset '/c'"):
        open_source(f"{path}:/c")
    (tmp_path / "not.h5").write_bytes(b"nothing")
    with pytest.raises(InputError, match="not a readable HDF5 file"):
        open_source(str(tmp_path / "not.h5"))
    with h5py.File(tmp_path / "z.h5", "w") as f:
        f.create_dataset("d", data=np.zeros((2, 4, 4)), compression="gzip")
    monkeypatch.setattr(h5py.h5z, "filter_avail", lambda code: False)
    with pytest.raises(InputError, match="install hdf5plugin"):
        open_source(str(tmp_path / "z.h5"))


def test_zarr_store_and_group_path(tmp_path, data4d):
    zarr = pytest.importorskip("zarr")
    root = zarr.open_group(str(tmp_path / "d.zarr"), mode="w")
    arr = root.create_array("scan/frames", shape=data4d.shape, dtype=data4d.dtype, chunks=(2, 6, 12, 10))
    arr[:] = data4d
    for spec in (str(tmp_path / "d.zarr"), f"{tmp_path / 'd.zarr'}:/scan/frames"):
        src = open_source(spec)
        assert src.scan_shape == (5, 6)
        assert np.array_equal(frames_of(src, 4)[0], data4d.reshape(30, 12, 10))
    same_reconstruction(str(tmp_path / "d.zarr"), data4d)
    with pytest.raises(InputError, match="no array 'nope'"):
        open_source(f"{tmp_path / 'd.zarr'}:/nope")


def test_raw_binary_with_headers(tmp_path, data4d):
    stack = data4d.reshape(30, 12, 10).astype(">u2")
    blob = b"H" * 100 + b"".join(b"F" * 16 + f.tobytes() for f in stack)
    (tmp_path / "d.raw").write_bytes(blob)
    src = open_source(str(tmp_path / "d.raw"), dtype=">u2", detector_shape=(12, 10), header_bytes=100,
                      frame_header_bytes=16, scan_shape=(5, 6))
    frames, _ = frames_of(src)
    assert frames.dtype == np.uint16 and np.array_equal(frames, stack)
    with pytest.raises(SettingsError, match="needs the options dtype"):
        open_source(str(tmp_path / "d.raw"))
    with pytest.warns(UserWarning, match="bytes after the last complete frame"):
        open_source(str(tmp_path / "d.raw"), dtype="<u4", detector_shape=(12, 10))


def test_empad_xml_and_raw(tmp_path, data4d):
    stack = data4d.reshape(30, 12, 10)
    full = np.random.default_rng(3).random((30, 130, 128)).astype("<f4")
    full[:, :128, :128] = 0
    full[:, :12, :10] = stack
    (tmp_path / "scan_x6_y5.raw").write_bytes(full.tobytes())
    (tmp_path / "acq.xml").write_text(
        '<?xml version="1.0"?><root><raw_file filename="C:\\data\\scan_x6_y5.raw"/><type>scan</type>'
        '<scan_parameters mode="acquire"><scan_resolution_x>6</scan_resolution_x>'
        '<scan_resolution_y>5</scan_resolution_y></scan_parameters></root>')
    src = open_source(str(tmp_path / "acq.xml"))
    assert src.detector_shape == (128, 128) and src.scan_shape == (5, 6)
    assert src.describe()["scan_shape_from"] == "EMPAD XML"
    frames, _ = frames_of(src)
    assert frames.dtype == np.float32 and np.array_equal(frames, full[:, :128])
    src = open_source(str(tmp_path / "scan_x6_y5.raw"), scan_shape=(5, 6))
    assert src.detector_shape == (128, 128)


def test_rsciio_lazy_reader(tmp_path, monkeypatch, data4d):
    plugin = types.ModuleType("fake_rsciio_dm")
    nav_first = data4d.transpose(2, 3, 0, 1)  # stored (det_y, det_x, scan_y, scan_x): must be reordered
    axes = [{"size": 12, "scale": 0.5, "units": "mrad", "navigate": False, "index_in_array": 0},
            {"size": 10, "scale": 0.5, "units": "mrad", "navigate": False, "index_in_array": 1},
            {"size": 5, "scale": 0.02, "units": "nm", "navigate": True, "index_in_array": 2},
            {"size": 6, "scale": 0.02, "units": "nm", "navigate": True, "index_in_array": 3}]
    calls = []
    plugin.file_reader = lambda path, lazy=False: calls.append(lazy) or [
        {"data": np.zeros((3, 3)), "axes": [], "metadata": {}},
        {"data": nav_first, "axes": axes,
         "metadata": {"General": {"title": "4D"}, "Acquisition_instrument": {"TEM": {"beam_energy": 200.0}}}}]
    fake = types.ModuleType("rsciio")
    fake.IO_PLUGINS = [{"name": "DM", "file_extensions": ["dm3", "DM4", "dm4"], "api": "fake_rsciio_dm"}]
    monkeypatch.setitem(sys.modules, "rsciio", fake)
    monkeypatch.setitem(sys.modules, "fake_rsciio_dm", plugin)
    (tmp_path / "d.dm4").write_bytes(b"x")
    src = open_source(str(tmp_path / "d.dm4"))
    assert calls == [True] and src.scan_shape == (5, 6) and src.detector_shape == (12, 10)
    assert np.array_equal(frames_of(src)[0], data4d.reshape(30, 12, 10))
    assert src.hints() == {"step_A": 0.2, "pixel_size_mrad": 0.5, "energy_keV": 200.0}
    monkeypatch.setitem(sys.modules, "rsciio", None)
    with pytest.raises(InputError, match=r"pip install 'ricom\[rsciio\]'"):
        open_source(str(tmp_path / "d.dm4"))


@pytest.mark.parametrize("ext", [".npy", ".h5", ".zarr"])
def test_convert_mib_to_4d(tmp_path, data4d, ext, capsys):
    if ext == ".zarr":
        zarr = pytest.importorskip("zarr")
    mib = tmp_path / "d.mib"
    mib.write_bytes(encode_frames(data4d.reshape(30, 12, 10), 12, False))
    (tmp_path / "d.hdr").write_text(make_acquisition_header(30, (5, 6), 12), newline="")
    out = tmp_path / f"out{ext}"
    assert main(["convert", str(mib), "-o", str(out), "--no-progress", "--chunk-size", "7"]) == 0
    assert "30 patterns" in capsys.readouterr().out
    if ext == ".npy":
        got = np.load(out)
    elif ext == ".h5":
        with h5py.File(out) as f:
            got = f["data"][()]
            assert f["data"].attrs["complete"] and list(f.attrs["scan_shape"]) == [5, 6]
    else:
        got = zarr.open_array(str(out), mode="r")[:]
    assert got.shape == (5, 6, 12, 10) and np.array_equal(got, data4d)
    assert sorted(os.listdir(tmp_path)) == sorted(["d.mib", "d.hdr", f"out{ext}"])


def test_convert_3d_flyback_sum_and_errors(tmp_path, data4d, capsys):
    stack = data4d.reshape(30, 12, 10)
    (tmp_path / "d.mib").write_bytes(encode_frames(stack, 12, False))
    assert main(["convert", str(tmp_path / "d.mib"), "-o", str(tmp_path / "s.npy"), "--no-progress",
                 "--skip-frames", "2"]) == 0
    assert np.array_equal(np.load(tmp_path / "s.npy"), stack[2:])
    assert "28 patterns" in capsys.readouterr().out
    assert main(["convert", str(tmp_path / "d.mib"), "-o", str(tmp_path / "f.h5"), "--no-progress",
                 "--scan-shape", "2", "2", "--skip-frames", "6", "--flyback-frames", "1",
                 "--frames-per-position", "2"]) == 0
    with h5py.File(tmp_path / "f.h5") as f:  # 6 skipped, then lines of (2 + 1 flyback) × 2 frames, 2 passes
        got = f["data"][()]
    exp = np.zeros((4, 12, 10), np.uint32)
    for i in range(24):
        line, col = divmod(i // 2 % 6, 3)
        if col < 2:
            exp[line * 2 + col] += stack[6 + i]
    assert got.dtype == np.uint32 and np.array_equal(got.reshape(4, 12, 10), exp)
    capsys.readouterr()
    assert main(["convert", str(tmp_path / "d.mib"), "-o", str(tmp_path / "bad.npy"), "--scan-shape", "8", "4",
                 "--no-progress"]) == 2
    assert "too few for the 8×4 scan" in capsys.readouterr().err
    assert not os.path.exists(tmp_path / "bad.npy")
    with pytest.raises(SettingsError, match="unknown extension"):
        from ricom.cli.convert import output_kind
        output_kind(str(tmp_path / "x.tif"))


def test_convert_keeps_frames_before_a_broken_frame(tmp_path, data4d, capsys):
    stack = data4d.reshape(30, 12, 10)
    blob = bytearray(encode_frames(stack, 12, False))
    frame = len(blob) // 30
    blob[20 * frame:20 * frame + 3] = b"BAD"
    (tmp_path / "d.mib").write_bytes(bytes(blob))
    rc = main(["convert", str(tmp_path / "d.mib"), "-o", str(tmp_path / "p.h5"), "--scan-shape", "5", "6",
               "--no-progress", "--chunk-size", "8"])
    assert rc == 3 and "frame 21: no MIB header" in capsys.readouterr().err
    with h5py.File(tmp_path / "p.h5") as f:
        got = f["data"][()].reshape(30, 12, 10)
        assert not f["data"].attrs["complete"] and f["data"].attrs["frames_written"] == 20
    assert np.array_equal(got[:20], stack[:20]) and not got[20:].any()


def test_info_prints_what_was_detected(tmp_path, data4d, capsys):
    (tmp_path / "d.mib").write_bytes(encode_frames(data4d.reshape(30, 12, 10).astype(np.uint8), 6, False,
                                                   quad=False))
    (tmp_path / "d.hdr").write_text(make_acquisition_header(30, (5, 6), 6), newline="")
    assert main(["info", str(tmp_path / "d.mib")]) == 0
    out = capsys.readouterr().out
    for line in ("scan shape:", "5×6", "scan shape from:", ".hdr ScanX/ScanY", "counter depth:", "detector shape:",
                 "12×10", "n frames:", "30", "layout:", "1x1", "dtype:", "uint8"):
        assert line in out
    assert main(["info", str(tmp_path / "d.mib"), "--json", "--scan-shape", "3", "10"]) == 0
    assert '"scan_shape_from": "given"' in capsys.readouterr().out
