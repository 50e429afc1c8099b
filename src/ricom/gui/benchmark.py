"""How much the open GUI slows the reconstruction: the same source with and without it.

Owns the measurement behind the "≥ 80 % of the rate without the GUI" goal.  A
simulated scan is held in memory and replayed for several passes (`ReplaySource`) so
that the engine, not the simulator, sets the pace.  Without the GUI, `ricom.engine.pipeline.run`
runs in a thread exactly as the GUI's worker does; with the GUI, the full window (every
panel visible, refreshing at up to 30 Hz) runs the same source with the same settings.
The rate is patterns per second of engine time (`RunResult.seconds_processing`).

Run it as ``python -m ricom.gui.benchmark [--passes N] [--repeats N]`` (offscreen when
there is no display; about 40 s with the defaults).
"""
from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from ricom.core.chunks import FrameChunk
from ricom.gui.app import application, ensure_display, gil_switch_interval
from ricom.sources.base import Source


class ReplaySource(Source):
    """An in-memory scan delivered ``passes`` times, tagged with its pass number."""

    kind = "frames"

    def __init__(self, data: np.ndarray, passes: int, hints: dict | None = None) -> None:
        self.scan_shape = tuple(int(v) for v in data.shape[:2])
        self.detector_shape = tuple(int(v) for v in data.shape[2:])
        self._frames = data.reshape(-1, *self.detector_shape)
        self.passes = int(passes)
        self.n_frames = self.passes * self._frames.shape[0]
        self._hints = dict(hints or {})

    def chunks(self, chunk_size: int = 256):
        n = self._frames.shape[0]
        for k in range(self.passes):
            for start in range(0, n, chunk_size):
                stop = min(n, start + chunk_size)
                yield FrameChunk(self._frames[start:stop], np.arange(start, stop, dtype=np.int64),
                                 np.full(stop - start, k, np.int64))


def _without_gui(data, passes, hints, settings, repeats, chunk_size) -> float:
    """The GUI's own worker thread (`RunWorker`), with no window."""
    from ricom.engine.reconstruction import Reconstruction
    from ricom.gui.settings_column import settings_with_hints
    from ricom.gui.worker import RunWorker

    src = ReplaySource(data, passes, hints)

    def make(s):
        return Reconstruction(s.scan_shape, s.detector_shape, settings_with_hints(settings, hints, s.scan_shape),
                              repeats=repeats)

    worker = RunWorker(lambda stop: src, make, chunk_size).start()
    worker.thread.join()
    if worker.error:
        raise RuntimeError(worker.error)
    return worker.rec.n_patterns / worker.result.seconds_processing


def _with_gui(app, data, passes, hints, settings) -> tuple[float, str]:
    """The full window, as `ricom.gui.app.run_gui` runs it (with its thread switch interval)."""
    with gil_switch_interval():
        return _run_window(app, data, passes, hints, settings)


def _run_window(app, data, passes, hints, settings) -> tuple[float, str]:
    from PySide6 import QtCore

    from ricom.gui.window import MainWindow

    w = MainWindow(remember_layout=False)
    w.show()
    w.column.set_settings(settings)
    ticks = {"n": 0}
    w.timer.timeout.connect(lambda: ticks.__setitem__("n", ticks["n"] + 1))
    w.start_source(ReplaySource(data, passes, hints))
    loop = QtCore.QEventLoop()  # the Qt event loop, as in the application (no busy polling)
    poll = QtCore.QTimer(interval=50)
    poll.timeout.connect(lambda: loop.quit() if w.worker.finished.is_set() and w._reported else None)
    poll.start()
    c0, t0 = time.thread_time(), time.perf_counter()
    loop.exec()
    share = (time.thread_time() - c0) / (time.perf_counter() - t0)
    poll.stop()
    rate = w.rec.n_patterns / w.worker.result.seconds_processing
    n_ticks = f"{ticks['n']} ({share:.0%} CPU)"
    w.close()
    w.deleteLater()
    app.processEvents()
    return rate, n_ticks


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--scan", type=int, default=64, help="scan side (default 64)")
    p.add_argument("--detector", type=int, default=64, help="detector side (default 64)")
    p.add_argument("--passes", type=int, default=100, help="passes over the scan per run (default 100)")
    p.add_argument("--repeats", type=int, default=8, help="runs of each kind (default 8)")
    args = p.parse_args(argv)

    ensure_display()
    from ricom.api import make_settings
    from ricom.gui.window import CHUNK_SIZE
    from ricom.simulators.specimen import SimulationParams, simulate

    sim = simulate(SimulationParams(scan_shape=(args.scan, args.scan), detector_shape=(args.detector,) * 2,
                                    dose_e_per_probe=2e4))
    hints = {"step_A": sim.params.step_A, "pixel_size_mrad": sim.pixel_size_mrad,
             "energy_keV": sim.params.energy_keV}
    settings = make_settings(kernel_size=21, hints=hints)
    app = application()
    _without_gui(sim.data, 2, hints, settings, "sum", CHUNK_SIZE)  # warm-up (numba cache, page-in)
    _with_gui(app, sim.data, 2, hints, settings)
    plain, gui, ticks = [], [], []
    for i in range(args.repeats):  # interleaved, alternating order: shared machines drift
        for kind in (("plain", "gui") if i % 2 == 0 else ("gui", "plain")):
            if kind == "plain":
                plain.append(_without_gui(sim.data, args.passes, hints, settings, "sum", CHUNK_SIZE))
            else:
                r, n = _with_gui(app, sim.data, args.passes, hints, settings)
                gui.append(r)
                ticks.append(n)
    ratios = [g / p for g, p in zip(gui, plain, strict=True)]
    n_pat = args.passes * args.scan * args.scan
    print(f"{n_pat} patterns per run ({args.scan}×{args.scan} scan, {args.detector}×{args.detector} uint16 "
          f"patterns, kernel 21, chunks of {CHUNK_SIZE}, repeats='sum'); {args.repeats} runs of each, interleaved")
    print(f"without GUI: median {statistics.median(plain):,.0f}, best {max(plain):,.0f} patterns/s  "
          f"(runs: {', '.join(f'{v:,.0f}' for v in plain)})")
    print(f"with GUI:    median {statistics.median(gui):,.0f}, best {max(gui):,.0f} patterns/s  "
          f"(runs: {', '.join(f'{v:,.0f}' for v in gui)})")
    print(f"GUI refreshes per run (GUI thread CPU share): {', '.join(ticks)}")
    print(f"ratio GUI / no GUI: median of pairs {statistics.median(ratios):.2f}, "
          f"of medians {statistics.median(gui) / statistics.median(plain):.2f}, of bests {max(gui) / max(plain):.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
