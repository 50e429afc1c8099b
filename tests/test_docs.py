"""Every example in the documentation runs, the notebook runs, and the docs build cleanly.

Pages (``docs/**/*.md``): the fenced code blocks of a page run in order, in one fresh
folder, sharing one namespace, so a page can make its data first and use it later.

- ```` ```python ```` with ``>>>`` prompts: a doctest (output compared);
- ```` ```python ```` without prompts: executed (pages of this suite only, `RUN_ALL`);
- ```` ```console ````: each ``$ ricom …`` line runs in-process and must exit 0; each
  ``$ make TARGET`` must name a target of the Makefile (it would build a virtualenv).

Pages written elsewhere (calibration, GUI, conventions, architecture) contribute their
doctest blocks only: a plain block there may be a sketch, and a console line there may
start a window.  The notebook ``examples/quickstart.ipynb`` is executed with nbclient;
the Sphinx build runs with ``-W`` (warnings are errors) without executing notebooks.
"""
from __future__ import annotations

import doctest
import os
import re
import shlex
import subprocess
import sys

import pytest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
DOCS = os.path.join(ROOT, "docs")
NOTEBOOK = os.path.join(ROOT, "examples", "quickstart.ipynb")
RUN_ALL = {"index.md", "getting-started.md", "how-ricom-works.md", "benchmarks.md", "api.md",
           "howto/files.md", "howto/live-merlin.md", "howto/live-dectris.md", "howto/timepix3.md", "howto/jupyter.md",
           "howto/dask.md", "howto/libertem.md", "howto/outputs.md"}
FENCE = re.compile(r"^```([\w{}-]*)[^\n]*\n(.*?)^```\s*$", re.M | re.S)
FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE


def pages() -> list[str]:
    out = []
    for folder, dirs, files in os.walk(DOCS):
        dirs[:] = [d for d in dirs if not d.startswith(("_", "."))]
        out += [os.path.relpath(os.path.join(folder, f), DOCS).replace(os.sep, "/") for f in files if f.endswith(".md")]
    return sorted(out)


def blocks(text: str) -> list[tuple[str, str, int]]:
    """(language, code, line number) of every fenced block."""
    return [(m.group(1), m.group(2), text.count("\n", 0, m.start()) + 1) for m in FENCE.finditer(text)]


def commands(code: str) -> list[str]:
    """``$ `` lines of a console block, with backslash continuations joined."""
    out, current = [], None
    for line in code.splitlines():
        if current is not None:
            current += " " + line.strip().rstrip("\\")
            if not line.rstrip().endswith("\\"):
                out.append(current)
                current = None
        elif line.startswith("$ "):
            if line.rstrip().endswith("\\"):
                current = line[2:].rstrip().rstrip("\\")
            else:
                out.append(line[2:].strip())
    return out


def make_targets() -> set[str]:
    with open(os.path.join(ROOT, "Makefile")) as fh:
        return set(re.findall(r"^([\w.-]+)\s*:(?!=)", fh.read(), flags=re.M))


def run_page(page: str) -> int:
    """Run the examples of one page in the current folder; returns how many ran."""
    from ricom.cli.main import main

    with open(os.path.join(DOCS, page), encoding="utf-8") as fh:
        text = fh.read()
    namespace: dict = {"__name__": "__main__"}  # as a script: guarded examples run too
    ran = 0
    for lang, code, line in blocks(text):
        where = f"{page}:{line}"
        if lang in ("python", "pycon") and ">>>" in code:
            test = doctest.DocTestParser().get_doctest(code, namespace, where, page, line)
            runner = doctest.DocTestRunner(optionflags=FLAGS)
            report: list[str] = []
            runner.run(test, out=report.append, clear_globs=False)
            namespace.update(test.globs)  # DocTest works on a copy of the namespace
            if runner.failures:
                pytest.fail(f"doctest in {where} failed:\n{''.join(report)}")
        elif lang == "python" and page in RUN_ALL:
            exec(compile(code, where, "exec"), namespace)
        elif lang == "console" and page in RUN_ALL:
            for cmd in commands(code):
                run_console_line(cmd, where, main)
        else:
            continue
        ran += 1
    return ran


BACKGROUND: list = []
"""Processes a page started with ``… &`` (stopped when the page is done)."""


def run_console_line(cmd: str, where: str, main) -> None:
    """One ``$`` line as a shell runs it: ``ricom …`` must exit 0 (in this process, or its own
    for the GUI: a QApplication here would upset the GUI tests after it); a line ending in
    ``&`` starts a simulator in the background (`BACKGROUND`) and waits for its port;
    ``make TARGET`` must name a Makefile target (it would build a virtualenv)."""
    argv = shlex.split(re.sub(r"\s+#.*$", "", cmd).rstrip("& "))
    if argv[0] == "make":
        assert set(argv[1:]) <= make_targets(), f"{where}: no Makefile target {argv[1:]}"
        return
    assert argv[0] == "ricom", f"{where}: only ricom and make commands run in docs examples: {cmd}"
    if cmd.rstrip().endswith("&"):
        BACKGROUND.append(subprocess.Popen([sys.executable, "-m", *argv]))
        _wait_for_port(_port_of(argv), BACKGROUND[-1])
    elif argv[1] == "gui":
        assert subprocess.run([sys.executable, "-m", *argv], timeout=300).returncode == 0, f"{where}: `{cmd}` failed"
    else:
        assert main(argv[1:]) == 0, f"{where}: `{cmd}` failed"


def stop_background() -> None:
    """Stop the simulators `run_console_line` started (they serve until stopped, as in a terminal)."""
    while BACKGROUND:
        proc = BACKGROUND.pop()
        proc.terminate()
        proc.wait(timeout=30)


@pytest.mark.parametrize("page", pages())
def test_page_examples_run(page, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MPLBACKEND", "Agg")
    try:
        ran = run_page(page)
    finally:
        stop_background()
    if page in RUN_ALL and page not in ("index.md", "api.md", "howto/dask.md"):
        assert ran > 0, f"{page} has no runnable example"


def test_doc_pages_are_all_in_a_toctree():
    index = open(os.path.join(DOCS, "index.md"), encoding="utf-8").read()
    listed = {line.strip() for line in index.splitlines()}
    for page in pages():
        name = page[:-3]
        if name != "index":
            assert name in listed, f"{page} is not in the index's toctree"


def test_notebook_runs_end_to_end(tmp_path):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code"), \
        "commit the notebook without outputs (the docs build executes it)"
    client = nbclient.NotebookClient(nb, timeout=300, kernel_name="python3",
                                     resources={"metadata": {"path": str(tmp_path)}})
    client.execute()
    code = [c for c in nb.cells if c.cell_type == "code"]
    live = next(c for c in code if "live_reconstruct(" in c.source and "import" not in c.source)
    assert any("image/png" in o.get("data", {}) for o in live.outputs), "the live view shows no image"
    assert (tmp_path / "report_quick" / "pore_profile.png").exists()


def test_docs_build_without_warnings(tmp_path):
    pytest.importorskip("sphinx")
    pytest.importorskip("myst_nb")
    cmd = [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html",
           "-D", "nb_execution_mode=off", "-d", str(tmp_path / "doctrees"), DOCS, str(tmp_path / "html")]
    res = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert res.returncode == 0, res.stderr[-4000:]
    assert (tmp_path / "html" / "how-ricom-works.html").exists()
    assert (tmp_path / "html" / "notebooks" / "quickstart.html").exists()
    page = (tmp_path / "html" / "howto" / "live-merlin.html").read_text(encoding="utf-8")
    assert "_static/ricom.css" in page and (tmp_path / "html" / "_static" / "ricom.css").exists()  # code wraps


# ----------------------------------------------------------------------------- the Jupyter view
class _FakeDisplay:
    """Stands in for IPython's ``display(..., display_id=True)`` and its handle."""

    def __init__(self):
        self.shown, self.updates = [], []

    def __call__(self, bundle, raw=False, display_id=False):
        self.shown.append(bundle)
        return self

    def update(self, bundle, raw=False):
        self.updates.append(bundle)


def test_live_view_without_ipywidgets_updates_a_plain_display(monkeypatch):
    import ricom.jupyter as J

    fake = _FakeDisplay()
    monkeypatch.setattr(J, "_widgets", lambda: None)
    monkeypatch.setattr(J, "_ipython_display", lambda: fake)
    live = J.live_reconstruct("demo", signals=("ricom", "icom"), kernel_size=9, interval_s=0.05, chunk_size=32,
                              source_options={"scan_shape": (16, 16)})
    assert live.result.complete and live.snapshot().n_patterns == 256
    assert len(fake.shown) == 1 and "image/png" in fake.shown[0]
    assert fake.updates and fake.updates[-1]["image/png"] == live.view.png()
    assert all("application/vnd.jupyter.widget-view+json" not in b for b in fake.updates)
    with pytest.raises(ImportError, match="ipywidgets"):
        J.LiveView(live.reconstruction, widgets=True)


def test_live_view_with_ipywidgets_updates_the_image_widget(monkeypatch):
    pytest.importorskip("ipywidgets")
    import ricom.jupyter as J

    fake = _FakeDisplay()
    monkeypatch.setattr(J, "_ipython_display", lambda: fake)
    live = J.live_reconstruct("demo", kernel_size=9, wait=False, interval_s=0.05, chunk_size=32,
                              source_options={"scan_shape": (16, 16)})
    snap = live.wait()
    live.view.stop()
    assert snap.n_patterns == 256
    assert live.view._image.value == live.view.png()
    assert "256 patterns" in live.view._status.value
    assert "application/vnd.jupyter.widget-view+json" in fake.updates[-1]  # the final static PNG beside it
    assert fake.updates[-1]["image/png"] == live.view.png()


def test_live_run_reports_the_error_of_its_thread():
    import numpy as np

    from ricom.core.chunks import FrameChunk
    from ricom.core.errors import InputError
    from ricom.jupyter import live_reconstruct
    from ricom.sources.base import Source

    class Broken(Source):
        kind, scan_shape, detector_shape, n_frames = "frames", (4, 4), (8, 8), 16

        def chunks(self, chunk_size=256):
            yield FrameChunk(np.ones((4, 8, 8), np.uint16), np.arange(4))
            raise InputError("the cable came loose")

    live = live_reconstruct(Broken(), kernel_size=3, interval_s=0.01)
    assert live.result.error == "the cable came loose" and live.snapshot().n_patterns == 4


def test_architecture_picture_follows_the_import_contract():
    """docs/_static/architecture.svg is what docs/architecture_diagram.py draws from the
    contract in pyproject.toml, and every layer of the contract is described."""
    sys.path.insert(0, DOCS)
    try:
        import architecture_diagram as diagram
    finally:
        sys.path.remove(DOCS)
    layers = diagram.contract_layers()
    assert layers[0] == "ricom.cli" and layers[-1] == "ricom.core"
    assert set(layers) == set(diagram.LAYER_NOTES)
    with open(diagram.OUT, encoding="utf-8") as fh:
        assert fh.read() == diagram.svg(layers), "run: python docs/architecture_diagram.py"


def _port_of(argv: list[str]) -> int:
    """The port a background simulator command serves on (its REST port for DECTRIS)."""
    flag = next(f for f in ("--api-port", "--port") if f in argv)
    return int(argv[argv.index(flag) + 1])


def _wait_for_port(port: int, proc, seconds: float = 60.0) -> None:
    import socket
    import time

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"the background command ended early ({proc.returncode})"
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    pytest.fail(f"nothing listens on port {port} after {seconds} s")


def test_readme_commands_run_as_printed(tmp_path, monkeypatch, capsys):
    """Every ``$ ricom …`` line of the README, in order, in an empty folder: each exits 0.
    A line ending in ``&`` (a detector simulator) runs in the background, as a shell would,
    and the next lines talk to it over loopback."""
    from ricom.cli.main import main

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.setenv("QT_QPA_PLATFORM", "offscreen")
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as fh:
        text = fh.read()
    ran = 0
    try:
        for lang, code, line in blocks(text):
            if lang != "console":
                continue
            for cmd in commands(code):
                assert cmd.split()[0] == "ricom", f"README:{line}: only ricom commands: {cmd}"
                run_console_line(cmd, f"README:{line}", main)
                ran += 1
    finally:
        stop_background()
    assert ran >= 15
    assert (tmp_path / "live_0003.h5").exists() and (tmp_path / "raw_0003.h5").exists()
    dose = re.findall(r"kept \d+ events: mean dose ([\d.]+) e/position", capsys.readouterr().err)
    assert dose and 0 < float(dose[-1]) < 0.5 * 200  # the acceptance example lowers the dose (200 e at 1000 ns)


def test_readme_python_runs_as_printed(tmp_path, monkeypatch):
    """The README's Python block runs as printed (outside a notebook the live view prints)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MPLBACKEND", "Agg")
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as fh:
        text = fh.read()
    code = [c for lang, c, _ in blocks(text) if lang == "python"]
    assert code
    namespace: dict = {"__name__": "__main__"}
    for block in code:
        exec(compile(block, "README.md", "exec"), namespace)
    assert namespace["image"].shape == (64, 64) and namespace["live"].wait().n_patterns > 0
