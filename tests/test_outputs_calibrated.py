"""Outputs that open calibrated: ImageJ TIFF (pixel size in Å), PNG scale and colour bars,
HyperSpy files (loaded back with ``hyperspy.api.load``)."""
from __future__ import annotations

import codecs
import json
import math
import sys
from fractions import Fraction

import h5py
import numpy as np
import pytest
import tifffile

from ricom.cli.main import main
from ricom.core.errors import SettingsError
from ricom.io import outputs
from ricom.io.scalebar import scale_bar

STEP_A = 0.37
CAL = ["--step", str(STEP_A), "--pixel-size-mrad", "1.5", "--energy-kev", "200"]


@pytest.fixture
def npy(tmp_path, poisson_data):
    path = tmp_path / "data.npy"
    np.save(path, poisson_data)
    return path


def reconstruct(npy, out, *extra, signals="ricom,icom,com,vadf"):
    assert main(["reconstruct", str(npy), "-o", str(out), "--kernel-size", "3", "--center", "7.5", "7.5",
                 "--signals", signals, "--no-progress", *extra]) == 0


def reference_h5(npy, tmp_path, *extra):
    """The same run written by the plain HDF5 writer: what every other format must hold."""
    out = tmp_path / "ref.h5"
    reconstruct(npy, out, *extra)
    with h5py.File(out) as f:
        return {k: f[k][()] for k in f if k not in ("n_patterns", "seconds_processing")}, dict(f.attrs)


def java_properties_value(text: str) -> str:
    """What java.util.Properties (ImageJ's description reader) makes of a value: \\uXXXX decoded."""
    return codecs.decode(text, "unicode_escape")


def test_scale_bar_is_the_longest_round_length_that_fits():
    for step, width in [(0.2, 64), (0.37, 9), (1.3, 512), (0.05, 100), (12.0, 30)]:
        limit = 0.25 * width * step
        candidates = [m * 10.0 ** e for e in range(-4, 8) for m in (1, 2, 5) if m * 10.0 ** e <= limit * (1 + 1e-9)]
        bar = scale_bar(step, width)
        assert bar.length_A == pytest.approx(max(candidates))
        assert bar.length_px == pytest.approx(bar.length_A / step)
    assert scale_bar(None, 64) is None
    assert scale_bar(0.2, 64).label == "2 Å" and scale_bar(1.0, 400).label == "10 nm"


def test_tiff_is_imagej_with_pixel_size_and_unit(tmp_path, npy):
    ref, _ = reference_h5(npy, tmp_path, *CAL)
    out = tmp_path / "out.tif"
    reconstruct(npy, out, *CAL)
    with tifffile.TiffFile(out) as tif:
        page = tif.pages[0]
        assert tif.is_imagej and page.dtype == np.float32
        ij = tif.imagej_metadata
        xres, yres = page.tags["XResolution"].value, page.tags["YResolution"].value
        assert page.tags["ResolutionUnit"].value == 1  # NONE: ImageJ takes the unit from its description
        img = tif.asarray()
    # ImageJ: pixelWidth = 1 / XResolution, in the description's unit
    assert 1 / (Fraction(*xres)) == pytest.approx(STEP_A, rel=1e-6)
    assert 1 / (Fraction(*yres)) == pytest.approx(STEP_A, rel=1e-6)
    assert ij["unit"].isascii() and java_properties_value(ij["unit"]) == "Å"
    assert java_properties_value(ij["vunit"]) == "V·Å"
    assert ij["min"] < ij["max"]
    meta = json.loads(ij["Info"])
    assert meta["signal"] == "ricom" and meta["step_A"] == STEP_A and meta["kernel_size"] == 3
    assert outputs.read_tiff_metadata(str(out)) == meta
    np.testing.assert_allclose(img, ref["ricom"], rtol=1e-6, atol=1e-4)


def test_uncalibrated_tiff_says_no_unit(tmp_path, npy):
    out = tmp_path / "out.tif"
    reconstruct(npy, out, signals="vadf")
    with tifffile.TiffFile(out) as tif:
        assert "unit" not in tif.imagej_metadata
        assert tif.pages[0].tags["XResolution"].value == (1, 1)
        assert tif.imagej_metadata["vunit"] == "counts"


def test_one_tiff_per_signal_and_a_labelled_stack(tmp_path, npy, poisson_data):
    ref, _ = reference_h5(npy, tmp_path, *CAL)
    reconstruct(npy, tmp_path / "scan_{signal}.tif", *CAL)
    for name in ("ricom", "icom", "com_x", "com_y", "vadf"):
        with tifffile.TiffFile(tmp_path / f"scan_{name}.tif") as tif:
            np.testing.assert_allclose(tif.asarray(), ref[name], rtol=1e-6, atol=1e-4)
            assert json.loads(tif.imagej_metadata["Info"])["signal"] == name
    import ricom

    snap = ricom.reconstruct(poisson_data, kernel_size=3, center_yx=(7.5, 7.5), step_A=STEP_A)
    assert outputs.write_tiff_stack(str(tmp_path / "stack.tif"), snap, ["ricom", "com"]) == ["ricom", "com_x", "com_y"]
    with tifffile.TiffFile(tmp_path / "stack.tif") as tif:
        stack, ij = tif.asarray(), tif.imagej_metadata
    assert stack.shape == (3, 8, 9) and ij["images"] == 3
    assert ij["Labels"] == ["ricom [px·Å]", "com_x [px]", "com_y [px]"]
    assert "vunit" not in ij and java_properties_value(ij["unit"]) == "Å"
    np.testing.assert_allclose(stack[1], snap.com_x, rtol=1e-6)


def _runs(mask_row: np.ndarray) -> list[tuple[int, int]]:
    """(start, length) of every run of True."""
    padded = np.concatenate([[False], mask_row, [False]]).astype(int)
    edges = np.flatnonzero(np.diff(padded))
    return [(int(a), int(b - a)) for a, b in zip(edges[::2], edges[1::2], strict=True)]


def test_png_preview_draws_a_scale_bar_of_the_stated_length(tmp_path):
    import matplotlib.image

    width, step = 64, 0.25
    dark = np.zeros((48, width))  # flat: drawn black, the white bar stands out
    info = outputs.preview_png(str(tmp_path / "p.png"), {"ricom": dark}, {"ricom": "V·Å"}, step_A=step)
    bar = info[0]["scale_bar"]
    assert bar.length_A == 2.0 and bar.length_px == 8.0 and bar.label == "2 Å"
    png = matplotlib.image.imread(tmp_path / "p.png")[..., :3]
    x0, x1, y0, y1 = info[0]["bar_px"]
    row = round((y0 + y1) / 2)
    white = (png[row] > 0.95).all(axis=1)
    centre = round((x0 + x1) / 2)
    start, bar_len = next(r for r in _runs(white) if r[0] <= centre < r[0] + r[1])
    assert abs(start - x0) <= 2 and abs(bar_len - (x1 - x0)) <= 3
    middle = round(y0) - 25  # a row of the image above the bar: the image is the longest black run
    black = (png[middle] < 0.05).all(axis=1)
    image_start, image_len = max(_runs(black), key=lambda r: r[1])
    assert image_start < start and image_len > 100
    assert bar_len / image_len == pytest.approx(bar.length_px / width, abs=2.5 / image_len)
    without = outputs.preview_png(str(tmp_path / "q.png"), {"ricom": dark}, {"ricom": "V·Å"})
    assert without[0]["scale_bar"] is None and without[0]["bar_px"] is None
    assert not (matplotlib.image.imread(tmp_path / "q.png")[row, :, :3] > 0.95).all(axis=1)[
        int(x0) + 2:int(x1) - 2].any()


def test_png_colour_bar_is_labelled_with_the_unit(tmp_path):
    info = outputs.preview_png(str(tmp_path / "p.png"), {"ricom": np.eye(8), "com_x": np.eye(8)},
                               {"ricom": "V·Å", "com_x": "mrad"})
    assert [p["colour_bar_label"] for p in info] == ["V·Å", "mrad"]


# ---------------------------------------------------------------------------- HyperSpy

def test_hspy_round_trip_with_hyperspy(tmp_path, npy):
    hs = pytest.importorskip("hyperspy.api")
    ref, attrs = reference_h5(npy, tmp_path, *CAL)
    out = tmp_path / "result.hspy"
    reconstruct(npy, out, *CAL)
    signals = hs.load(str(out))
    assert [s.metadata.General.title for s in signals] == ["ricom", "icom", "com", "vadf"]
    by_name = {s.metadata.General.title: s for s in signals}
    for name in ("ricom", "icom", "vadf"):
        s = by_name[name]
        assert s.axes_manager.signal_dimension == 2 and s.axes_manager.navigation_dimension == 0
        np.testing.assert_allclose(s.data, ref[name], rtol=1e-6, atol=1e-4)
        x, y = s.axes_manager.signal_axes
        assert (x.name, y.name, x.size, y.size) == ("x", "y", 9, 8)
        assert x.scale == pytest.approx(STEP_A) and y.scale == pytest.approx(STEP_A) and x.units == y.units == "Å"
        assert s.original_metadata.ricom.kernel_size == 3
        assert s.original_metadata.ricom.step_A == pytest.approx(STEP_A)
        assert s.metadata.Acquisition_instrument.TEM.beam_energy == pytest.approx(200.0)
    assert by_name["ricom"].metadata.Signal.quantity == "ricom (V·Å)"
    com = by_name["com"]
    # pyxem's BeamShift: signal_type "beam_shift", signal dimension 1 (x, y), navigation = the scan
    assert com.metadata.Signal.signal_type == "beam_shift"
    assert com.axes_manager.signal_dimension == 1 and com.axes_manager.signal_shape == (2,)
    assert com.axes_manager.navigation_shape == (9, 8)
    assert [a.scale for a in com.axes_manager.navigation_axes] == pytest.approx([STEP_A, STEP_A])
    np.testing.assert_allclose(com.data[..., 0], ref["com_x"], rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(com.data[..., 1], ref["com_y"], rtol=1e-6, atol=1e-6)
    assert list(com.metadata.VectorMetadata.column_names) == ["x-shift", "y-shift"]
    assert list(com.metadata.VectorMetadata.units) == ["mrad", "mrad"]
    assert com.metadata.Signal.quantity == "com (mrad)" and attrs["kernel_size"] == 3


def test_uncalibrated_hyperspy_axes_are_scan_pixels(poisson_data):
    pytest.importorskip("hyperspy.api")
    import ricom

    snap = ricom.reconstruct(poisson_data, kernel_size=3, center_yx=(7.5, 7.5))
    signals = snap.to_hyperspy(["ricom", "com_y"])
    assert list(signals) == ["ricom", "com"]
    axis = signals["ricom"].axes_manager.signal_axes[0]
    assert (axis.scale, axis.units) == (1.0, "scan px")
    assert signals["ricom"].metadata.Signal.quantity == "ricom (px·scan px)"
    np.testing.assert_array_equal(signals["com"].data[..., 1], snap.com_y.astype(np.float32))
    again = ricom.to_hyperspy(snap, ["ricom"])  # the package-level function is the same conversion
    np.testing.assert_array_equal(again["ricom"].data, signals["ricom"].data)


def test_zspy_is_refused_before_processing(tmp_path, npy, capsys):
    pytest.importorskip("hyperspy.api")
    out = tmp_path / "result.zspy"
    assert main(["reconstruct", str(npy), "-o", str(out), "--no-progress"]) == 2
    assert "write .hspy instead" in capsys.readouterr().err
    assert not out.exists()


def test_hyperspy_output_without_hyperspy_says_how_to_get_it(tmp_path, npy, monkeypatch):
    monkeypatch.setitem(sys.modules, "hyperspy.api", None)
    with pytest.raises(SettingsError, match=r"pip install 'ricom\[hyperspy\]'"):
        outputs.load_writer(str(tmp_path / "r.hspy"))


def test_pyxem_reads_com_as_its_beam_shift(tmp_path, npy):
    pytest.importorskip("pyxem")  # not in the test extra: pyxem pins zarr 2
    hs = pytest.importorskip("hyperspy.api")
    out = tmp_path / "result.hspy"
    reconstruct(npy, out, *CAL, signals="com")
    loaded = hs.load(str(out))
    com = loaded[0] if isinstance(loaded, list) else loaded
    assert type(com).__name__ == "BeamShift" and math.isfinite(float(com.data.sum()))
