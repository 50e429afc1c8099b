"""Calibration travels with the data: what ``ricom simulate`` writes, ``reconstruct`` reads back.

Each file's sidecar is named after the whole file name (``scan.tpx3.ricom.json``), so event
files of two formats side by side keep their own; HDF5 output carries the calibration as
attributes of ``/data``.  The reference is the simulator's own calibration.
"""
from __future__ import annotations

import importlib.util
import json

import h5py
import numpy as np
import pytest

from ricom.cli.main import main


def _attrs(path):
    with h5py.File(path) as f:
        return {k: f.attrs[k] for k in ("step_A", "energy_keV", "pixel_size_mrad")}


def test_h5_from_simulate_reconstructs_calibrated(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["simulate", "-o", "scan.h5", "--scan-shape", "12", "12", "--detector-shape", "24", "24"]) == 0
    assert main(["simulate", "-o", "scan.npy", "--scan-shape", "12", "12", "--detector-shape", "24", "24"]) == 0
    side = json.loads((tmp_path / "scan.npy.ricom.json").read_text())["calibration"]
    assert main(["reconstruct", "scan.h5:/data", "-o", "h5.h5", "--no-progress"]) == 0
    assert main(["reconstruct", "scan.npy", "-o", "npy.h5", "--no-progress"]) == 0
    h5, npy = _attrs("h5.h5"), _attrs("npy.h5")
    assert h5 == npy and h5["step_A"] == side["step_A"] and h5["energy_keV"] == side["energy_keV"]
    with h5py.File("h5.h5") as a, h5py.File("npy.h5") as b:
        np.testing.assert_allclose(a["ricom"][:], b["ricom"][:], rtol=1e-9)


def test_event_files_of_two_formats_side_by_side(tmp_path, monkeypatch):
    """``scan.tpx3`` and ``scan.t3p`` in one folder: each keeps its own sidecar (the old
    shared ``scan.ricom.json`` made the second break the first)."""
    monkeypatch.chdir(tmp_path)
    for fmt in ("tpx3", "t3p"):
        assert main(["simulate", "events", "-o", f"scan.{fmt}", "--scan-shape", "8", "8", "--dose", "50"]) == 0
        assert (tmp_path / f"scan.{fmt}.ricom.json").exists()
    for fmt in ("tpx3", "t3p"):
        assert main(["reconstruct", f"scan.{fmt}", "-o", f"{fmt}.h5", "--no-progress"]) == 0, fmt
        assert _attrs(f"{fmt}.h5")["step_A"] != "none"


def test_older_stem_sidecar_still_read(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["simulate", "-o", "old.npy", "--scan-shape", "8", "8", "--detector-shape", "16", "16"]) == 0
    (tmp_path / "old.npy.ricom.json").rename(tmp_path / "old.ricom.json")
    assert main(["reconstruct", "old.npy", "-o", "r.h5", "--no-progress"]) == 0
    assert _attrs("r.h5")["step_A"] == 0.2


def test_convert_keeps_the_calibration(tmp_path, monkeypatch):
    """``ricom convert`` to .h5, .zarr and .npy: each reconstructs with the original's calibration."""
    monkeypatch.chdir(tmp_path)
    assert main(["simulate", "-o", "d.npy", "--scan-shape", "8", "8", "--detector-shape", "16", "16"]) == 0
    assert main(["reconstruct", "d.npy", "-o", "ref.h5", "--no-progress"]) == 0
    ref = _attrs("ref.h5")
    for out in ("c.h5", "c.zarr", "c.npy"):
        assert main(["convert", "d.npy", "-o", out]) == 0
        assert main(["reconstruct", out, "-o", f"r_{out}.h5", "--no-progress"]) == 0, out
        assert _attrs(f"r_{out}.h5") == ref, out
        with h5py.File(f"r_{out}.h5") as a, h5py.File("ref.h5") as b:
            np.testing.assert_allclose(a["ricom"][:], b["ricom"][:], rtol=1e-9)



@pytest.fixture
def h5_without_sidecar(tmp_path, monkeypatch):
    """A simulated .h5 whose sidecar is removed, and the calibration that sidecar held."""
    monkeypatch.chdir(tmp_path)
    assert main(["simulate", "-o", "scan.h5", "--scan-shape", "12", "12", "--detector-shape", "24", "24"]) == 0
    side = json.loads((tmp_path / "scan.h5.ricom.json").read_text())["calibration"]
    (tmp_path / "scan.h5.ricom.json").unlink()
    return "scan.h5:/data", side


def test_h5_attributes_alone_reach_info_and_the_api(h5_without_sidecar, capsys):
    """Without its sidecar a simulated .h5 still carries its calibration (attributes of
    /data): `ricom info` shows it and `ricom.reconstruct` gives V·Å with it (the reference:
    the simulator's sidecar, read before it was removed)."""
    import ricom

    name, side = h5_without_sidecar
    capsys.readouterr()
    assert main(["info", name]) == 0
    info = capsys.readouterr().out
    assert f"step_A={side['step_A']}" in info and f"energy_keV={side['energy_keV']}" in info
    snap = ricom.reconstruct(name, kernel_size=5)
    cal = snap.settings.calibration
    assert (cal.step_A, cal.pixel_size_mrad, cal.energy_keV) == (side["step_A"], side["pixel_size_mrad"],
                                                                  side["energy_keV"])
    assert snap.unit("ricom") == "V·Å" and tuple(snap.center_yx) == tuple(side["center_yx"])


@pytest.mark.skipif(not all(importlib.util.find_spec(m) for m in ("PySide6", "pyqtgraph", "pytestqt")),
                    reason="needs the gui extra and pytest-qt")
def test_the_gui_reads_the_calibration_of_a_file(h5_without_sidecar, window, qtbot):
    """The GUI opens the file as `ricom reconstruct` does: its calibration fills the settings."""
    from ricom.api import open_input

    name, side = h5_without_sidecar
    window.start_source(open_input(name))
    qtbot.waitUntil(lambda: window.worker is not None and window.worker.finished.is_set() and window.rec is not None,
                    timeout=20_000)
    cal = window.rec.settings.calibration
    assert (cal.step_A, cal.energy_keV) == (side["step_A"], side["energy_keV"])
    assert cal.pixel_size_mrad == pytest.approx(side["pixel_size_mrad"], rel=1e-9)
    assert window.rec.snapshot().unit("ricom") == "V·Å"
