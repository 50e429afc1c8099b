"""tcBF and SSB as signals of a run: one pass with riCOM from the command line (file and
live Merlin stream) and from `ricom.reconstruct`, equal to the stand-alone reconstructions
(`reconstruct_tcbf`, `ssb_offline`); refusals before anything is read; partial runs keep
them, flagged partial."""
from __future__ import annotations

import os
import subprocess
import sys

import h5py
import numpy as np
import pytest

import ricom
from ricom.api import reconstruct_run
from ricom.cli.main import main
from ricom.core.errors import SettingsError
from ricom.core.params import Calibration, DetectorGeometry
from ricom.phase.methods import auto_bin_factor, phase_methods
from ricom.phase.ssb import SsbOptions, ssb_offline
from ricom.phase.tcbf import TcbfSettings, reconstruct_tcbf
from ricom.simulators.merlin.server import MerlinServer
from ricom.simulators.specimen import SimulationParams, simulate
from ricom.sources.merlin.encode import encode_frames

SCAN, DET, DEFOCUS = (24, 24), (32, 32), 100.0


@pytest.fixture(scope="module")
def sim():
    s = simulate(SimulationParams(scan_shape=SCAN, detector_shape=DET, defocus_A=DEFOCUS))
    counts = np.round(s.data * 4000).astype(np.uint16)  # whole counts, as a detector sends them
    return s, counts


def calibration(s) -> Calibration:
    return Calibration(0.2, s.pixel_size_mrad, 300.0)


def flags(s) -> list[str]:
    return ["--step", "0.2", "--pixel-size-mrad", repr(s.pixel_size_mrad), "--energy-kev", "300",
            "--center", "16", "16", "--kernel-size", "7", "--no-progress"]


@pytest.fixture(scope="module")
def npy(sim, tmp_path_factory):
    path = tmp_path_factory.mktemp("phase") / "data.npy"
    np.save(path, sim[1])
    return str(path)


def test_cli_one_pass_equals_the_stand_alone_reconstructions(sim, npy, tmp_path, capsys):
    s, counts = sim
    out = tmp_path / "r.h5"
    rc = main(["reconstruct", npy, "-o", str(out), "--signals", "ricom,tcbf,ssb,vadf", "--convergence-mrad", "20",
               "--defocus", str(DEFOCUS), "--ssb-bin", "2", *flags(s)])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    assert "SSB live: 24×24 scan, 16×16 binned patterns" in captured.err  # the plan, before the run
    assert "tcBF defocus" in captured.out  # the fit in the summary line
    geometry = DetectorGeometry(center_yx=(16.0, 16.0))
    tcbf = reconstruct_tcbf(counts, TcbfSettings(), calibration(s), geometry).get_results()
    ssb = ssb_offline(counts.astype(np.float64), SsbOptions(20.0, DEFOCUS, bin_factor=2), calibration(s), geometry)
    plain = ricom.reconstruct(counts, kernel_size=7, center_yx=(16, 16), step_A=0.2,
                              pixel_size_mrad=s.pixel_size_mrad, energy_keV=300.0)
    with h5py.File(out) as f:
        np.testing.assert_allclose(f["tcbf"][()], tcbf["tcbf"], rtol=1e-6, atol=1e-9)
        np.testing.assert_allclose(f["ssb"][()], ssb.image, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(f["ricom"][()], plain.ricom, rtol=1e-12)  # riCOM unchanged beside them
        assert f["tcbf"].attrs["unit"] == "relative contrast" and f["ssb"].attrs["unit"] == "rad"
        assert f.attrs["tcbf_defocus_A"] == pytest.approx(tcbf["defocus_A"], rel=1e-9)
        assert f.attrs["tcbf_defocus_A_sigma"] == pytest.approx(tcbf["defocus_A_sigma"], rel=1e-9)
        assert abs(f.attrs["tcbf_defocus_A"] - DEFOCUS) < 5.0 and f.attrs["ssb_defocus_A"] == DEFOCUS
        assert f.attrs["complete"]


def test_api_returns_them_and_ssb_takes_the_tcbf_fit(sim):
    s, counts = sim
    snap = ricom.reconstruct(counts, signals=["tcbf", "ssb"], convergence_mrad=20.0, ssb_bin_factor=2,
                             center_yx=(16, 16), step_A=0.2, pixel_size_mrad=s.pixel_size_mrad, energy_keV=300.0)
    fitted = snap.metadata["tcbf_defocus_A"]
    assert abs(fitted - DEFOCUS) < 5.0 and snap.metadata["ssb_defocus_source"] == "tcbf fit"
    assert snap.metadata["ssb_defocus_A"] == fitted
    m = snap.metadata
    options = SsbOptions(20.0, fitted, m["tcbf_astigmatism_A"], m["tcbf_astigmatism_angle_deg"], bin_factor=2)
    ssb = ssb_offline(counts.astype(np.float64), options, calibration(s),
                      DetectorGeometry(center_yx=(16.0, 16.0)))
    np.testing.assert_allclose(snap.ssb, ssb.image, rtol=1e-9, atol=1e-12)
    assert snap.tcbf.shape == SCAN and snap.signal("tcbf") is not None and snap.unit("ssb") == "rad"
    settings = TcbfSettings(fit="given", defocus_A=DEFOCUS)
    given = ricom.reconstruct(counts, tcbf=settings, center_yx=(16, 16), step_A=0.2,
                              pixel_size_mrad=s.pixel_size_mrad, energy_keV=300.0)
    ref = reconstruct_tcbf(counts, settings, calibration(s), DetectorGeometry(center_yx=(16.0, 16.0)))
    np.testing.assert_allclose(given.tcbf, ref.get_results()["tcbf"], rtol=1e-6, atol=1e-9)
    with pytest.raises(SettingsError, match="'ssb' was not computed"):
        given.signal("ssb")


def test_missing_knowledge_is_one_line_naming_the_parameter():
    with pytest.raises(SettingsError) as exc:
        phase_methods(["ssb"])
    assert "convergence_mrad" in str(exc.value) and exc.value.parameters == ("convergence_mrad",)
    with pytest.raises(SettingsError) as exc:
        phase_methods(["tcbf"], tcbf_fit="given")
    assert exc.value.parameters[0] == "defocus_A"
    assert phase_methods(["ricom"]).names == () and auto_bin_factor((256, 256)) == 4


@pytest.mark.parametrize("extra, says", [
    ([], "give --convergence-mrad MRAD"),
    (["--convergence-mrad", "20", "--ssb-max-memory-gb", "1e-5"], "bin the detector more with --ssb-bin PX"),
])
def test_cli_refusals_are_one_line_exit_2_and_write_nothing(sim, npy, tmp_path, capsys, extra, says):
    out = tmp_path / "r.h5"
    rc = main(["reconstruct", npy, "-o", str(out), "--signals", "ricom,ssb", *extra, *flags(sim[0])])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and err[0].startswith("ricom: error: ") and says in err[0], err
    assert not out.exists() and not [p for p in os.listdir(tmp_path) if p.startswith(".r.h5")]


def test_a_truncated_file_keeps_tcbf_and_ssb_flagged_partial(sim, tmp_path, capsys):
    s, counts = sim
    frames = counts.reshape(-1, *DET)
    blob = encode_frames(frames, 12, False)
    size, keep = len(blob) // len(frames), 400
    path = tmp_path / "cut.mib"
    path.write_bytes(blob[:keep * size + size // 2])
    out = tmp_path / "r.h5"
    rc = main(["reconstruct", str(path), "-o", str(out), "--scan-shape", *map(str, SCAN), "--signals",
               "ricom,tcbf,ssb", "--tcbf-fit", "given", "--defocus", str(DEFOCUS), "--convergence-mrad", "20",
               *flags(s)])
    assert rc == 3, capsys.readouterr().err
    result, _, _ = reconstruct_run(frames[:keep], source_options={"scan_shape": SCAN, "pad": True}, kernel_size=7,
                                   center_yx=(16, 16), step_A=0.2, pixel_size_mrad=s.pixel_size_mrad,
                                   energy_keV=300.0, tcbf=TcbfSettings(fit="given", defocus_A=DEFOCUS),
                                   ssb=SsbOptions(20.0, DEFOCUS))  # the frames that arrived, gaps intended
    first = result.snapshot
    with h5py.File(out) as f:
        assert not f.attrs["complete"] and f.attrs["n_patterns"] == keep and f.attrs["partial_reason"]
        assert np.abs(f["tcbf"][()]).max() > 0 and np.abs(f["ssb"][()]).max() > 0
        np.testing.assert_allclose(f["tcbf"][()], first.tcbf, rtol=1e-6, atol=1e-9)
        np.testing.assert_allclose(f["ssb"][()], first.ssb, rtol=1e-9, atol=1e-12)


def test_cli_refuses_phase_methods_on_a_dask_cluster(npy, tmp_path, capsys):
    rc = main(["reconstruct", npy, "-o", str(tmp_path / "r.h5"), "--signals", "tcbf", "--cluster", "local:1",
               "--no-progress"])
    assert rc == 2 and "leave out --cluster" in capsys.readouterr().err


def test_live_merlin_gives_the_same_as_the_file(sim, npy, tmp_path):
    s, counts = sim
    file_out, live_out = tmp_path / "file.h5", tmp_path / "live.h5"
    args = ["--signals", "ricom,tcbf", *flags(s)]
    assert main(["reconstruct", npy, "-o", str(file_out), *args]) == 0
    with MerlinServer(counts.reshape(-1, *DET), scan_shape=SCAN, data_port=0, control_port=None,
                      start_on="connect") as server:
        res = subprocess.run([sys.executable, "-m", "ricom", "live", "merlin", "--data-port", str(server.data_port),
                              "--timeout", "20", "--chunk-size", "100", "-o", str(live_out), *args],
                             capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert "tcBF defocus" in res.stdout
    with h5py.File(file_out) as f, h5py.File(live_out) as g:
        for name in ("ricom", "tcbf"):
            np.testing.assert_allclose(g[name][()], f[name][()], rtol=1e-6, atol=1e-9)
        assert g.attrs["tcbf_defocus_A"] == pytest.approx(f.attrs["tcbf_defocus_A"], rel=1e-9)


def test_the_phase_contrast_page_command_lines_run(tmp_path, monkeypatch):
    """The console lines of docs/howto/phase-contrast.md (the page's Python runs in test_docs)."""
    from test_docs import DOCS, blocks, commands, run_console_line, stop_background

    monkeypatch.chdir(tmp_path)
    with open(os.path.join(DOCS, "howto", "phase-contrast.md"), encoding="utf-8") as fh:
        text = fh.read()
    lines = [(cmd, line) for lang, code, line in blocks(text) if lang == "console" for cmd in commands(code)]
    assert len(lines) >= 4
    try:
        for cmd, line in lines:
            run_console_line(cmd, f"phase-contrast.md:{line}", main)
    finally:
        stop_background()
    with h5py.File(tmp_path / "all.h5") as f, h5py.File(tmp_path / "live.h5") as g:
        assert {"ricom", "tcbf", "ssb", "vadf"} <= set(f) and {"ricom", "tcbf"} <= set(g)
        assert abs(f.attrs["tcbf_defocus_A"] - 100.0) < 5.0 and abs(g.attrs["tcbf_defocus_A"] - 100.0) < 5.0


def test_live_timepix3_refuses_tcbf_before_connecting(tmp_path, capsys):
    """Events carry no whole patterns: the refusal comes before any socket is opened (port 1 is never tried)."""
    out = tmp_path / "live.h5"
    code = main(["live", "timepix3", "--raw", "--host", "127.0.0.1", "--port", "1", "--scan-shape", "8", "8",
                 "--signals", "ricom,tcbf", "-o", str(out)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "tcBF needs whole patterns" in err and "--signals" in err
    assert not out.exists()
