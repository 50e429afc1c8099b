"""The main window's display refresh: what the panels draw from, which to redraw, how often.

Owns `LiveState` (the engine, tap and settings one refresh draws from; the snapshot is
taken on first use), `panels_to_redraw` (the visible panels whose input changed: riCOM
at every refresh, the others `SECONDARY_PER_TICK` at a time, longest-waiting first) and
`RefreshBudget` (the refresh timer's interval, kept within the GUI thread's CPU budget).
`ricom.gui.window.MainWindow` runs them from its timer.
"""
from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass

from ricom.engine.reconstruction import Reconstruction
from ricom.gui.worker import describe_error

REFRESH_HZ = 30
GUI_CPU_SHARE = 0.5
"""The refresh slows down (below `REFRESH_HZ`) when drawing takes more than this share of
one CPU core ..."""
GUI_CPU_SHARE_ENGINE_BOUND = 0.1
"""... or more than this share while the engine sets the pace (the source waits for it),
so the display never takes CPU time a busy reconstruction could use."""
PRIMARY_PANELS = ("ricom",)
"""Redrawn at every refresh; the other panels take turns (`SECONDARY_PER_TICK` per refresh)."""
SECONDARY_PER_TICK = 3


@dataclass
class LiveState:
    """What panels draw from in one refresh; the snapshot is taken on first use."""

    rec: Reconstruction | None
    tap: object
    settings: object
    key: object

    def __post_init__(self) -> None:
        self._snap = None
        self.error: str | None = None

    @property
    def snapshot(self):
        """The engine's snapshot, or None (with ``error`` set) if the engine cannot give one."""
        if self._snap is None and self.rec is not None and self.error is None:
            try:
                self._snap = self.rec.snapshot(fresh=False)  # tcBF/SSB as last made: no heavy work here
            except Exception as exc:  # keep showing the last images; say why
                self.error = describe_error(exc)
        return self._snap


def panels_to_redraw(panels: Iterable, live: LiveState, force: bool = False, all_stale: bool = False) -> list:
    """``(panel, state key)`` of the visible panels to redraw now, in drawing order.

    A panel is stale when its state key differs from the one it was drawn with.  The
    `PRIMARY_PANELS` come whenever stale, the others `SECONDARY_PER_TICK` at a time,
    longest-waiting first; ``all_stale`` gives every stale panel, ``force`` every visible
    panel.
    """
    stale = []
    for panel in panels:
        if not panel.isVisible() or (panel.needs_snapshot and live.rec is None):
            continue
        key = panel.state_key(live)
        if force or key != panel.shown_key:
            stale.append((panel, key))
    primary = [(p, k) for p, k in stale if p.key in PRIMARY_PANELS]
    others = sorted((item for item in stale if item[0].key not in PRIMARY_PANELS), key=lambda i: i[0].drawn_at)
    if not (force or all_stale):
        others = others[:SECONDARY_PER_TICK]
    return primary + others


class RefreshBudget:
    """The refresh interval that keeps the GUI thread within its CPU budget while data flow.

    The budget is `GUI_CPU_SHARE`, or `GUI_CPU_SHARE_ENGINE_BOUND` when the source
    spends most of its time waiting for the engine (`PatternTap.engine_bound`).  Call
    `next_interval` from the GUI thread at every timer step.
    """

    def __init__(self) -> None:
        self._clock: tuple | None = None
        self.cpu_share = self.engine_bound = 0.0

    def next_interval(self, interval: int, tap, running: bool) -> int:
        """The timer interval (ms) to use from now on, given the current one and the run's tap."""
        wall, cpu = time.perf_counter(), time.thread_time()
        waits = (tap.wait_seconds, tap.source_seconds) if tap is not None else (0.0, 0.0)
        last, self._clock = self._clock, (wall, cpu, *waits)
        if last is None or wall - last[0] <= 0:
            return interval
        share = (cpu - last[1]) / (wall - last[0])
        self.cpu_share = 0.8 * self.cpu_share + 0.2 * share
        waited, produced = waits[0] - last[2], waits[1] - last[3]
        if waited >= 0 and produced >= 0 and waited + produced > 0:  # (a new run restarts the counts)
            self.engine_bound = 0.8 * self.engine_bound + 0.2 * waited / (waited + produced)
        budget = GUI_CPU_SHARE_ENGINE_BOUND if self.engine_bound > 0.5 else GUI_CPU_SHARE
        if running and self.cpu_share > budget:
            return min(500, int(interval * 1.2) + 1)
        if not running or self.cpu_share < 0.6 * budget:
            return max(int(1000 / REFRESH_HZ), int(interval / 1.1))
        return interval
