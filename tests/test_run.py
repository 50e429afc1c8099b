"""The driver: prefetching, interruption and partial results."""
from __future__ import annotations

import threading

import numpy as np
import pytest

from ricom import InputError, KernelSettings, Reconstruction, Settings
from ricom.core.chunks import FrameChunk
from ricom.engine.pipeline import run
from ricom.sources.arrays import ArraySource
from ricom.sources.base import Source


class Breaking(Source):
    """Yields `good` chunks of 4 frames, then raises (or interrupts)."""

    def __init__(self, data, good, exc):
        self.data, self.good, self.exc = data, good, exc
        self.scan_shape = data.shape[:2]
        self.detector_shape = data.shape[2:]
        self.n_frames = data.shape[0] * data.shape[1]
        self.closed = False

    def chunks(self, chunk_size=4):
        frames = self.data.reshape(-1, *self.detector_shape)
        for i in range(self.good):
            yield FrameChunk(frames[4 * i:4 * i + 4], np.arange(4 * i, 4 * i + 4))
        raise self.exc

    def close(self):
        self.closed = True


def engine(data, threads=1):
    return Reconstruction(data.shape[:2], data.shape[2:], Settings(kernel=KernelSettings(3)), threads=threads)


@pytest.mark.parametrize("prefetch, threads", [(0, 1), (2, 1), (2, 2), (0, 3)])
def test_same_result_with_and_without_prefetch(poisson_data, prefetch, threads):
    """Reading ahead and reducing chunks on worker threads (the pipeline) change nothing."""
    a = engine(poisson_data, threads)
    res = run(ArraySource(poisson_data), a, chunk_size=7, prefetch=prefetch)
    b = engine(poisson_data)
    b.process_frames(poisson_data.reshape(-1, 16, 16), start=0)
    b.finalize()
    np.testing.assert_allclose(res.snapshot.ricom, b.snapshot().ricom, atol=1e-12)
    assert res.complete and res.snapshot.n_patterns == 72


@pytest.mark.parametrize("prefetch, threads", [(0, 1), (2, 1), (2, 2)])
def test_source_error_keeps_partial_result(poisson_data, prefetch, threads):
    src = Breaking(poisson_data, 3, InputError("connection dropped"))
    res = run(src, engine(poisson_data, threads), prefetch=prefetch)
    assert res.error == "connection dropped" and res.snapshot.n_patterns == 12 and src.closed


@pytest.mark.parametrize("prefetch, threads", [(0, 1), (2, 1), (0, 2)])
def test_interrupt_keeps_partial_result(poisson_data, prefetch, threads):
    res = run(Breaking(poisson_data, 2, KeyboardInterrupt()), engine(poisson_data, threads), prefetch=prefetch)
    assert res.interrupted and res.snapshot.n_patterns == 8


def test_error_before_any_data_is_raised(poisson_data):
    with pytest.raises(InputError):
        run(Breaking(poisson_data, 0, InputError("bad header")), engine(poisson_data))


def test_stop_event_ends_the_run(poisson_data):
    stop = threading.Event()
    seen = []

    def progress(n):
        seen.append(n)
        stop.set()

    res = run(ArraySource(poisson_data), engine(poisson_data), chunk_size=8, progress=progress, stop=stop)
    assert res.interrupted and res.snapshot.n_patterns == 8


def _ricom_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("ricom-")]


@pytest.mark.parametrize("good, exc", [(18, None), (5, InputError("cut")), (5, KeyboardInterrupt())])
def test_every_thread_of_a_run_ends_with_it(poisson_data, good, exc):
    """The pipeline owns its reader thread and worker pool: none outlives the run, also after
    an error or Ctrl-C; a direct `process_frames` with threads shuts its workers down too."""
    before = _ricom_threads()
    src = ArraySource(poisson_data) if exc is None else Breaking(poisson_data, good, exc)
    rec = engine(poisson_data, threads=3)
    run(src, rec, chunk_size=4, prefetch=2)
    rec.process_frames(poisson_data.reshape(-1, 16, 16)[:8], start=0)
    assert _ricom_threads() == before


def test_library_modules_change_no_process_wide_state():
    """Only frontends' entry points may set warning display, signal handlers, the switch
    interval or environment variables (`cli/main.py`, `cli/live.py`, `cli/interrupts.py` — the
    command line's Ctrl-C phases —, `gui/app.py`)."""
    import ast
    import pathlib

    import ricom

    root = pathlib.Path(ricom.__file__).parent
    allowed = {"cli/main.py", "cli/live.py", "cli/interrupts.py", "gui/app.py"}
    calls = {"sys.setswitchinterval", "signal.signal", "warnings.filterwarnings", "warnings.simplefilter",
             "os.putenv", "threading.excepthook"}
    found = []
    for path in root.rglob("*.py"):
        rel = path.relative_to(root).as_posix()
        if rel in allowed:
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        inside_catch = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.With) and any("catch_warnings" in ast.unparse(i.context_expr) for i in node.items):
                inside_catch |= {id(n) for n in ast.walk(node)}
        for node in ast.walk(tree):
            if id(node) in inside_catch:
                continue
            if isinstance(node, ast.Call) and ast.unparse(node.func) in calls:
                found.append(f"{rel}:{node.lineno} {ast.unparse(node.func)}")
            if isinstance(node, (ast.Assign, ast.AugAssign)):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                for t in targets:
                    text = ast.unparse(t)
                    if text.startswith(("os.environ", "warnings.showwarning", "sys.")):
                        found.append(f"{rel}:{node.lineno} {text} =")
    assert not found, found
