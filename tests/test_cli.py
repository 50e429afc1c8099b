"""The command line as a user runs it: outputs, units, and one-line errors on bad input."""
from __future__ import annotations

import os
import subprocess
import sys

import h5py
import numpy as np
import pytest
import tifffile

import reference as ref
from ricom.cli.main import main


@pytest.fixture
def npy(tmp_path, poisson_data):
    path = tmp_path / "data.npy"
    np.save(path, poisson_data)
    return path


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "ricom", *map(str, args)], capture_output=True, text=True)


def test_reconstruct_h5_has_every_signal_and_the_parameters(tmp_path, npy, poisson_data):
    out = tmp_path / "out.h5"
    rc = main(["reconstruct", str(npy), "-o", str(out), "--kernel-size", "5", "--center", "7.5", "7.5",
               "--signals", "ricom,icom,com,vadf,vbf,divergence,curl", "--virtual-detector", "3", "8",
               "--no-progress"])
    assert rc == 0
    with h5py.File(out) as f:
        assert {"ricom", "icom", "com_x", "com_y", "vadf", "vbf", "divergence", "curl"} <= set(f)
        assert int(f["n_patterns"][()]) == 72 and f.attrs["n_patterns"] == 72
        assert float(f["seconds_processing"][()]) > 0
        assert f.attrs["kernel_size"] == 5
        cx, cy = ref.com_maps(poisson_data, (7.5, 7.5))
        np.testing.assert_allclose(f["ricom"][()], ref.ricom(cx, cy, 5), atol=1e-12)
        np.testing.assert_allclose(f["vadf"][()], ref.annulus_sum(poisson_data, (7.5, 7.5), 3, 8))
        np.testing.assert_allclose(f["vbf"][()], ref.annulus_sum(poisson_data, (7.5, 7.5), 0, 3))
    assert [p.name for p in tmp_path.iterdir()] == sorted(["data.npy", "out.h5"]) or len(list(tmp_path.iterdir())) == 2


@pytest.mark.parametrize("ext", [".npy", ".tif", ".png"])
def test_other_outputs(tmp_path, npy, poisson_data, ext):
    out = tmp_path / f"out{ext}"
    assert main(["reconstruct", str(npy), "-o", str(out), "--kernel-size", "3", "--center", "7.5", "7.5",
                 "--signals", "ricom", "--no-progress"]) == 0
    cx, cy = ref.com_maps(poisson_data, (7.5, 7.5))
    if ext == ".npy":
        np.testing.assert_allclose(np.load(out), ref.ricom(cx, cy, 3), atol=1e-12)
    elif ext == ".tif":
        img = tifffile.imread(out)
        assert img.dtype == np.float32
        np.testing.assert_allclose(img, ref.ricom(cx, cy, 3), rtol=1e-5, atol=1e-5)
    else:
        assert out.read_bytes()[:4] == b"\x89PNG"


def test_3d_stack_with_scan_shape_and_flyback(tmp_path, poisson_data):
    frames = poisson_data.reshape(8, 9, 16, 16)
    with_flyback = np.concatenate([frames, np.zeros((8, 1, 16, 16), np.uint16)], axis=1).reshape(-1, 16, 16)
    stack = np.concatenate([np.zeros((3, 16, 16), np.uint16), with_flyback])
    path = tmp_path / "stack.npy"
    np.save(path, stack)
    out = tmp_path / "o.h5"
    assert main(["reconstruct", str(path), "--scan-shape", "8", "9", "--skip-frames", "3", "--flyback-frames", "1",
                 "--kernel-size", "5", "--center", "7.5", "7.5", "-o", str(out), "--no-progress"]) == 0
    cx, cy = ref.com_maps(poisson_data, (7.5, 7.5))
    with h5py.File(out) as f:
        np.testing.assert_allclose(f["ricom"][()], ref.ricom(cx, cy, 5), atol=1e-12)


def bad_inputs(tmp_path, poisson_data):
    np.save(tmp_path / "two_d.npy", np.zeros((4, 4)))
    (tmp_path / "empty.npy").write_bytes(b"")
    np.save(tmp_path / "good.npy", poisson_data)
    np.save(tmp_path / "zero.npy", np.zeros((0, 3, 16, 16)))
    return tmp_path


@pytest.mark.parametrize("args,message", [
    (["two_d.npy"], "expected a 4D"),
    (["empty.npy"], "not a readable .npy"),
    (["zero.npy"], "no patterns"),
    (["missing.npy"], "does not exist"),
    (["good.npy", "--kernel-size", "4"], "odd integer"),
    (["good.npy", "--kernel-size", "501"], "larger than needed"),
    (["good.npy", "--center", "40", "3"], "outside the 16×16 detector"),
    (["good.npy", "--center", "x"], "--center"),
    (["good.npy", "--signals", "ricom,nonsense"], "unknown signal"),
    (["good.npy", "--rotation", "abc"], "--rotation"),
    (["good.npy", "-o", "nowhere/out.h5"], "does not exist"),
    (["good.npy", "-o", "out.xyz"], "unknown extension"),
    (["good.npy", "--filter", "0.3", "0.1"], "band-pass"),
    (["good.npy", "--filter", "0.1", "1", "--filter-unit", "inv_A"], "needs the scan step"),
])
def test_bad_input_gives_one_line_and_nonzero_exit(tmp_path, poisson_data, args, message, monkeypatch):
    bad_inputs(tmp_path, poisson_data)
    monkeypatch.chdir(tmp_path)
    before = set(os.listdir(tmp_path))
    pr = run_cli("reconstruct", *args, *([] if "-o" in args else ["-o", "out.h5"]))
    assert pr.returncode == 2, pr.stderr
    lines = pr.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ricom: error:") and message in lines[0], pr.stderr
    assert set(os.listdir(tmp_path)) == before  # nothing half-written


def test_unwritable_output_leaves_nothing(tmp_path, npy):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        if os.access(locked, os.W_OK):
            pytest.skip("running as a user who can write anywhere")
        pr = run_cli("reconstruct", npy, "-o", locked / "o.h5")
        assert pr.returncode == 2 and "not writable" in pr.stderr
        assert not list(locked.iterdir())
    finally:
        locked.chmod(0o700)


def test_unwritable_output_is_refused_before_processing(tmp_path, npy, monkeypatch):
    from ricom.io import outputs
    monkeypatch.setattr(outputs.os, "access", lambda *a: False)
    assert main(["reconstruct", str(npy), "-o", str(tmp_path / "o.h5")]) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data.npy"]


def test_failure_while_writing_leaves_no_partial_file(tmp_path, npy, monkeypatch):
    from ricom.io import outputs

    def boom(*a, **k):
        raise RuntimeError("disk full")

    monkeypatch.setattr(outputs, "write_tiff", boom)
    with pytest.raises(RuntimeError):
        main(["reconstruct", str(npy), "-o", str(tmp_path / "o.tif"), "--no-progress", "--center", "7.5", "7.5"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data.npy"]


def test_nan_patterns_warn_and_still_write(tmp_path, poisson_data):
    data = poisson_data.astype(np.float32)
    data[0, 0, 0, 0] = np.nan
    np.save(tmp_path / "nan.npy", data)
    pr = run_cli("reconstruct", tmp_path / "nan.npy", "-o", tmp_path / "o.h5", "--center", "7.5", "7.5")
    assert pr.returncode == 0
    assert "1 patterns contained NaN" in pr.stderr
    with h5py.File(tmp_path / "o.h5") as f:
        assert f.attrs["n_invalid_patterns"] == 1 and np.isfinite(f["ricom"][()]).all()


def test_python_dash_m_and_console_script_agree(tmp_path, npy):
    pr = run_cli("--version")
    assert pr.returncode == 0 and pr.stdout.startswith("ricom ")


def test_filter_in_inverse_angstrom_equals_cycles_per_pixel(tmp_path, npy):
    a, b = tmp_path / "a.npy", tmp_path / "b.npy"
    common = ["--kernel-size", "5", "--center", "7.5", "7.5", "--signals", "ricom", "--no-progress"]
    assert main(["reconstruct", str(npy), "-o", str(a), "--filter", "0.05", "0.3", *common]) == 0
    assert main(["reconstruct", str(npy), "-o", str(b), "--filter", "0.1", "0.6", "--filter-unit", "inv_A",
                 "--step", "0.5", *common]) == 0
    # same band in cycles/pixel; b's riCOM carries the step (0.5 Å) as its distance unit
    np.testing.assert_allclose(np.load(b), 0.5 * np.load(a), rtol=1e-12)


def test_frame_count_mismatch_needs_pad_or_crop(tmp_path, poisson_data):
    stack = poisson_data.reshape(-1, 16, 16)
    np.save(tmp_path / "long.npy", np.concatenate([stack, stack[:3]]))
    np.save(tmp_path / "short.npy", stack[:-5])
    common = ["--scan-shape", "8", "9", "--kernel-size", "3", "--no-progress", "--signals", "ricom"]
    for name, flag in (("long", "--scan-crop"), ("short", "--scan-pad")):
        pr = run_cli("reconstruct", tmp_path / f"{name}.npy", "-o", tmp_path / f"{name}.h5", *common)
        assert pr.returncode == 2 and flag in pr.stderr, pr.stderr
        assert main(["reconstruct", str(tmp_path / f"{name}.npy"), "-o", str(tmp_path / f"{name}.h5"), flag,
                     *common]) == 0
        with h5py.File(tmp_path / f"{name}.h5") as f:
            assert f.attrs["n_patterns"] == (72 if name == "long" else 67)


def test_outputs_get_normal_permissions(tmp_path, npy):
    out = tmp_path / "o.h5"
    assert main(["reconstruct", str(npy), "-o", str(out), "--no-progress", "--kernel-size", "3"]) == 0
    assert out.stat().st_mode & 0o044  # readable by group/others like any file the user makes
