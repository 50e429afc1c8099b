"""How the documentation meets a new user (issue 20, parts 1, 2 and 7): every how-to shows
the command line before Python, the console lines of pages outside `test_docs.RUN_ALL` run
too, code wraps inside its box, ``make docs`` installs its extras once, the package
licence is an SPDX string, the GUI page names the system packages ``ricom gui`` names and
shows the window, and the Dask example runs as a script (``python script.py``)."""
from __future__ import annotations

import os
import re
import stat
import subprocess
import sys

import pytest

from test_docs import DOCS, ROOT, RUN_ALL, blocks, commands, pages, run_console_line, stop_background

HOW_TOS = [p for p in pages() if p.startswith("howto/")] + ["getting-started.md", "calibration.md", "gui.md"]
PYTHON_ONLY = {"howto/jupyter.md": "notebooks: Python is the subject"}
DATA_FIRST = {"howto/files.md": "Python writes a Merlin .mib for the command lines below it to read"}
CONSOLE_RUN_HERE = ["calibration.md", "howto/choosing-a-method.md"]
CONSOLE_RUN_ELSEWHERE = {
    "howto/phase-contrast.md": "test_phase_signals::test_the_phase_contrast_page_command_lines_run"}
CONSOLE_NOT_RUN = {"gui.md": "installs system packages and opens a window (README's gui line runs headless)",
                   "howto/simulate-dectris.md": "a simulator in the foreground and curl against it"}


def _read(page: str) -> str:
    with open(os.path.join(DOCS, page), encoding="utf-8") as fh:
        return fh.read()


def _is_command_line(lang: str, code: str, shown: bool) -> bool:
    """A console block (runnable, as the tests run it); with ``shown`` also a text block of
    ``ricom …`` lines (commands for a real microscope or file, shown but not run)."""
    lines = [line.strip() for line in code.splitlines() if line.strip()]
    return lang == "console" or (shown and lang == "text" and bool(lines)
                                 and all(line.startswith("ricom ") for line in lines))


@pytest.mark.parametrize("page", HOW_TOS)
def test_how_tos_put_the_command_line_first(page):
    """The first runnable command line comes before the first Python block; on a page whose
    first Python only makes example data (`DATA_FIRST`), the commands are shown above it."""
    found = blocks(_read(page))
    first_python = next((line for lang, _, line in found if lang in ("python", "pycon")), None)
    shown = page in DATA_FIRST
    first_command = next((line for lang, code, line in found if _is_command_line(lang, code, shown)), None)
    if page in PYTHON_ONLY:
        assert first_command is None, f"{page} has a command line now: drop it from PYTHON_ONLY"
        return
    assert first_command is not None, f"{page}: no command line"
    assert first_python is None or first_command < first_python, \
        f"{page}: Python (line {first_python}) before the command line (line {first_command})"


def test_every_console_block_runs_somewhere():
    """Pages whose console lines no test runs are listed, with the reason."""
    for page in pages():
        if any(lang == "console" for lang, _, _ in blocks(_read(page))):
            assert (page in RUN_ALL or page in CONSOLE_RUN_HERE or page in CONSOLE_RUN_ELSEWHERE
                    or page in CONSOLE_NOT_RUN), f"{page}: its console lines run in no test"


@pytest.mark.parametrize("page", CONSOLE_RUN_HERE)
def test_console_lines_of_the_other_pages_run(page, tmp_path, monkeypatch):
    from ricom.cli.main import main

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MPLBACKEND", "Agg")
    lines = [(cmd, line) for lang, code, line in blocks(_read(page)) if lang == "console" for cmd in commands(code)]
    assert lines
    try:
        for cmd, line in lines:
            run_console_line(cmd, f"{page}:{line}", main)
    finally:
        stop_background()


def test_code_wraps_in_its_box():
    """Long command lines wrap inside their box (no horizontal scroll bar): the theme's
    extra style sheet, loaded on every page, sets ``pre`` to ``pre-wrap``."""
    sys.path.insert(0, DOCS)
    try:
        import conf
    finally:
        sys.path.remove(DOCS)
    for css in conf.html_css_files:
        with open(os.path.join(DOCS, "_static", css), encoding="utf-8") as fh:
            text = re.sub(r"/\*.*?\*/", "", fh.read(), flags=re.S)
        for selectors, body in re.findall(r"([^{}]+)\{([^}]*)\}", text):
            if "pre" in re.split(r"[\s,]+", selectors.strip()) and re.search(r"white-space:\s*pre-wrap", body):
                return
    pytest.fail("no style sheet of docs/conf.py wraps <pre> (white-space: pre-wrap)")


def _fake_venv(folder) -> str:
    """``.venv/bin/python`` that logs its arguments instead of running (pip, sphinx, pytest)."""
    log = os.path.join(folder, "calls.log")
    bin_dir = os.path.join(folder, ".venv", "bin")
    os.makedirs(bin_dir)
    script = os.path.join(bin_dir, "python")
    with open(script, "w") as fh:
        fh.write(f'#!/bin/sh\necho "$@" >> {log}\n')
    os.chmod(script, os.stat(script).st_mode | stat.S_IEXEC)
    for name in ("Makefile", "pyproject.toml"):
        with open(os.path.join(ROOT, name), encoding="utf-8") as src, open(os.path.join(folder, name), "w") as dst:
            dst.write(src.read())
    os.utime(os.path.join(folder, "pyproject.toml"), (1_000_000_000, 1_000_000_000))  # older than any stamp
    return log


def _installs(log: str) -> list[str]:
    if not os.path.exists(log):
        return []
    with open(log) as fh:
        return [line for line in fh.read().splitlines() if "pip install" in line]


@pytest.mark.skipif(not os.path.exists("/usr/bin/make") and not os.path.exists("/bin/make"), reason="needs make")
def test_make_docs_installs_its_extras_once(tmp_path):
    for first in (["docs"], ["test"]):
        folder = tmp_path / first[0]
        folder.mkdir()
        log = _fake_venv(str(folder))
        for target in (*first, "docs", "docs"):
            subprocess.run(["make", "-s", target], cwd=folder, check=True, capture_output=True, timeout=60)
        installs = _installs(log)
        assert len(installs) == 1, (first, installs)  # `make docs` after `make docs` or `make test`: nothing
        assert "[docs]" in installs[0] or "docs]" in installs[0], installs


def test_license_is_an_spdx_string():
    """``project.license`` as a TOML table is deprecated (a warning on every install)."""
    tomllib = pytest.importorskip("tomllib" if sys.version_info >= (3, 11) else "tomli")
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as fh:
        project = tomllib.load(fh)
    assert isinstance(project["project"]["license"], str)
    assert not any(c.startswith("License ::") for c in project["project"].get("classifiers", []))
    setuptools = next(r for r in project["build-system"]["requires"] if r.startswith("setuptools"))
    assert int(re.search(r">=(\d+)", setuptools).group(1)) >= 77  # the first to read an SPDX string


def _packages(text: str, tool: str) -> set[str]:
    """The packages of the ``sudo TOOL install …`` line of a console block (with its continuation)."""
    joined = text.replace("\\\n", " ")
    line = next(line for line in joined.splitlines() if line.strip().startswith(f"sudo {tool} install"))
    return set(re.sub(r"#.*$", "", line).split()[3:])


def test_gui_page_names_the_packages_and_shows_the_window():
    from ricom.tools.environment import SYSTEM_PACKAGES, install_hint

    text = _read("gui.md")
    debian, fedora = _packages(text, "apt"), _packages(text, "dnf")
    known = {deb: rpm for deb, rpm in SYSTEM_PACKAGES.values()}
    other_xcb = {d for d in debian - set(known) if re.fullmatch(r"libxcb-[a-z-]+\d", d)}  # Fedora: in libxcb
    assert debian - other_xcb <= set(known) and fedora == {known[d] for d in debian - other_xcb}
    hint = install_hint(["libxcb-icccm.so.4", "libxcb-keysyms.so.1"])  # what the desktop lacked
    assert {"libxcb-icccm4", "libxcb-keysyms1"} <= debian and "libxcb-icccm4 libxcb-keysyms1" in hint
    shot = re.search(r"!\[[^\]]+\]\((_static/[\w.-]+\.png)\)", text)
    assert shot, "docs/gui.md shows no screenshot"
    with open(os.path.join(DOCS, shot.group(1)), "rb") as fh:
        head = fh.read(24)
    width, height = int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")
    assert head[:8] == b"\x89PNG\r\n\x1a\n" and width >= 800 and height >= 500


def test_dask_example_runs_as_a_script(tmp_path, monkeypatch):
    """Saved as a file and run with ``python script.py`` (Dask's workers import it anew: the
    example without its ``__main__`` guard fails to start them)."""
    pytest.importorskip("distributed")
    from ricom.cli.main import main

    monkeypatch.chdir(tmp_path)
    text = _read("howto/dask.md")
    console = next(code for lang, code, _ in blocks(text) if lang == "console")
    assert main(commands(console)[0].split()[1:]) == 0  # ricom simulate -o big.npy …
    script = next(code for lang, code, _ in blocks(text) if lang == "python" and "reconstruct_distributed(" in code)
    (tmp_path / "script.py").write_text(script)
    env = {**os.environ, "PYTHONPATH": os.path.join(ROOT, "src")}
    res = subprocess.run([sys.executable, "script.py"], cwd=tmp_path, capture_output=True, text=True, env=env,
                         timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    assert res.stdout.strip().splitlines()[-1] == "[11, 21, 21] (32, 32)"
