"""Plausibility of timed hits and of every size derived from them, checked before anything is allocated.

A Timepix3 reader turns hit *times* into scan positions, so one corrupt time (a flipped
bit in a ``.t3p`` ToA, a damaged ``.tpx3`` packet) or an implausible option (a dwell time
of 10⁻³ ns, ``inf``, ``NaN``) would otherwise become millions of positions or terabytes
of arrays.  This module owns the checks that stop that:

- `check_sync_options`: the synchronisation options are numbers of the right kind —
  finite, positive where they must be, a dwell time of at least one hit tick (1.5625 ns);
  `check_scan_order`: a scan order (``scan_positions``) fits the scan and the sync mode;
- `screen_hits`: the compiled pass that leaves out *time outliers* — a hit more than
  ``gap`` ticks after every hit before it that most of the hits after it do not follow
  (one pass over each block, no per-hit Python; the synchroniser counts and reports them).
  The file decoders do its common case inside their own pass (`precheck_hit`): a block
  with no hit ahead of the others needs no second pass;
- `check_dwell_span`: the passes of the scan that the events' time span implies under the
  dwell clock, against `MAX_PASSES` and against the number of events that could fill them;
- `check_slots`: the scan positions one block would list, against the memory budget.

Past a check, a one-line `SettingsError` (an option) or `InputError` (the data) names the
value and where it came from.
"""
from __future__ import annotations

import math
from numbers import Integral, Real

import numba
import numpy as np

from ricom.core.errors import InputError, Param, SettingsError
from ricom.core.params import memory_budget_bytes

HIT_TICK_NS = 1.5625
"""The finest time step of a Timepix3 hit (FToA): no dwell time can be shorter."""
MAX_PASSES = 10_000
"""Most passes of the scan that the events of one file or stream may span under the dwell clock."""
MIN_FILL_PASSES = 10
"""From this many passes on, the positions must not outnumber the events (fewer than one event per
visit of a position is a dwell time or scan shape that does not fit the data)."""
ISOLATION_MIN_NS = 1e5
"""A hit must lie at least this far (or ``order_window_ns``, if longer) after every hit before it to
be checked as a time outlier."""
SUPPORT_HITS = 8
"""How many of the hits after a suspect one are looked at: most of them must follow its time."""
BYTES_PER_SLOT = 48
"""Memory per scan position listed for one block (slot, position and temporary arrays)."""
_RUN = 64
"""Hits whose maximum `screen_hits` compares at once (the common case needs no more)."""


def _number(name: str, value, *, minimum: float | None = None, positive: bool = False, optional: bool = False):
    """``value`` as a finite float, or a `SettingsError` naming ``name``."""
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(value):
        raise SettingsError(f"{name} must be a finite number, got {value!r}; give ", Param(name))
    value = float(value)
    if positive and not value > 0:
        raise SettingsError(f"{name} must be positive, got {value:g}; give ", Param(name))
    if minimum is not None and value < minimum:
        raise SettingsError(f"{name} must be at least {minimum:g}, got {value:g}; give ", Param(name))
    return value


def check_sync_options(o) -> None:
    """Raise `SettingsError` unless the fields of a `ricom.sources.timepix.sync.SyncOptions` are usable.

    Examples
    --------
    >>> from ricom.sources.timepix.sync import SyncOptions
    >>> SyncOptions((8, 8), "dwell", dwell_ns=float("inf"))
    Traceback (most recent call last):
    ...
    ricom.core.errors.SettingsError: dwell_ns must be a finite number, got inf; give dwell_ns
    """
    shape = o.scan_shape
    if not (isinstance(shape, (tuple, list)) and len(shape) == 2
            and all(isinstance(v, Integral) and not isinstance(v, bool) and v > 0 for v in shape)):
        raise SettingsError(f"scan_shape must be two positive whole numbers (rows, columns), got {shape!r}; give ",
                            Param("scan_shape", form=True))
    if o.mode not in ("line", "pixel", "dwell"):
        raise SettingsError(f"sync mode must be 'line', 'pixel' or 'dwell', got {o.mode!r}")
    if o.mode == "dwell" and o.dwell_ns is None:
        raise SettingsError("without triggers the dwell time is needed: give ", Param("dwell_ns", form=True))
    dwell = _number("dwell_ns", o.dwell_ns, optional=True, positive=True)
    if dwell is not None and dwell < HIT_TICK_NS:
        raise SettingsError(f"dwell_ns must be at least {HIT_TICK_NS:g} ns (one Timepix3 hit tick), got {dwell:g}; "
                            f"give ", Param("dwell_ns"))
    _number("acceptance_ns", o.acceptance_ns, optional=True, positive=True)
    _number("start_ns", o.start_ns)
    _number("order_window_ns", o.order_window_ns, minimum=0.0)
    for name in ("skip_lines", "skip_frames", "flyback_frames"):
        v = getattr(o, name)
        if isinstance(v, bool) or not isinstance(v, Integral) or v < 0:
            raise SettingsError(f"{name} must be a whole number ≥ 0, got {v!r}; give ", Param(name))
    if not isinstance(o.keep_times, (bool, np.bool_)):
        raise SettingsError(f"keep_times must be True or False, got {o.keep_times!r}")


def check_scan_order(o) -> None:
    """Raise `SettingsError` unless the scan order of a `ricom.sources.timepix.sync.SyncOptions` fits:
    every position inside the scan, no flyback slots, and in line sync whole lines of SX points."""
    order, sx = o.scan_positions, o.scan_shape[1]
    order.flat(o.scan_shape)  # a position outside the scan: a one-line error now
    if o.flyback_frames:
        raise SettingsError("flyback frames do not combine with a list of scan positions; leave out ",
                            Param("flyback_frames"), " and give those slots as -1 in ", Param("scan_positions"))
    if o.mode == "line" and len(order) % sx:
        raise SettingsError(f"line sync places {sx} scan points per line, and the {len(order)} points of "
                            f"{order.name} do not fill whole lines: pad the list with -1 to a multiple of "
                            f"{sx}, or use ", Param("sync", "pixel"), " (a pixel trigger per point)")


@numba.njit(nogil=True, cache=True)
def screen_hits(t, x, y, tot, start, stop, gap, support_hits, state):
    """Leave out the time outliers among the hits ``[start, stop)`` of ``t, x, y, tot`` (in place).

    A hit is an outlier if it lies more than ``gap`` ticks after every hit kept before it
    (``state[0]``, valid once ``state[1]`` is 1) and at most half of the (up to
    ``support_hits``) hits after it in the block come later than its time − ``gap``; a
    block's last hit has none after it and is kept only as the stream's first.  A real jump
    in time (a pause, the first hit) is followed by hits near it and is kept.  The hits
    kept move to the front of the range in order.

    Returns ``(end of the kept hits, outliers)``; ``state`` is updated (the latest time kept
    so far, in any block; valid flag).
    """
    ref = state[0]
    have = state[1] != 0
    j = start
    n_out = 0
    for a in range(start, stop, _RUN):
        b = min(a + _RUN, stop)
        if have:  # nearly always: no hit of the run is ahead of ``ref`` by more than ``gap``
            top = t[a]
            for i in range(a + 1, b):
                top = max(top, t[i])
            if top - ref <= gap:
                ref = max(ref, top)
                if j != a:
                    for i in range(a, b):
                        t[j + i - a], x[j + i - a], y[j + i - a], tot[j + i - a] = t[i], x[i], y[i], tot[i]
                j += b - a
                continue
        for i in range(a, b):
            ti = t[i]
            if not have or ti - ref > gap:  # ahead of everything so far: do the hits after it follow?
                m = min(support_hits, stop - i - 1)
                follow = 0
                for q in range(i + 1, i + 1 + m):
                    if t[q] - ti >= -gap:
                        follow += 1
                if (m == 0 and have) or (m > 0 and 2 * follow <= m):
                    n_out += 1
                    continue
                if not have:
                    ref, have = ti, True
            ref = max(ref, ti)
            t[j], x[j], y[j], tot[j] = ti, x[i], y[i], tot[i]
            j += 1
    state[0], state[1] = ref, 1 if have else 0
    return j, n_out


@numba.njit(nogil=True, cache=True, inline="always")
def precheck_begin(screen):
    """``(reference, ahead)`` to start a decoder's pre-check of a block (see `precheck_end`)."""
    return screen[0], screen[1] == 0


@numba.njit(nogil=True, cache=True, inline="always")
def precheck_hit(tt, ref, ahead, gap):
    """``(reference, ahead)`` after a hit at ``tt``: `screen_hits`'s common case, inside a decoder's own pass."""
    return max(ref, tt), ahead | (tt - ref > gap)


@numba.njit(nogil=True, cache=True, inline="always")
def precheck_end(screen, ref, ahead, n_hits):
    """After a decoder's pass: if none of its ``n_hits`` hits was ahead, the block is screened
    (``screen[2]`` = 1, the reference moves on) and `screen_hits` need not run on it."""
    clean = n_hits > 0 and not ahead
    if clean:
        screen[0] = ref
    screen[2] = 1 if clean else 0


def check_dwell_span(n_slots: int, per_pass: int, n_events: int, latest_s: float, dwell_ns: float, start_ns: float,
                     scan_shape) -> None:
    """`InputError` if ``n_slots`` dwell-clock positions (from ``start_ns`` to the latest hit at
    ``latest_s``) are more passes of the scan than `MAX_PASSES`, or (from `MIN_FILL_PASSES`
    passes on) more positions than the ``n_events`` events read so far could fill."""
    passes = -(-int(n_slots) // int(per_pass))
    sy, sx = scan_shape
    where = (f"the events reach {latest_s:.6g} s, {passes:,} passes of the {sy}×{sx} scan at "
             f"{dwell_ns:g} ns per position after start_ns={start_ns:g}")
    if passes > MAX_PASSES:
        raise InputError(f"{where}: more than {MAX_PASSES:,}; check ", Param("dwell_ns"), " and ", Param("scan_shape"),
                         " (and the scan's start time, start_ns)")
    if passes >= MIN_FILL_PASSES and n_slots > n_events:
        raise InputError(f"{where}: {n_slots:,} positions for {n_events:,} events (fewer than one each); check ",
                         Param("dwell_ns"), " and ", Param("scan_shape"))


def check_slots(n_slots: int, what: str) -> None:
    """`InputError` if listing ``n_slots`` scan positions for one block would not fit in memory."""
    need = int(n_slots) * BYTES_PER_SLOT
    have = memory_budget_bytes()
    if need > have:
        raise InputError(f"{what} would list {int(n_slots):,} scan positions at once (about {need / 2**30:,.1f} GiB, "
                         f"more than the {have / 2**30:,.1f} GiB of memory here): the data are corrupt, or check ",
                         Param("scan_shape"))
