"""Progress of long commands (a bar on a terminal, lines when piped, one summary line) and
the same words for the same thing everywhere (flip yes/no)."""
from __future__ import annotations

import io
import os
import re
import subprocess
import sys

import numpy as np
import pytest

from ricom.core.progress import Progress, count_text, yes_no

LINE = re.compile(r"^ricom: simulate: (\d+) % \(([\d ]+)/([\d ]+) patterns, \d+ s\)$")


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_piped_progress_writes_a_line_every_interval_and_a_summary():
    out, clock = io.StringIO(), Clock()
    p = Progress("convert", 1000, "frames", stream=out, every_s=5.0, clock=clock)
    for _ in range(10):  # 100 frames per second for 10 s
        clock.t += 1.0
        p.update(100)
    p.close()
    lines = out.getvalue().splitlines()
    assert lines == ["ricom: convert: 50 % (500/1 000 frames, 5 s)", "ricom: convert: 100 % (1 000/1 000 frames, 10 s)"]
    assert p.summary("wrote x.h5") == "ricom convert: 1 000 frames in 10.0 s (100 frames/s); wrote x.h5"
    clock.t += 50  # the clock stops at close
    assert p.seconds == 10.0


def test_progress_without_a_total_and_silent_progress():
    out, clock = io.StringIO(), Clock()
    p = Progress("info", None, "events", stream=out, every_s=1.0, clock=clock)
    clock.t += 2
    p.update(12345, "chip 2")
    assert out.getvalue() == "ricom: info: (12 345 events, 2 s; chip 2)\n"
    quiet = io.StringIO()
    q = Progress("x", 10, stream=quiet, every_s=0.0, show=False, clock=clock)
    q.update(10)
    assert quiet.getvalue() == "" and q.n == 10


def test_on_a_terminal_a_bar_that_vanishes():
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    term = Terminal()
    with Progress("simulate", 8, stream=term) as p:
        p.update(8)
        assert p.bar is not None
    assert "simulate" in term.getvalue() and p.bar is None
    written = term.getvalue()
    assert written.endswith("\r") and not written.split("\r")[-2].strip()  # leave=False: the bar is wiped
    assert "8/8" in written or "0/8" in written  # whole units below 10 000


def test_interval_from_the_environment(monkeypatch):
    from ricom.core.progress import every_s
    monkeypatch.setenv("RICOM_PROGRESS_EVERY_S", "0.25")
    assert every_s() == 0.25
    monkeypatch.setenv("RICOM_PROGRESS_EVERY_S", "soon")
    assert every_s() == 5.0


def test_count_text_and_yes_no():
    assert count_text(26000) == "26 000" and count_text(65536) == "65 536" and count_text(7) == "7"
    assert [yes_no(v) for v in (True, np.bool_(False), None)] == ["yes", "no", "unknown"]


def test_a_piped_simulate_emits_progress_lines_and_one_summary(tmp_path):
    """`ricom simulate` as a user pipes it into a log (interval shortened from 5 s to 0.1 ms, so that
    every chunk of 64 patterns is reported however fast the machine)."""
    out = tmp_path / "scan.npy"
    env = {**os.environ, "RICOM_PROGRESS_EVERY_S": "0.0001"}
    proc = subprocess.run([sys.executable, "-m", "ricom", "simulate", "-o", str(out), "--scan-shape", "16", "16",
                           "--detector-shape", "128", "128"], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    lines = [m for m in map(LINE.match, proc.stderr.splitlines()) if m]
    assert len(lines) >= 2, proc.stderr
    done = [int(m.group(2).replace(" ", "")) for m in lines]
    assert done == sorted(done) and all(m.group(3) == "256" for m in lines)
    assert all(int(m.group(1)) == round(100 * d / 256) for m, d in zip(lines, done, strict=True))
    summary = proc.stdout.strip().splitlines()
    assert len(summary) == 1
    rate = r"[\d .]+ patterns/s"
    assert re.fullmatch(rf"ricom simulate: 256 patterns in [\d.]+ s \({rate}\); wrote {re.escape(str(out))} "
                        r"\(16×16×128×128 float32\) and .*scan\.npy\.ricom\.json", summary[0]), summary[0]
    assert np.load(out).shape == (16, 16, 128, 128)


def test_a_piped_convert_and_report_end_with_a_summary(tmp_path, capsys):
    from ricom.cli.main import main

    np.save(tmp_path / "x.npy", np.ones((4, 5, 8, 8), np.uint16))
    assert main(["convert", str(tmp_path / "x.npy"), "-o", str(tmp_path / "y.h5")]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert re.fullmatch(r"ricom convert: 20 frames in [\d.]+ s \(.*\); wrote 20 patterns to .*y\.h5 \(4×5×8×8\)",
                        out[-1])


# ---------------------------------------------------------------------- the same words
FLIPPED = {"scan_shape": (24, 24), "detector_shape": (32, 32), "rotation_deg": -75.0, "flip": True}


@pytest.fixture(scope="module")
def flipped(tmp_path_factory):
    from ricom.simulators.specimen import SimulationParams, simulate

    path = tmp_path_factory.mktemp("flip") / "flipped.npy"
    np.save(path, simulate(SimulationParams(**FLIPPED)).data)
    return path


def test_flip_is_written_yes_by_reconstruct_calibrate_and_info(flipped, tmp_path, capsys):
    from ricom.cli.info import format_description
    from ricom.cli.main import main

    assert main(["calibrate", str(flipped), "--no-progress"]) == 0
    calibrate = capsys.readouterr().out
    assert "flip: yes" in calibrate and "--flip yes" in calibrate
    assert main(["reconstruct", str(flipped), "-o", str(tmp_path / "r.h5"), "--rotation", "auto",
                 "--no-progress"]) == 0
    reconstruct = capsys.readouterr().err
    assert "flip: yes" in reconstruct and "True" not in reconstruct
    info = format_description({"calibration_in_file": {"rotation_deg": 12.0, "flip": True}, "flip": False})
    assert "flip=yes" in info and re.search(r"^flip:\s+no$", info, re.M)


def test_calibrate_with_the_wrong_flip_says_the_data_look_flipped(flipped, capsys):
    from ricom.cli.main import main

    assert main(["calibrate", str(flipped), "--flip", "no", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "the data look flipped" in out and "try --flip yes" in out and "vacuum" not in out
    assert main(["calibrate", str(flipped), "--flip", "yes", "--no-progress"]) == 0
    assert "flip: yes" in capsys.readouterr().out


def test_python_names_the_flip_as_a_keyword():
    from ricom.calibration.rotation import find_rotation
    from ricom.core.geometry import Matrix2

    y, x = np.mgrid[0:32, 0:32] * 0.6
    v = np.exp(2 * np.cos(x) + 2 * np.cos(y))
    gx, gy = -2 * v * np.sin(x), -2 * v * np.sin(y)  # COM = +∇V
    dx, dy = Matrix2.flip_x().apply(*Matrix2.rotation(-30).apply(gx, gy))  # recorded mirrored
    assert find_rotation(dx, dy).flip is True
    wrong = find_rotation(dx, dy, flip=False)
    assert not wrong.determined and "look flipped" in wrong.reason and "flip=True" in wrong.reason
    right = find_rotation(gx, gy, flip=True)  # unmirrored data with the flip forced on
    assert not right.determined and "look not flipped" in right.reason and "flip=False" in right.reason


# ---------------------------------------------------------------------- info of event files
@pytest.mark.parametrize("ext", ["tpx3", "t3p", "h5"])
def test_info_shows_events_as_events(tmp_path, ext, capsys):
    from ricom.cli.main import main

    rng = np.random.default_rng(4)
    counts = rng.poisson(0.05, (6, 5, 16, 16)).astype(np.uint16)  # an independent count of electrons
    np.save(tmp_path / "c.npy", counts)
    path = str(tmp_path / f"s.{ext}")
    assert main(["simulate", "events", "-o", path, "--from", str(tmp_path / "c.npy"), "--dwell-ns", "800",
                 "--jitter-ns", "0"]) == 0
    capsys.readouterr()
    assert main(["info", path]) == 0
    text = capsys.readouterr().out
    fields = dict(re.findall(r"^(\w[\w ]*?):\s+(.*)$", text, re.M))
    assert fields["kind"] == "events" and "n frames" not in fields
    assert fields["events"] == count_text(int(counts.sum()))
    assert fields["dwell"].startswith("800 ns (") and "unknown" not in text
    assert fields["duration"].startswith(f"{30 * 800 / 1e6:.4g} ms")
    if ext == "tpx3":
        assert fields["triggers"] == "12 TDC1 edges"  # a rising and a falling edge around each of 6 lines
        assert fields["chips"].startswith("4 chips, 512×512: chip 0: x 256–511, y 0–255; chip 1: x 256–511 reversed")
        assert "measured from the line triggers" in fields["dwell"]
    if ext == "t3p":
        assert fields["chips"] == "1 chip, 256×256: chip 0: x 0–255, y 0–255"
        assert "sidecar" in fields["dwell"]
    assert main(["info", path, "--quick"]) == 0
    assert "not counted" in capsys.readouterr().out


def test_lines_keep_coming_while_one_step_takes_long():
    import time

    out = io.StringIO()
    with Progress("report", 5, "steps", stream=out, every_s=0.2) as p:
        p.update(1, "dose 1e+03")
        time.sleep(0.9)  # one long step, no update
    lines = out.getvalue().splitlines()
    assert len(lines) >= 3 and all(line.startswith("ricom: report: 20 % (1/5 steps, ") for line in lines)
    time.sleep(0.3)
    assert out.getvalue().splitlines() == lines  # nothing after close


def test_bench_counts_its_cases_and_ends_with_a_summary(tmp_path, monkeypatch, capsys):
    """`ricom bench` piped: a progress line names the case running (a full bench makes its
    inputs for minutes between two rows), and one summary line closes the table."""
    import json

    from ricom.cli.main import main
    from ricom.tools import bench

    small = dict(scan_shape=(8, 8), detector_shape=(32, 32), threads=1)
    monkeypatch.setattr(bench, "plan", lambda quick: [("memory", {**small, "kernel": 5}), ("dask", {}),
                                                      ("memory", {**small, "kernel": 9})])
    monkeypatch.setenv("RICOM_PROGRESS_EVERY_S", "0.0001")
    out = tmp_path / "bench.json"
    assert main(["bench", "--json", str(out)]) == 0
    captured = capsys.readouterr()
    assert "ricom: bench: 0 % (0/2 cases, 0 s; memory)" in captured.err  # dask runs only when asked
    assert re.search(r"^ricom: bench: 50 % \(1/2 cases, \d+ s; memory\)$", captured.err, re.M)
    rows = captured.out.strip().splitlines()
    assert rows[0].startswith("machine: ") and sum(r.startswith("memory uint16") for r in rows) == 2
    records = json.loads(out.read_text())
    best = max(r["patterns_per_s"] for r in records)
    assert re.fullmatch(rf"ricom bench: 2 cases in [\d.]+ s; fastest memory uint16: "
                        rf"{re.escape(count_text(best))} patterns/s; wrote {re.escape(str(out))}", rows[-1]), rows[-1]
    assert main(["bench", "--only", "memory", "--no-progress"]) == 0
    captured = capsys.readouterr()
    assert captured.err == "" and captured.out.strip().splitlines()[-1].endswith("(--json FILE saves them)")


def test_piped_report_and_calibrate_show_progress_and_one_summary(flipped, tmp_path, monkeypatch, capsys):
    """`ricom report` (13 s on the demo) and `ricom calibrate` report as they go when piped
    (stderr here is not a terminal) and close with one summary line."""
    from ricom.cli.main import main

    monkeypatch.setenv("RICOM_PROGRESS_EVERY_S", "0.0001")
    assert main(["report", str(flipped), "-o", str(tmp_path / "rep"), "--doses", "1e3"]) == 0
    captured = capsys.readouterr()
    steps = [tuple(map(int, m)) for m in re.findall(r"^ricom: report: \d+ % \((\d+)/(\d+) steps, \d+ s", captured.err,
                                                   re.M)]
    assert len({done for done, _ in steps}) >= 2 and steps == sorted(steps), captured.err
    total = steps[0][1]
    summary = captured.out.strip().splitlines()[-1]
    assert re.fullmatch(rf"ricom report: {total} steps in [\d.]+ s; wrote \d+ figures, report.json and report.md "
                        rf"to {re.escape(str(tmp_path / 'rep'))}", summary), summary
    assert main(["calibrate", str(flipped)]) == 0
    captured = capsys.readouterr()
    assert re.search(r"^ricom: calibrating: \d+ % \(\d+/576 patterns, \d+ s\)$", captured.err, re.M), captured.err
    assert re.fullmatch(r"ricom calibrate: 576 patterns in [\d.]+ s \([\d ]+ patterns/s\)",
                        captured.out.strip().splitlines()[-1])


def test_reconstruct_closes_with_the_summary_line_of_the_other_commands(tmp_path, capsys):
    """``ricom reconstruct``'s closing line names the command and groups digits as the others do."""
    from ricom.cli.main import main

    data = np.random.default_rng(1).poisson(3.0, (40, 30, 16, 16)).astype(np.uint16)
    np.save(tmp_path / "d.npy", data)
    out = tmp_path / "r.h5"
    assert main(["reconstruct", str(tmp_path / "d.npy"), "-o", str(out), "--kernel-size", "5"]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert re.fullmatch(rf"ricom reconstruct: 1 200 patterns in [\d.]+ s \([\d ]+ patterns/s\); wrote ricom, "
                        rf"icom, com_x, com_y, vbf, vadf to {re.escape(str(out))}", last), last
