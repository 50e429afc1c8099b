"""``ricom doctor`` and the GUI's platform check before Qt starts (`ricom.tools.environment`)."""
from __future__ import annotations

import json

import pytest

from ricom.cli.main import main
from ricom.tools import environment as env


def test_ldd_output_names_the_packages():
    out = ("\tlinux-vdso.so.1 (0x7ff)\n\tlibxcb-icccm.so.4 => not found\n"
           "\tlibxcb.so.1 => /lib/x86_64-linux-gnu/libxcb.so.1 (0x7f)\n\tlibxcb-keysyms.so.1 => not found\n"
           "\tlibxcb-xinput.so.0 => not found\n")
    missing = env.parse_ldd(out)
    assert missing == ["libxcb-icccm.so.4", "libxcb-keysyms.so.1", "libxcb-xinput.so.0"]
    hint = env.install_hint(missing)
    assert "apt install libxcb-icccm4 libxcb-keysyms1 libxcb-xinput0" in hint
    assert "dnf install xcb-util-wm xcb-util-keysyms libxcb" in hint


def test_platform_choice():
    assert env.qt_platform({"QT_QPA_PLATFORM": "offscreen"}) == "offscreen"
    assert env.qt_platform({"DISPLAY": ":0"}) == "xcb"
    assert env.qt_platform({"DISPLAY": ":0", "WAYLAND_DISPLAY": "wayland-0"}) == "wayland"
    assert env.qt_platform({}) == "offscreen"


def test_gui_says_which_packages_are_missing(monkeypatch, capsys):
    """Qt would abort (exit 134); ricom names the packages first and exits 2."""
    pytest.importorskip("PySide6")
    monkeypatch.setenv("QT_QPA_PLATFORM", "xcb")
    monkeypatch.setattr(env, "missing_libraries", lambda files: ["libxcb-icccm.so.4"])
    assert main(["gui", "--exit-after", "0"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "libxcb-icccm4" in err and "xcb-util-wm" in err and "offscreen" in err


def test_real_check_on_this_machine():
    """Whatever this machine has, the check answers without starting Qt; offscreen (the
    tests' platform) must be fine, since the GUI tests run on it."""
    pytest.importorskip("PySide6")
    assert env.qt_platform_problem("offscreen") is None
    problem = env.qt_platform_problem("xcb")
    assert problem is None or ("missing" in problem and "apt install" in problem)


def test_doctor(capsys):
    assert main(["doctor"]) == 0
    text = capsys.readouterr().out
    assert "numba" in text and "qt platform" in text and "cpu target" in text
    assert main(["doctor", "--json"]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert rep["extras"]["h5py"] != "not installed" and rep["ricom"]["python"]
