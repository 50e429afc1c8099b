"""The events of the scan being received, kept with their arrival times: `EventStore`.

A Timepix3 stream's acceptance time (keep only electrons that arrived within ``A`` ns of
the probe reaching their position) is dose control after the fact.  To change it while a
scan streams and see the image as if the scan had been taken with the new value, the
engine keeps every event of the scan (position, detector x/y, arrival time) and replays
the ones the new acceptance keeps (`ricom.engine.reduction.ChunkReduction.set_acceptance`).

What it owns: the kept events (about 12 bytes each for whole-pixel coordinates) and the
memory bound ``max_events``.  Past the bound it lets them go and says so (`complete`);
a new acceptance time then holds from the next scan on only.  `accepted` is the filter
itself, the same comparison as the ``.tpx3`` reader's (``t < A``).
"""
from __future__ import annotations

import numpy as np

DEFAULT_MAX_EVENTS = 1 << 26
"""Events kept per scan for a live acceptance change (≈ 67 M: a 512×512 scan at 250
events per position; about 0.8 GB)."""


def accepted(item: tuple, t_ns: np.ndarray | None, acceptance_ns: float | None) -> tuple:
    """A checked event chunk ``(positions, x, y, done, count_visits)`` with only the events
    that arrived before ``acceptance_ns`` (all of them when it is None).

    Examples
    --------
    >>> pos, x = np.array([0, 0, 1]), np.array([1, 2, 3], np.uint16)
    >>> out = accepted((pos, x, x, np.zeros(0, np.int64), True), np.array([5.0, 50.0, 7.0]), 10.0)
    >>> out[0].tolist(), out[1].tolist()
    ([0, 1], [1, 3])
    """
    if acceptance_ns is None:
        return item
    keep = np.asarray(t_ns).ravel() < acceptance_ns
    positions, x, y, done, count_visits = item
    return positions[keep], x[keep], y[keep], done, count_visits


class EventStore:
    """Every event chunk of a scan, as received (positions, x, y, arrival times, done lists).

    Parameters
    ----------
    max_events : int
        Keep at most this many events; past it everything kept is let go (`complete`
        turns False) and the scan can no longer be replayed.

    Examples
    --------
    >>> store = EventStore(max_events=4)
    >>> item = (np.array([0, 1]), np.array([1, 2]), np.array([3, 4]), np.array([0]), False)
    >>> store.keep(item, np.array([1.0, 2.0]))
    >>> store.n_events, store.complete, len(list(store.items()))
    (2, True, 1)
    >>> store.keep(item, np.array([1.0, 2.0])); store.keep(item, np.array([1.0, 2.0]))
    >>> store.n_events, store.complete
    (6, False)
    """

    def __init__(self, max_events: int = DEFAULT_MAX_EVENTS) -> None:
        self.max_events = int(max_events)
        self.n_events = 0
        self.complete = True
        self._items: list[tuple] = []

    def keep(self, item: tuple, t_ns: np.ndarray | None) -> None:
        """Keep a copy of a checked event chunk and its arrival times (None: no times)."""
        positions, x, y, done, count_visits = item
        self.n_events += positions.shape[0]
        if not self.complete:
            return
        if self.n_events > self.max_events:
            self.complete, self._items = False, []
            return
        inside = positions >= 0
        times = None if t_ns is None else np.asarray(t_ns, np.float32).ravel()[inside]
        self._items.append((positions[inside].astype(np.int32), x[inside], y[inside], times,
                            np.array(done, copy=True), count_visits))

    @property
    def has_times(self) -> bool:
        """Whether every kept chunk came with arrival times."""
        return all(it[3] is not None for it in self._items)

    def items(self):
        """The kept chunks in order, as ``(checked item, arrival times)``."""
        for pos, x, y, t, done, count_visits in self._items:
            yield (pos.astype(np.int64), x, y, done, count_visits), t

    def clear(self) -> None:
        """Let every kept event go (a new scan starts)."""
        self._items, self.n_events, self.complete = [], 0, True


__all__ = ["DEFAULT_MAX_EVENTS", "EventStore", "accepted"]
