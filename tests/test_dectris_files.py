"""DECTRIS NeXus files opened by name (`ricom.sources.dectris.files`).

The files are written here independently of the reader, with h5py, ``hdf5plugin``'s
Bitshuffle-LZ4 filter and HDF5 external links, laid out as a real EIGER master file is
(checked against the semi-synthetic EIGER 9M master of dials/data-files,
``image_examples/dectris_eiger_master.h5``): ``bit_depth_image`` and the geometry under
``/entry/instrument/detector`` with ``units`` attributes, ``nimages``/``ntrigger``/
``pixel_mask``/``compression``/``trigger_mode`` under ``detectorSpecific``, and links
``/entry/data/data_00000k`` → ``NAME_data_00000k.h5`` : ``entry/data/data`` (relative
file name, frames chunked one per HDF5 chunk).
"""
from __future__ import annotations

import os
import warnings

import h5py
import hdf5plugin
import numpy as np
import pytest

import ricom
from ricom.cli.main import main
from ricom.core.errors import InputError, SettingsError
from ricom.sources import open_source
from ricom.sources.dectris.files import DectrisFileSource, electron_energy_keV, is_dectris_file
from ricom.sources.hdf5 import HDF5Source

DET = (12, 10)
BAD = ((1, 2), (7, 7))  # dead and gap pixels of the mask


def make_frames(n: int, seed: int = 0, bit_depth: int = 16) -> np.ndarray:
    """Counts of a disc that moves with the frame, the detector's marker value on the masked
    pixels and, once, a single reading of that value elsewhere."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:DET[0], :DET[1]]
    shift = rng.normal(0, 1.0, (n, 2))
    r2 = (yy - 5.5 - shift[:, :1, None]) ** 2 + (xx - 4.5 - shift[:, 1:, None]) ** 2
    frames = rng.poisson(np.where(r2 < 9, 30.0, 1.0)).astype(np.uint16 if bit_depth <= 16 else np.uint32)
    marker = 2**bit_depth - 1
    for y, x in BAD:
        frames[:, y, x] = marker
    frames[min(3, n - 1), 0, 0] = marker
    return frames


def detector_mask() -> np.ndarray:
    mask = np.zeros(DET, np.uint32)
    mask[BAD[0]] = 1 << 1  # dead
    mask[BAD[1]] = 1 << 0  # gap
    mask[0, 9] = 1 << 16  # a high bit only: not left out
    return mask


def masked(frames: np.ndarray, bit_depth: int = 16) -> np.ndarray:
    """What the reader must deliver: mask pixels and marker readings zeroed."""
    out = frames.copy()
    out[:, detector_mask() & 0xFFFF != 0] = 0
    out[out == 2**bit_depth - 1] = 0
    return out


def write_dectris(folder, frames, per_file: int, name: str = "scan", ntrigger: int | None = None,
                  nimages: int = 1, bit_depth: int = 16, mask: bool = True, geometry: bool = True,
                  extra_links: int = 0) -> str:
    """A master and its data files as the DECTRIS file writer lays them out; returns the master."""
    folder = str(folder)
    n = len(frames)
    starts = list(range(0, n, per_file))
    master = os.path.join(folder, f"{name}_master.h5")
    with h5py.File(master, "w") as f:
        f.create_group("entry").attrs["NX_class"] = np.bytes_(b"NXentry")
        f.create_group("entry/data").attrs["NX_class"] = np.bytes_(b"NXdata")
        det = f.create_group("entry/instrument/detector")
        spec = det.create_group("detectorSpecific")
        spec.attrs["NX_class"] = np.bytes_(b"NXcollection")
        det["description"] = np.bytes_(b"Dectris ARINA Si 0.1M")
        det["bit_depth_image"] = np.int32(bit_depth)
        det["bit_depth_readout"] = np.int32(bit_depth)
        det["count_time"] = np.float32(0.00099)
        det["frame_time"] = np.float32(0.001)
        if geometry:
            f["entry/instrument/beam/incident_wavelength"] = np.float32(0.019687)  # 300 keV electrons
            f["entry/instrument/beam/incident_wavelength"].attrs["units"] = np.bytes_(b"angstrom")
            for key, value, unit in (("beam_center_x", 4.5, b"pixel"), ("beam_center_y", 5.5, b"pixel"),
                                     ("x_pixel_size", 0.1, b"mm"), ("y_pixel_size", 0.1, b"mm"),
                                     ("detector_distance", 0.2, b"m")):
                det[key] = np.float32(value)
                det[key].attrs["units"] = np.bytes_(unit)
        spec["nimages"] = np.uint32(nimages)
        spec["ntrigger"] = np.uint32(ntrigger if ntrigger is not None else n // nimages)
        spec["trigger_mode"] = np.bytes_(b"exte")
        spec["compression"] = np.bytes_(b"bslz4")
        spec["x_pixels_in_detector"] = np.uint32(DET[1])
        spec["y_pixels_in_detector"] = np.uint32(DET[0])
        if mask:
            spec["pixel_mask"] = detector_mask()
        for k in range(1, len(starts) + extra_links + 1):
            f[f"entry/data/data_{k:06d}"] = h5py.ExternalLink(f"{name}_data_{k:06d}.h5", "entry/data/data")
    for k, a in enumerate(starts, 1):
        part = frames[a:a + per_file]
        with h5py.File(os.path.join(folder, f"{name}_data_{k:06d}.h5"), "w") as f:
            ds = f.create_dataset("entry/data/data", data=part, chunks=(1, *DET), **hdf5plugin.Bitshuffle(cname="lz4"))
            ds.attrs["image_nr_low"] = np.uint32(a + 1)
            ds.attrs["image_nr_high"] = np.uint32(a + len(part))
    return master


def frames_of(src, chunk_size: int = 5):
    chunks = list(src.chunks(chunk_size))
    return np.concatenate([c.frames for c in chunks]), np.concatenate([c.positions for c in chunks])


def opened(spec, **options):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        src = open_source(spec, **options)
    return src, [str(w.message) for w in caught]


def test_master_joins_data_files_in_order_and_applies_the_mask(tmp_path):
    frames = make_frames(16)
    master = write_dectris(tmp_path, frames, per_file=7)  # 7 + 7 + 2 frames
    with h5py.File(master) as f:  # what fails without this reader: visititems misses the links
        found = []
        f.visititems(lambda name, obj: found.append(name) if isinstance(obj, h5py.Dataset) and obj.ndim == 3 else 0)
        assert found == []
    assert is_dectris_file(master) and not is_dectris_file(f"{master}:/entry/data/data_000001")
    src, notes = opened(master)
    assert isinstance(src, DectrisFileSource) and src.splittable
    assert (src.scan_shape, src.detector_shape, src.n_frames) == ((4, 4), DET, 16)
    assert [os.path.basename(p) for p in src.series_files] == [f"scan_data_00000{k}.h5" for k in (1, 2, 3)]
    assert notes == [f"{master}: 2 masked pixels (gap 1, dead 1); readings of 65535 also left out"]
    got, positions = frames_of(src)
    np.testing.assert_array_equal(got, masked(frames))
    np.testing.assert_array_equal(positions, np.arange(16))
    assert src.mask.readings_removed == 1  # the one marker reading outside the mask
    parts = [c.frames for a, b in ((0, 6), (6, 16)) for c in src.read_range(a, b, 4)]  # how Dask splits it
    np.testing.assert_array_equal(np.concatenate(parts), masked(frames))
    src.close()


def test_explicit_dataset_path_still_reads_the_plain_dataset(tmp_path):
    frames = make_frames(16)
    master = write_dectris(tmp_path, frames, per_file=7)
    src = open_source(f"{master}:/entry/data/data_000001", scan_shape=(1, 7))
    assert isinstance(src, HDF5Source)
    np.testing.assert_array_equal(frames_of(src)[0], frames[:7])  # no mask: exactly what is stored
    src.close()


def test_scan_shape_rules(tmp_path):
    master = write_dectris(tmp_path, make_frames(16), per_file=16, name="sq")
    src, _ = opened(master)
    assert src.scan_shape == (4, 4) and "square" in src.describe()["scan_shape_from"]
    src.close()
    src, _ = opened(master, scan_shape=(2, 8))  # given wins
    assert src.scan_shape == (2, 8) and src.describe()["scan_shape_from"] == "given"
    src.close()
    with pytest.raises(SettingsError, match="16 frames are not a whole number of 3×5 scans"):
        open_source(master, scan_shape=(3, 5))
    wide = write_dectris(tmp_path, make_frames(12), per_file=12, name="wide")  # 12: not a square
    src, _ = opened(wide)
    assert src.scan_shape is None and src.n_frames == 12
    src.close()
    with pytest.raises(SettingsError, match=r"give scan_shape=\(SY, SX\)"), pytest.warns(UserWarning):
        ricom.reconstruct(wide, kernel_size=3)
    lines = write_dectris(tmp_path, make_frames(16), per_file=16, name="lines", ntrigger=4, nimages=4)
    src, _ = opened(lines)  # ntrigger × nimages frames
    assert src.scan_shape == (4, 4) and src.describe()["expected_frames"] == 16
    src.close()


def test_missing_data_files(tmp_path):
    frames = make_frames(25)
    master = write_dectris(tmp_path, frames, per_file=10)  # 10 + 10 + 5
    os.remove(tmp_path / "scan_data_000003.h5")  # the end of the series: a warned partial read
    src, notes = opened(master)
    assert any("incomplete acquisition: 20 of its 25 frames" in n and "scan_data_000003.h5" in n for n in notes)
    assert src.scan_shape == (5, 5) and src.n_frames == 20
    got, positions = frames_of(src)
    np.testing.assert_array_equal(got, masked(frames[:20]))
    np.testing.assert_array_equal(positions, np.arange(20))
    assert src.describe()["missing_data_files"] == [str(tmp_path / "scan_data_000003.h5")]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = ricom.reconstruct(master, kernel_size=3, center_yx=(5.5, 4.5), strict=False)
    assert not result.complete and "5 of 25 scan positions" in result.reason
    assert any("incomplete acquisition" in str(w.message) for w in caught)
    assert result.n_patterns == 20
    src.close()
    os.remove(tmp_path / "scan_data_000001.h5")  # a gap before an existing file: frames would move
    with pytest.raises(InputError, match=r"scan_data_000001\.h5 .* is missing, but later ones exist"):
        open_source(master)
    os.remove(tmp_path / "scan_data_000002.h5")
    with pytest.raises(InputError, match=r"no data file of the series can be read \(first: .*scan_data_000001\.h5"):
        open_source(master)


def test_data_file_opened_directly(tmp_path):
    frames = make_frames(16)
    write_dectris(tmp_path, frames, per_file=16, name="one")
    src, _ = opened(str(tmp_path / "one_data_000001.h5"))  # the whole series: scan and mask from the master
    assert src.scan_shape == (4, 4) and src.describe()["format"] == "DECTRIS NeXus data file"
    np.testing.assert_array_equal(frames_of(src)[0], masked(frames))
    src.close()
    write_dectris(tmp_path, frames, per_file=8, name="two")
    src, notes = opened(str(tmp_path / "two_data_000002.h5"))  # one part of two: read alone, masked
    assert any("holds part 2 of the 2 data files" in n for n in notes)
    assert src.describe()["series_part"] == "2 of 2 data files"
    assert src.scan_shape is None and src.n_frames == 8
    np.testing.assert_array_equal(frames_of(src)[0], masked(frames[8:]))
    src.close()
    os.remove(tmp_path / "two_master.h5")  # no master: no static mask, but the marker readings
    src, notes = opened(str(tmp_path / "two_data_000001.h5"))
    assert src.master_path is None and not notes and src.n_frames == 8
    assert src.describe()["masked_pixels"] == "0 masked pixels; readings of 65535 also left out"
    np.testing.assert_array_equal(frames_of(src)[0], masked(frames[:8]))
    src.close()


def test_32_bit_frames_and_no_mask(tmp_path):
    frames = make_frames(9, bit_depth=32)
    master = write_dectris(tmp_path, frames, per_file=4, bit_depth=32, mask=False, geometry=False)
    src, notes = opened(master)
    assert not notes and src.hints() == {} and src.describe()["bit_depth_image"] == 32
    got = frames_of(src)[0]
    assert got.dtype == np.uint32
    expected = frames.copy()
    expected[expected == 2**32 - 1] = 0
    np.testing.assert_array_equal(got, expected)
    src.close()


def test_hints_from_the_master(tmp_path):
    master = write_dectris(tmp_path, make_frames(16), per_file=16)
    src, _ = opened(master)
    hints = src.hints()
    assert hints["energy_keV"] == pytest.approx(300.0, abs=0.05)  # from a float32 wavelength
    assert hints["pixel_size_mrad"] == pytest.approx(0.5, rel=1e-6)  # 0.1 mm / 0.2 m
    assert hints["center_yx"] == (5.5, 4.5)
    assert electron_energy_keV(ricom.core.units.wavelength_A(80.0)) == pytest.approx(80.0)
    src.close()


def test_info_shows_files_mask_and_acquisition(tmp_path, capsys):
    master = write_dectris(tmp_path, make_frames(16), per_file=7)
    assert main(["info", master]) == 0
    out = capsys.readouterr().out
    for text in ("format:", "DECTRIS NeXus master", "scan_data_000001.h5, ", "scan_data_000003.h5",
                 "scan shape:", "4×4", "detector shape:", "12×10", "dtype:", "uint16", "bit depth image:",
                 "hdf5 compression:", "bitshuffle", "trigger mode:", "exte", "ntrigger:", "16",
                 "nimages:", "count time:", "0.00099", "frame time:", "description:", "ARINA",
                 "masked pixels:", "2 masked pixels (gap 1, dead 1)", "energy_keV=300", "center_yx=5.5×4.5"):
        assert text in out, text


def test_cli_reconstruct_master_equals_the_masked_array(tmp_path):
    frames = make_frames(36, seed=4)
    master = write_dectris(tmp_path, frames, per_file=10)
    out = tmp_path / "out.h5"
    assert main(["reconstruct", master, "-o", str(out), "--kernel-size", "3", "--no-progress"]) == 0
    expected = ricom.reconstruct(masked(frames).reshape(6, 6, *DET), kernel_size=3, center_yx=(5.5, 4.5),
                                 energy_keV=electron_energy_keV(0.019687), pixel_size_mrad=0.5)
    with h5py.File(out) as f:
        np.testing.assert_allclose(f["ricom"][()], expected.ricom, rtol=1e-6, atol=1e-9)
        np.testing.assert_allclose(f["com_x"][()], expected.com_x, rtol=1e-6, atol=1e-9)
        assert int(f["n_patterns"][()]) == 36
