"""Plausibility checks and readers that validate their structure (issue 18, parts 3 and 4).

Each test is a failure found by generated inputs: before, it crashed (MemoryError,
TypeError, numba's NotImplementedError), hung (a FIFO) or was silently wrong; now it is
a one-line error (exit 2 on the command line) or a warning, and correct data still reads.
"""
from __future__ import annotations

import json
import os
import threading
import warnings

import h5py
import numpy as np
import pytest

import ricom
from ricom.cli.main import main
from ricom.core.errors import InputError, SettingsError
from ricom.core.params import BYTES_PER_POSITION, Settings, memory_budget_bytes
from ricom.engine.moments import Moments
from ricom.sources import open_source
from ricom.sources.arrays import read_sidecar
from ricom.sources.merlin.encode import encode_frames
from ricom.sources.merlin.file import MerlinSource
from ricom.sources.merlin.hdr import make_acquisition_header

ABSURD = 10**6  # a 10⁶×10⁶ scan: 10¹² positions, beyond any machine's memory


def _patterns(n=16, shape=(8, 8), seed=0):
    return np.random.default_rng(seed).poisson(4.0, (n, *shape)).astype(np.uint16)


# ---------------------------------------------------------------- non-regular inputs

def test_fifo_named_npy_is_refused_without_blocking(tmp_path):
    fifo = tmp_path / "x.npy"
    os.mkfifo(fifo)
    result = {}

    def attempt():
        try:
            open_source(str(fifo))
        except InputError as exc:
            result["error"] = str(exc)

    t = threading.Thread(target=attempt, daemon=True)
    t.start()
    t.join(10)
    assert not t.is_alive(), "opening a FIFO blocked"
    assert "FIFO" in result["error"] and "regular file" in result["error"]


@pytest.mark.parametrize("name", ["data.npy", "folder", "scan.mib", "scan.h5"])
def test_directory_is_a_directory_not_missing(tmp_path, name):
    (tmp_path / name).mkdir()
    with pytest.raises(InputError, match="is a directory") as exc:
        open_source(str(tmp_path / name))
    assert "does not exist" not in str(exc.value)
    assert main(["reconstruct", str(tmp_path / name), "-o", str(tmp_path / "o.h5")]) == 2


def test_device_is_refused_and_missing_still_missing(tmp_path):
    with pytest.raises(InputError, match="a device"):
        open_source("/dev/null")
    with pytest.raises(InputError, match="does not exist"):
        open_source(str(tmp_path / "none.npy"))
    with pytest.raises(InputError, match="does not exist"):
        open_source(str(tmp_path / "none.h5") + ":/data")


def test_zarr_directory_still_opens(tmp_path):
    zarr = pytest.importorskip("zarr")
    data = _patterns().reshape(4, 4, 8, 8)
    store = str(tmp_path / "s.zarr")
    zarr.save_array(store, data)
    with open_source(store) as src:
        assert src.scan_shape == (4, 4)


# ---------------------------------------------------------------- dtypes

def test_float16_patterns_reconstruct_as_float32(tmp_path):
    data = _patterns().reshape(4, 4, 8, 8)
    np.save(tmp_path / "h.npy", data.astype(np.float16))
    np.save(tmp_path / "f.npy", data.astype(np.float32))
    a = ricom.reconstruct(str(tmp_path / "h.npy"), kernel_size=3, center_yx=(3.5, 3.5))
    b = ricom.reconstruct(str(tmp_path / "f.npy"), kernel_size=3, center_yx=(3.5, 3.5))
    np.testing.assert_array_equal(a.ricom, b.ricom)  # small counts are exact in float16
    with h5py.File(tmp_path / "h.h5", "w") as f:
        f["data"] = data.astype(np.float16)
    c = ricom.reconstruct(str(tmp_path / "h.h5"), kernel_size=3, center_yx=(3.5, 3.5))
    np.testing.assert_array_equal(c.com_x, b.com_x)


@pytest.mark.parametrize("dtype", [np.complex64, np.complex128])
def test_complex_patterns_are_refused_with_a_message(tmp_path, dtype):
    np.save(tmp_path / "c.npy", _patterns().reshape(4, 4, 8, 8).astype(dtype))
    with pytest.raises(InputError, match=r"complex.*real intensities"):
        open_source(str(tmp_path / "c.npy"))
    with pytest.raises(InputError, match="complex"):
        ricom.reconstruct(np.zeros((2, 2, 4, 4), dtype))
    assert main(["reconstruct", str(tmp_path / "c.npy"), "-o", str(tmp_path / "o.h5")]) == 2


def test_raw_binary_with_a_complex_dtype_is_refused(tmp_path):
    (tmp_path / "r.raw").write_bytes(bytes(8 * 8 * 8 * 4))
    with pytest.raises(InputError, match="complex"):
        open_source(str(tmp_path / "r.raw"), dtype="<c8", detector_shape=(8, 8))


# ---------------------------------------------------------------- HDF5

def test_damaged_gzip_hdf5_is_named_damaged_not_a_missing_plugin(tmp_path):
    path = tmp_path / "gz.h5"
    data = _patterns(16, (32, 32))
    with h5py.File(path, "w") as f:
        f.create_dataset("data", data=data, chunks=(4, 32, 32), compression="gzip")
        offset = f["data"].id.get_chunk_info(1).byte_offset
    raw = bytearray(path.read_bytes())
    raw[offset + 5:offset + 60] = b"\xff" * 55
    path.write_bytes(bytes(raw))
    with open_source(f"{path}:/data", scan_shape=(4, 4)) as src, pytest.raises(InputError) as exc:
        for _ in src.chunks(4):
            pass
    message = str(exc.value)
    assert "damaged" in message and "hdf5plugin" not in message and "\n" not in message


# ---------------------------------------------------------------- .mib depth against the .hdr

def _mib(tmp_path, frame_depth, hdr_depth, n=4, raw=True):
    frames = _patterns(n, (256, 256)) % (2 ** min(frame_depth, hdr_depth))
    path = tmp_path / "scan.mib"
    path.write_bytes(encode_frames(frames, frame_depth, raw))
    (tmp_path / "scan.hdr").write_text(make_acquisition_header(n, (2, n // 2), depth=hdr_depth))
    return str(path), frames


@pytest.mark.parametrize("frame_depth,hdr_depth", [(12, 6), (6, 12), (12, 1)])
def test_raw_mib_depth_that_contradicts_the_hdr_warns_and_follows_the_file(tmp_path, frame_depth, hdr_depth):
    path, frames = _mib(tmp_path, frame_depth, hdr_depth)
    with pytest.warns(UserWarning, match=f"frame header says counter depth {frame_depth} but .* says {hdr_depth}"):
        src = MerlinSource(path)
    with src:
        got = np.concatenate([c.frames for c in src.chunks(4)])
    np.testing.assert_array_equal(got, frames)  # the file's frame size decides: decoded right


def test_lying_frame_header_depth_decodes_at_the_depth_the_file_confirms(tmp_path):
    """The frame headers say depth 6 but the frames are 12-bit (as the .hdr says)."""
    path, frames = _mib(tmp_path, 12, 12)
    blob = bytearray(open(path, "rb").read())
    blob = blob.replace(b"ns,12,", b"ns,06,")  # the MQ1A depth field of every header
    open(path, "wb").write(bytes(blob))
    with pytest.warns(UserWarning, match="says counter depth 6 .* decoding at depth 12"):
        src = MerlinSource(path)
    with src:
        np.testing.assert_array_equal(np.concatenate([c.frames for c in src.chunks(4)]), frames)


def test_single_frame_whose_depth_cannot_be_told_is_an_error(tmp_path):
    path, _ = _mib(tmp_path, 12, 6, n=1)
    size = os.path.getsize(path)
    with open(path, "ab") as fh:  # a tail that fits neither depth's frame size
        fh.write(bytes(7))
    assert os.path.getsize(path) == size + 7
    with pytest.raises(InputError, match="does not tell which is right"):
        MerlinSource(path)


def test_matching_depths_read_without_a_warning(tmp_path):
    path, frames = _mib(tmp_path, 12, 12)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with MerlinSource(path) as src:
            np.testing.assert_array_equal(np.concatenate([c.frames for c in src.chunks(4)]), frames)


# ---------------------------------------------------------------- sidecars

@pytest.mark.parametrize("calibration,kept", [
    ({"step_A": "0.5"}, {}),
    ({"step_A": [1]}, {}),
    ({"step_A": -1, "energy_keV": 300}, {"energy_keV": 300.0}),
    ({"pixel_size_mrad": True}, {}),
    ({"center_yx": 5}, {}),
    ({"center_yx": ["a", 3]}, {}),
    ({"center_yx": [3, 4, 5]}, {}),
])
def test_sidecar_values_of_the_wrong_type_are_ignored_with_a_warning(tmp_path, calibration, kept):
    data = tmp_path / "d.npy"
    np.save(data, _patterns().reshape(4, 4, 8, 8))
    (tmp_path / "d.ricom.json").write_text(json.dumps({"calibration": calibration}))
    with pytest.warns(UserWarning, match="d.ricom.json: calibration"):
        assert read_sidecar(str(data)) == kept
    with pytest.warns(UserWarning):
        snap = ricom.reconstruct(str(data), kernel_size=3)
    assert snap.ricom.shape == (4, 4)


@pytest.mark.parametrize("text", ["[1, 2]", "{not json", '{"calibration": 5}'])
def test_unreadable_sidecar_is_ignored_with_a_warning(tmp_path, text):
    data = tmp_path / "d.npy"
    np.save(data, _patterns().reshape(4, 4, 8, 8))
    (tmp_path / "d.ricom.json").write_text(text)
    with pytest.warns(UserWarning, match="d.ricom.json"):
        assert read_sidecar(str(data)) == {}


def test_good_sidecar_still_read(tmp_path):
    data = tmp_path / "d.npy"
    (tmp_path / "d.ricom.json").write_text(json.dumps({"calibration": {"step_A": 0.2, "center_yx": [3.5, 4]}}))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert read_sidecar(str(data)) == {"step_A": 0.2, "center_yx": (3.5, 4.0)}


# ---------------------------------------------------------------- sizes before allocation

def test_absurd_scan_shape_is_refused_before_allocation():
    with pytest.raises(SettingsError, match=f"scan shape {ABSURD}×{ABSURD} has .* GiB.*scan_shape"):
        ricom.Reconstruction((ABSURD, ABSURD), (8, 8))
    with pytest.raises(SettingsError, match="the scan has"):
        Moments(ABSURD * ABSURD)


def test_memory_budget_is_the_limit():
    fits = memory_budget_bytes() // BYTES_PER_POSITION // 2
    Moments(0)  # (nothing to allocate)
    with pytest.raises(SettingsError):
        Moments(2 * fits + 10)


def test_absurd_padded_scan_names_where_the_shape_came_from(tmp_path):
    np.save(tmp_path / "s.npy", _patterns())
    with pytest.raises(SettingsError, match=r"s\.npy: scan shape 1000000×1000000 \(given\)"):
        open_source(str(tmp_path / "s.npy"), scan_shape=(ABSURD, ABSURD), pad=True)
    assert main(["reconstruct", str(tmp_path / "s.npy"), "--scan-shape", str(ABSURD), str(ABSURD), "--scan-pad",
                 "-o", str(tmp_path / "o.h5")]) == 2
    assert not (tmp_path / "o.h5").exists()


def test_absurd_scan_shape_in_a_hdr_is_an_input_error(tmp_path):
    frames = _patterns(4, (256, 256)) % 4096
    (tmp_path / "a.mib").write_bytes(encode_frames(frames, 12, False))
    (tmp_path / "a.hdr").write_text(make_acquisition_header(ABSURD * ABSURD, (ABSURD, ABSURD), depth=12))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # (the acquisition is incomplete)
        with pytest.raises(InputError, match=r"scan shape 1000000×1000000 \(\.hdr ScanX/ScanY\)"):
            MerlinSource(str(tmp_path / "a.mib"))


def _event_file(path, scan_shape, detector_shape=(8, 8)):
    with h5py.File(path, "w") as f:
        g = f.create_group("electron_events")
        frames = g.create_dataset("frames", (2,), dtype=h5py.vlen_dtype(np.uint32))
        frames[0], frames[1] = np.array([1, 2], np.uint32), np.array([3], np.uint32)
        frames.attrs["Nx"], frames.attrs["Ny"] = detector_shape[1], detector_shape[0]
        sp = g.create_dataset("scan_positions", data=np.array([0, 1], np.int64))
        sp.attrs["Nx"], sp.attrs["Ny"] = scan_shape[1], scan_shape[0]


def test_event_list_with_absurd_or_malformed_shape_attributes(tmp_path):
    _event_file(tmp_path / "ok.h5", (1, 2))
    with open_source(str(tmp_path / "ok.h5")) as src:
        assert src.scan_shape == (1, 2)
    _event_file(tmp_path / "big.h5", (ABSURD, ABSURD))
    with pytest.raises(InputError, match=r"scan shape 1000000×1000000 \(file attributes\)"):
        open_source(str(tmp_path / "big.h5"))
    _event_file(tmp_path / "neg.h5", (-3, 2))
    with pytest.raises(InputError, match="malformed event list"):
        open_source(str(tmp_path / "neg.h5"))
    _event_file(tmp_path / "det.h5", (1, 2), (100000, 100000))
    with pytest.raises(InputError, match="detector shape 100000×100000"):
        open_source(str(tmp_path / "det.h5"))


# ---------------------------------------------------------------- COM mask

def test_com_mask_outside_the_detector_is_refused(tmp_path):
    geometry, k3 = ricom.DetectorGeometry(center_yx=(3.5, 3.5)), ricom.KernelSettings(3)
    with pytest.raises(SettingsError, match=r"COM mask 50–60 px lies outside the 8×8 detector.*com_mask_px"):
        ricom.Reconstruction((4, 4), (8, 8), Settings(k3, geometry, com_mask_px=(50, 60)))
    with pytest.raises(SettingsError, match="any centre"):
        ricom.Reconstruction((4, 4), (8, 8), Settings(k3, com_mask_px=(11, 60)))  # beyond the diagonal (9.9)
    rec = ricom.Reconstruction((4, 4), (8, 8), Settings(k3, com_mask_px=(9, 60)))  # a corner centre reaches it
    with pytest.raises(SettingsError, match="outside"):
        rec.update_settings(rec.settings.with_(geometry=geometry))
    np.save(tmp_path / "d.npy", _patterns().reshape(4, 4, 8, 8))
    assert main(["reconstruct", str(tmp_path / "d.npy"), "--com-mask", "50", "60", "--center", "3.5", "3.5",
                 "-o", str(tmp_path / "o.h5")]) == 2
    assert not (tmp_path / "o.h5").exists()


def test_com_mask_that_reaches_the_detector_still_works():
    geometry = ricom.DetectorGeometry(center_yx=(3.5, 3.5))
    rec = ricom.Reconstruction((4, 4), (8, 8), Settings(geometry=geometry, com_mask_px=(4.5, 60),
                                                        kernel=ricom.KernelSettings(3)))
    frames = np.zeros((16, 8, 8), np.uint16)
    frames[:, 0, 7] = 5  # a corner pixel, 4.95 px from the centre: inside the mask
    rec.process_frames(frames, positions=np.arange(16))
    np.testing.assert_allclose(rec.snapshot().com_x, 3.5)
