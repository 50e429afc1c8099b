"""Errors name the parameter to change, and each frontend phrases it in its own terms:
the Python API its keyword argument, the command line its option, the GUI its field."""
from __future__ import annotations

import argparse
import ast
import os
import pathlib
import pickle
import re
import subprocess
import sys

import h5py
import numpy as np
import pytest

import ricom
from ricom.cli.main import build_parser
from ricom.cli.options import CLI, FLAGS, error_text
from ricom.core.errors import Message, Param, RicomError, SettingsError, render

SRC = pathlib.Path(ricom.__file__).parent
FLAG = re.compile(r"(?<![\w-])--[a-z][a-z0-9]*(?:-[a-z0-9]+)*")
FRONTENDS = ("cli/", "gui/")
"""Packages that may name options: they are the frontends that phrase them."""
UNCONVERTED: set[str] = set()
"""Library modules whose messages still name options; empty it as they are converted."""


def _inputs(tmp_path) -> pathlib.Path:
    rng = np.random.default_rng(0)
    data = rng.poisson(5.0, (4, 5, 8, 8)).astype(np.uint16)
    np.save(tmp_path / "good.npy", data)
    np.save(tmp_path / "stack.npy", data.reshape(20, 8, 8))
    with h5py.File(tmp_path / "stack.h5", "w") as f:
        f.create_dataset("data", data=data.reshape(20, 8, 8))
    return tmp_path


CASES = {
    # id: (Python call on the inputs folder, CLI arguments, Python phrasing, CLI phrasing, GUI phrasing)
    "mrad detector without pixel size": (
        lambda d: ricom.reconstruct(str(d / "good.npy"), kernel_size=3, virtual_detector=(1, 2),
                                    virtual_detector_unit="mrad"),
        ["good.npy", "--kernel-size", "3", "--virtual-detector", "1", "2", "--virtual-detector-unit", "mrad"],
        "give the detector pixel size (pixel_size_mrad)", "give the detector pixel size (--pixel-size-mrad)",
        "give the detector pixel size (Calibration › pixel size)"),
    "3D stack without scan shape": (
        lambda d: ricom.reconstruct(str(d / "stack.npy"), kernel_size=3),
        ["stack.npy", "--kernel-size", "3"],
        "a 3D stack of 20 frames needs scan_shape=(SY, SX)", "a 3D stack of 20 frames needs --scan-shape SY SX",
        "a 3D stack of 20 frames needs Scan › rows × cols"),
    "input without scan shape": (
        lambda d: ricom.reconstruct(f"{d / 'stack.h5'}:/data", kernel_size=3),
        ["stack.h5:/data", "--kernel-size", "3"],
        "does not carry its scan shape; give scan_shape=(SY, SX)",
        "does not carry its scan shape; give --scan-shape SY SX",
        "does not carry its scan shape; give Scan › rows × cols"),
    "band-pass in 1/Å without step": (
        lambda d: ricom.reconstruct(str(d / "good.npy"), kernel_size=3, band_pass=(0.1, 1.0), band_pass_unit="inv_A"),
        ["good.npy", "--kernel-size", "3", "--filter", "0.1", "1", "--filter-unit", "inv_A"],
        "a band-pass in 1/Å needs the scan step (step_A)", "a band-pass in 1/Å needs the scan step (--step)",
        "a band-pass in 1/Å needs the scan step (Calibration › step)"),
    "centre outside the detector": (
        lambda d: ricom.reconstruct(str(d / "good.npy"), kernel_size=3, center_yx=(99, 99)),
        ["good.npy", "--kernel-size", "3", "--center", "99", "99"],
        "give center_yx=(CY, CX) in detector pixels or center_yx='auto'",
        "give --center CY CX in detector pixels or --center auto",
        "give Geometry › centre: manual, row / col in detector pixels or Geometry › centre: auto"),
}


def _raised(tmp_path, case) -> RicomError:
    with pytest.raises(SettingsError) as info:
        CASES[case][0](_inputs(tmp_path))
    return info.value


@pytest.mark.parametrize("case", CASES)
def test_python_names_the_keyword_argument(tmp_path, case):
    exc = _raised(tmp_path, case)
    assert CASES[case][2] in str(exc) and not FLAG.search(str(exc))


@pytest.mark.parametrize("case", CASES)
def test_command_line_names_the_option(tmp_path, case):  # the ricom imported here, also from tmp_path
    _inputs(tmp_path)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC.parent), os.environ.get("PYTHONPATH", "")])}
    pr = subprocess.run([sys.executable, "-m", "ricom", "reconstruct", *CASES[case][1], "-o", "out.h5",
                         "--no-progress"], capture_output=True, text=True, cwd=tmp_path, env=env)
    lines = pr.stderr.strip().splitlines()
    assert pr.returncode == 2 and len(lines) == 1, pr.stderr
    assert lines[0].startswith("ricom: error: ") and CASES[case][3] in lines[0], pr.stderr


@pytest.mark.parametrize("case", CASES)
def test_gui_names_the_field(tmp_path, case):
    pytest.importorskip("PySide6")
    from ricom.gui.worker import describe_error

    text = describe_error(_raised(tmp_path, case))
    assert CASES[case][4] in text and not FLAG.search(text)


def test_error_carries_its_parameters_structurally():
    exc = SettingsError("t.t3p: give ", Param("scan_shape", form=True), " and ", Param("dwell_ns", form=True))
    assert exc.parameter == "scan_shape" and exc.parameters == ("scan_shape", "dwell_ns")
    assert isinstance(exc, ValueError) and isinstance(exc, RicomError)
    assert str(exc) == "t.t3p: give scan_shape=(SY, SX) and dwell_ns=NS"
    assert error_text(exc) == "t.t3p: give --scan-shape SY SX and --dwell-ns NS"
    assert SettingsError("no parameter here").parameter is None


def test_values_switches_and_text_kept_from_an_error():
    exc = SettingsError("use ", Param("pad", True), ", ", Param("skip_frames", 3), " or ", Param("center_yx", "auto"))
    assert str(exc) == "use pad=True, skip_frames=3 or center_yx='auto'"
    assert error_text(exc) == "use --scan-pad, --skip-frames 3 or --center auto"
    kept = str(exc)  # e.g. RunResult.error: still a Message
    assert isinstance(kept, Message) and error_text(kept) == error_text(exc)
    assert render("plain text", CLI) == "plain text"


def test_errors_survive_pickling_with_their_parameters():
    exc = SettingsError("a band-pass in 1/Å needs the scan step (", Param("step_A"), ")")
    back = pickle.loads(pickle.dumps(exc))  # as Dask sends it from a worker
    assert type(back) is SettingsError and back.parameters == ("step_A",)
    assert error_text(back) == "a band-pass in 1/Å needs the scan step (--step)"


def _library_modules():
    for path in sorted(SRC.rglob("*.py")):
        rel = path.relative_to(SRC).as_posix()
        if not rel.startswith(FRONTENDS):
            yield rel, ast.parse(path.read_text(encoding="utf-8"))


def _message_literals(tree: ast.AST):
    """String constants that can end up in a message: not docstrings or other bare string
    statements, and not a lone option (an argument of a child ``ricom`` process)."""
    bare = {id(n.value) for n in ast.walk(tree) if isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant)}
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in bare:
            if not FLAG.fullmatch(node.value):
                yield node


def test_library_messages_name_no_options():
    found = {}
    for rel, tree in _library_modules():
        hits = [f"{n.lineno}: {n.value!r}" for n in _message_literals(tree) if FLAG.search(n.value)]
        if hits:
            found[rel] = hits
    converted = UNCONVERTED - set(found)
    assert not converted, f"no options left in {sorted(converted)}: remove them from UNCONVERTED"
    unexpected = {rel: hits for rel, hits in found.items() if rel not in UNCONVERTED}
    assert not unexpected, f"name the parameter with ricom.core.errors.Param instead: {unexpected}"


def _options(parser: argparse.ArgumentParser) -> set[str]:
    """Every option of ``parser`` and its sub-commands."""
    out = set()
    for action in parser._actions:
        out.update(action.option_strings)
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                out |= _options(sub)
    return out


def test_every_parameter_the_library_names_has_an_option():
    named = {node.args[0].value for _, tree in _library_modules() for node in ast.walk(tree)
             if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "Param"
             and node.args and isinstance(node.args[0], ast.Constant)}
    assert named and not named - set(FLAGS), f"add to ricom.cli.options.FLAGS: {sorted(named - set(FLAGS))}"
    options = _options(build_parser())
    for word in FLAGS.values():
        assert set(FLAG.findall(word.name)) <= options, word
