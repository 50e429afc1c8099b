"""One result policy for every frontend: a run that ends early keeps its result and says so.

A Merlin file damaged at frame 31 and one truncated after frame 40 go through the Python
API (`PartialResult` / ``strict=False``), the command line (exit 3, one line, the file
saved with ``complete`` false), Dask, Jupyter and the GUI; the partial images are checked
against an independent reconstruction of the frames that came before the damage.  The
documented exit-code table is checked against the code's constants.
"""
from __future__ import annotations

import os
import re
import warnings

import h5py
import numpy as np
import pytest

import ricom
from ricom.api import reconstruct_run
from ricom.cli.main import EXIT_CODES, EXIT_DONE, EXIT_PARTIAL, main
from ricom.engine.pipeline import run, scan_shortfall
from ricom.engine.reconstruction import Reconstruction
from ricom.sources.merlin.encode import encode_frames

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCAN = (8, 8)
DET = (16, 16)
KW = {"kernel_size": 5, "center_yx": (7.5, 7.5)}


@pytest.fixture(scope="module")
def frames():
    rng = np.random.default_rng(18)
    stack = rng.poisson(3.0, (64, *DET)).astype(np.uint16)
    stack[:, 4:9, 5:12] += 20  # a bright-field disc off centre: COM differs from 0
    return stack


def damaged(folder, frames, bad: int = 31) -> str:
    """A .mib whose frame ``bad`` (1-based) has no MIB header: 30 good frames before it."""
    blob = bytearray(encode_frames(frames, 12, False))
    size = len(blob) // len(frames)
    blob[(bad - 1) * size:(bad - 1) * size + 3] = b"BAD"
    path = os.path.join(folder, "damaged.mib")
    with open(path, "wb") as fh:
        fh.write(bytes(blob))
    return path


def truncated(folder, frames, keep: int = 40) -> str:
    """A .mib cut in the middle of frame ``keep + 1``; the scan shape is given."""
    blob = encode_frames(frames, 12, False)
    size = len(blob) // len(frames)
    path = os.path.join(folder, "cut.mib")
    with open(path, "wb") as fh:
        fh.write(blob[:keep * size + size // 2])
    return path


def first_frames(frames, n: int):
    """Independent reference: the first ``n`` frames as an in-memory stack, gaps intended."""
    result, _, _ = reconstruct_run(frames[:n], source_options={"scan_shape": SCAN, "pad": True}, **KW)
    assert result.complete  # pad: the gaps are intended
    return result.snapshot


def test_damaged_file_raises_partial_result_carrying_the_snapshot(tmp_path, frames):
    path = damaged(str(tmp_path), frames)
    with pytest.raises(ricom.PartialResult, match=r"partial \(30 patterns\).*frame 31.*strict=False") as info:
        ricom.reconstruct(path, scan_shape=SCAN, **KW)
    snap = info.value.snapshot
    assert isinstance(info.value, ricom.RicomError) and "frame 31" in info.value.reason
    assert snap.n_patterns == 30 and not snap.complete and snap.reason == info.value.reason
    ref = first_frames(frames, 30)
    np.testing.assert_allclose(snap.ricom, ref.ricom, rtol=1e-6, atol=1e-9)
    np.testing.assert_array_equal(snap.hits, ref.hits)

    loose = ricom.reconstruct(path, scan_shape=SCAN, strict=False, **KW)
    assert loose.n_patterns == 30 and loose.complete is False and "frame 31" in loose.reason


def test_truncated_file_is_partial_unless_padding_was_asked_for(tmp_path, frames):
    path = truncated(str(tmp_path), frames)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the reader's own "incomplete acquisition" warning
        with pytest.raises(ricom.PartialResult, match="24 of 64 scan positions received no pattern") as info:
            ricom.reconstruct(path, scan_shape=SCAN, **KW)
        assert info.value.snapshot.n_patterns == 40
        np.testing.assert_allclose(info.value.snapshot.ricom, first_frames(frames, 40).ricom, rtol=1e-6, atol=1e-9)
        result, _, _ = reconstruct_run(path, source_options={"scan_shape": SCAN, "pad": True}, **KW)
    assert result.complete and result.snapshot.complete and result.snapshot.n_patterns == 40


def test_complete_file_is_complete(tmp_path, frames):
    path = os.path.join(str(tmp_path), "whole.mib")
    with open(path, "wb") as fh:
        fh.write(encode_frames(frames, 12, False))
    snap = ricom.reconstruct(path, scan_shape=SCAN, **KW)
    assert snap.complete and snap.reason is None and snap.n_patterns == 64


def test_shortfall_counts_missing_and_unevenly_visited_positions():
    settings = ricom.make_settings(**KW)
    rec = Reconstruction(SCAN, DET, settings)
    data = np.random.default_rng(1).poisson(2.0, (64, *DET)).astype(np.uint16)
    rec.process_frames(data[:50], positions=np.arange(50))
    assert scan_shortfall(rec) == ("the input ended before the scan was complete: 14 of 64 scan positions "
                                   "received no pattern")
    rec.process_frames(data[50:], positions=np.arange(50, 64))
    assert scan_shortfall(rec) is None
    rec.process_frames(data[:10], positions=np.arange(10))  # a second pass cut short
    assert "54 of 64 scan positions received fewer patterns" in scan_shortfall(rec)
    bad = data[:2].astype(np.float32)
    bad[:, 0, 0] = np.nan  # patterns skipped as invalid are not "missing"
    rec2 = Reconstruction(SCAN, DET, settings)
    rec2.process_frames(np.concatenate([bad, data[2:].astype(np.float32)]), positions=np.arange(64))
    assert rec2.n_invalid == 2 and scan_shortfall(rec2) is None


def test_stop_request_marks_the_snapshot_partial(frames):
    import threading

    from ricom.sources.arrays import ArraySource

    stop = threading.Event()
    stop.set()
    rec = Reconstruction(SCAN, DET, ricom.make_settings(**KW))
    result = run(ArraySource(frames.reshape(*SCAN, *DET)), rec, chunk_size=16, stop=stop, full_scan=True)
    assert result.interrupted and not result.complete and result.snapshot.n_patterns == 16
    assert not result.snapshot.complete and result.snapshot.reason == result.reason == (
        "interrupted before the end of the input")


@pytest.mark.parametrize("case", ["damaged", "truncated"])
def test_cli_saves_partial_result_exits_3_with_one_line(tmp_path, frames, case, capsys):
    path = damaged(str(tmp_path), frames) if case == "damaged" else truncated(str(tmp_path), frames)
    out = tmp_path / "r.h5"
    rc = main(["reconstruct", path, "-o", str(out), "--scan-shape", "8", "8", "--kernel-size", "5",
               "--center", "7.5", "7.5", "--no-progress"])
    err = [line for line in capsys.readouterr().err.splitlines() if not line.startswith("ricom: warning:")]
    n = 30 if case == "damaged" else 40
    assert rc == EXIT_PARTIAL == 3
    assert len(err) == 1 and err[0].startswith("ricom: error: ") and f"({n} patterns) is saved in" in err[0]
    assert ("frame 31" if case == "damaged" else "24 of 64 scan positions") in err[0]
    with h5py.File(out) as f:
        assert f.attrs["complete"] == False and f.attrs["n_patterns"] == n  # noqa: E712 (numpy bool)
        assert f.attrs["partial_reason"] and f.attrs["partial_reason"] in err[0]
        np.testing.assert_allclose(f["ricom"][()], first_frames(frames, n).ricom, rtol=1e-6, atol=1e-9)


def test_cli_truncated_file_with_scan_pad_is_done(tmp_path, frames, capsys):
    out = tmp_path / "r.h5"
    rc = main(["reconstruct", truncated(str(tmp_path), frames), "-o", str(out), "--scan-shape", "8", "8",
               "--scan-pad", "--kernel-size", "5", "--center", "7.5", "7.5", "--no-progress"])
    assert rc == EXIT_DONE
    with h5py.File(out) as f:
        assert f.attrs["complete"] == True and f.attrs["partial_reason"] == ""  # noqa: E712


def test_documented_exit_codes_are_the_code_s():
    with open(os.path.join(ROOT, "docs", "conventions.md"), encoding="utf-8") as fh:
        text = fh.read()
    section = text[text.index("## Exit codes"):]
    rows = dict(re.findall(r"^\| (\d+) \| (.+?) \|$", section, flags=re.M))
    assert {int(k): v for k, v in rows.items()} == EXIT_CODES
    with open(os.path.join(ROOT, "src", "ricom", "cli", "main.py"), encoding="utf-8") as fh:
        assert not re.search(r"return \d+\b", fh.read())  # every status through a named constant


def test_jupyter_view_shows_a_partial_banner(tmp_path, frames):
    from ricom.jupyter import live_reconstruct, snapshot_figure

    live = live_reconstruct(damaged(str(tmp_path), frames), source_options={"scan_shape": SCAN}, widgets=False,
                            signals=("ricom",), **KW)
    snap = live.snapshot()
    assert live.result is not None and not live.result.complete
    assert snap.complete is False and "frame 31" in snap.reason and snap.n_patterns == 30
    title = live.view.figure()._suptitle.get_text()
    assert title.startswith("⚠ partial result (30 patterns):") and "frame 31" in title
    whole = ricom.reconstruct(frames.reshape(*SCAN, *DET), **KW)
    assert snapshot_figure(whole)._suptitle is None  # no banner on a whole result


def test_dask_client_follows_the_same_policy(tmp_path, frames):
    pytest.importorskip("distributed")
    from ricom.dask.client import reconstruct_distributed

    path = damaged(str(tmp_path), frames)
    with pytest.raises(ricom.PartialResult, match="frame 31") as info:
        reconstruct_distributed(path, client="local:1", scan_shape=SCAN, kernels=[5, 3], **KW)
    assert [s.n_patterns for s in info.value.snapshots] == [30, 30]
    assert not any(s.complete for s in info.value.snapshots)
