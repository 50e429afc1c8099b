"""Ctrl-C is safe at every instant of ``ricom reconstruct``: start-up, processing, the save.

Each test runs the command in a child process (a small wrapper that calls
``ricom.cli.main.main`` as the ``ricom`` script does and prints markers on stderr), sends
SIGINT and checks the one invariant: either nothing was written and the command exited
130 with the one line ``ricom: interrupted`` (start-up), or the output is a valid file
(partial and marked so, or complete) — never a traceback, never "Exception ignored".
The markers pin the instants that matter (start-up, mid-processing, mid-save); a sweep
adds instants spread over a whole run.  Everything is bounded: a few seconds in all.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import h5py
import numpy as np
import pytest

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")

SRC = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src")
N = 32 * 32

WRAPPER = r'''
import os, sys, time
import ricom.cli.interrupts as interrupts
interrupts.take_over()  # as main() does first: from here on ricom handles Ctrl-C
def mark(word):
    os.write(2, (word + "\n").encode())
slow = os.environ.get("RICOM_TEST_SLOW", "")
if "start" in slow:  # mark the start-up phase of the command and linger in it
    real_enter = interrupts.Interrupts.__enter__
    def enter(self):
        out = real_enter(self)
        mark("STARTUP"); time.sleep(2.0)
        return out
    interrupts.Interrupts.__enter__ = enter
if "process" in slow:  # 5 ms per chunk of 16 patterns: about 0.3 s of processing
    import ricom.engine.pipeline as pipeline
    real_add = pipeline._Feed.add
    def add(self, chunk):
        time.sleep(0.005); real_add(self, chunk)
    pipeline._Feed.add = add
    real_keep = interrupts.Interrupts.keep
    def keep(self, *a):
        real_keep(self, *a); mark("PROCESSING")
    interrupts.Interrupts.keep = keep
if "save" in slow:  # the save takes a second
    import ricom.io.outputs as outputs
    real_save = outputs.save
    def save(*a, **k):
        mark("SAVING"); time.sleep(0.6)
        return real_save(*a, **k)
    outputs.save = save
mark("READY")
from ricom.cli.main import main
sys.exit(main())
'''


@pytest.fixture(scope="module")
def data_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("interrupts") / "in.npy"
    np.save(path, np.random.default_rng(0).poisson(2.0, (32, 32, 32, 32)).astype(np.uint16))
    return path


def start(data_file, out, slow: str = "") -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", ""),
           "RICOM_TEST_SLOW": slow}
    cmd = [sys.executable, "-c", WRAPPER, "reconstruct", str(data_file), "-o", str(out), "--no-progress",
           "--kernel-size", "5", "--center", "15.5", "15.5", "--chunk-size", "16"]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True)


def wait_for(proc: subprocess.Popen, word: str) -> list[str]:
    """Read stderr lines until ``word``; returns them."""
    seen = []
    for line in proc.stderr:
        seen.append(line.rstrip("\n"))
        if seen[-1] == word:
            return seen
    raise AssertionError(f"no {word!r} marker: {seen}")


def finish(proc: subprocess.Popen, seen: list[str]) -> tuple[int, list[str]]:
    try:
        _, err = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise
    lines = [*seen, *err.splitlines()]
    return proc.returncode, [x for x in lines if x not in ("READY", "STARTUP", "PROCESSING", "SAVING")]


def check_outcome(code: int, err: list[str], out) -> str:
    """The invariant; returns which outcome it was."""
    text = "\n".join(err)
    assert "Traceback" not in text and "Exception ignored" not in text, text
    assert not [f for f in os.listdir(os.path.dirname(out)) if f.startswith(".") and ".part" in f]
    if not os.path.exists(out):
        assert code == 130 and err == ["ricom: interrupted"], (code, err)
        return "nothing written"
    with h5py.File(out) as f:  # a valid file: readable, every signal there, marked whole or not
        n = int(f["n_patterns"][()])
        complete = bool(f.attrs["complete"])
        assert f["ricom"].shape == (32, 32) and np.isfinite(f["ricom"][()]).all()
    assert 0 < n <= N and complete == (n == N), (n, complete)
    if code == 0:
        assert complete and not [x for x in err if x.startswith("ricom:")], err
        return "done"
    assert code == 130, (code, err)
    assert [x for x in err if x.startswith("ricom:") and "finishing the save" not in x][-1].startswith(
        "ricom: interrupted"), err
    return "partial" if not complete else "complete, interrupted"


def test_ctrl_c_during_start_up_writes_nothing_and_exits_130(data_file, tmp_path):
    out = tmp_path / "o.h5"
    proc = start(data_file, out, "start")
    seen = wait_for(proc, "STARTUP")
    proc.send_signal(signal.SIGINT)
    code, err = finish(proc, seen)
    assert check_outcome(code, err, out) == "nothing written"


def test_ctrl_c_while_processing_saves_the_partial_result(data_file, tmp_path):
    out = tmp_path / "o.h5"
    proc = start(data_file, out, "process")
    seen = wait_for(proc, "PROCESSING")
    time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    code, err = finish(proc, seen)
    assert check_outcome(code, err, out) == "partial"
    assert [x for x in err if x.startswith("ricom:")] == [err[-1]]  # one line
    with h5py.File(out) as f:
        assert f.attrs["partial_reason"] == "interrupted before the end of the input"


def test_ctrl_c_during_the_save_finishes_the_file_first(data_file, tmp_path):
    out = tmp_path / "o.h5"
    proc = start(data_file, out, "save")
    seen = wait_for(proc, "SAVING")
    proc.send_signal(signal.SIGINT)
    time.sleep(0.2)
    proc.send_signal(signal.SIGINT)  # a second one says what is going on
    code, err = finish(proc, seen)
    assert check_outcome(code, err, out) == "complete, interrupted"
    assert err.count("ricom: finishing the save…") == 2
    assert err[-1].startswith("ricom: interrupted after the input was read; the complete result is saved")


def test_ctrl_c_at_instants_spread_over_a_run(data_file, tmp_path):
    out = tmp_path / "full.h5"
    t0 = time.perf_counter()
    proc = start(data_file, out)
    seen = wait_for(proc, "READY")
    ready = time.perf_counter() - t0
    code, err = finish(proc, seen)
    whole = time.perf_counter() - t0 - ready
    assert check_outcome(code, err, out) == "done"

    def one(i: int) -> str:
        os.makedirs(tmp_path / f"d{i}", exist_ok=True)
        target = tmp_path / f"d{i}" / "o.h5"
        p = start(data_file, target)
        s = wait_for(p, "READY")
        time.sleep(whole * (i + 0.5) / 6)
        p.send_signal(signal.SIGINT)
        return check_outcome(*finish(p, s), target)

    with ThreadPoolExecutor(2) as pool:
        outcomes = list(pool.map(one, range(6)))
    assert "nothing written" in outcomes  # the sweep reached start-up …
    assert set(outcomes) <= {"nothing written", "partial", "complete, interrupted", "done"}
