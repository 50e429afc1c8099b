"""Progress of long work, the same for every command: a bar on a terminal, a line every few
seconds when the output is piped or logged, and one summary line at the end.

Owns `Progress` (what every command and the pipeline report through), `count_text`
(``65 536``: digits grouped with spaces) and `yes_no` (how a switch such as flip is
written everywhere: ``yes``/``no``).

On a terminal (stderr is a TTY) the bar is tqdm's and vanishes when the work is done;
otherwise a line such as ``ricom: simulate: 40 % (26 214/65 536 patterns, 12 s)`` is
written every ``RICOM_PROGRESS_EVERY_S`` seconds (default 5; none for work that ends
sooner), by a background thread when the work reports seldom.  `Progress.summary`
gives the closing line (what, how many, how fast, where written) that the command
prints on stdout.

Examples
--------
>>> import io
>>> out = io.StringIO()
>>> ticks = iter([0.0, 6.0, 8.0])
>>> with Progress("simulate", 4096, stream=out, clock=lambda: next(ticks)) as p:
...     p.update(1024)
>>> out.getvalue()
'ricom: simulate: 25 % (1 024/4 096 patterns, 6 s)\\n'
>>> p.summary("wrote x.npy")
'ricom simulate: 1 024 patterns in 8.0 s (128 patterns/s); wrote x.npy'
"""
from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable

EVERY_S_VARIABLE = "RICOM_PROGRESS_EVERY_S"
DEFAULT_EVERY_S = 5.0


def count_text(n: float) -> str:
    """A count with its digits grouped by spaces: ``65 536``; fractions keep one decimal below 100.

    Examples
    --------
    >>> count_text(65536), count_text(12.345), count_text(1234.5)
    ('65 536', '12.3', '1 234')
    """
    if isinstance(n, float) and abs(n) < 100 and n != int(n):
        return f"{n:.1f}"
    return f"{round(n):,}".replace(",", " ")


def yes_no(value) -> str:
    """A switch as every frontend writes it: ``yes``/``no`` (None: ``unknown``).

    Examples
    --------
    >>> yes_no(True), yes_no(False), yes_no(None)
    ('yes', 'no', 'unknown')
    """
    return "unknown" if value is None else ("yes" if value else "no")


def every_s() -> float:
    """Seconds between progress lines when piped: ``RICOM_PROGRESS_EVERY_S``, default 5."""
    try:
        value = float(os.environ.get(EVERY_S_VARIABLE, DEFAULT_EVERY_S))
    except ValueError:
        return DEFAULT_EVERY_S
    return value if value > 0 else DEFAULT_EVERY_S


class Progress:
    """Progress of one piece of work.

    Parameters
    ----------
    what : str
        The work, as the user named it (``"simulate"``, ``"convert"``, ``"report"``).
    total : int, optional
        Units to do, if known.
    unit : str
        What is counted (``"patterns"``, ``"events"``, ``"steps"``).
    show : bool
        False: count silently (for `summary`), no bar and no lines.
    stream : file, optional
        Where the bar or lines go (default ``sys.stderr``).
    every_s : float, optional
        Seconds between lines when ``stream`` is not a terminal (default `every_s`).
    clock : callable, optional
        Seconds, monotonic (for tests).
    background : bool, optional
        Write the lines from a background thread too, so that they keep coming while one
        step takes long (default: with the real clock).
    """

    def __init__(self, what: str, total: int | None = None, unit: str = "patterns", *, show: bool = True,
                 stream=None, every_s: float | None = None, clock: Callable[[], float] = time.monotonic,
                 background: bool | None = None) -> None:
        self.what, self.total, self.unit = what, total, unit
        self.stream = sys.stderr if stream is None else stream
        self.every_s = globals()["every_s"]() if every_s is None else float(every_s)
        self.clock = clock
        self.n, self.note = 0, ""
        self.t0 = clock()
        self.t_end: float | None = None
        self.last = self.t0
        self.bar = None
        self.show = show
        self._lock = threading.Lock()
        self._stop: threading.Event | None = None
        if show and not _is_terminal(self.stream) and (clock is time.monotonic if background is None else background):
            self._stop = threading.Event()
            threading.Thread(target=self._beat, name="ricom-progress", daemon=True).start()
        if show and _is_terminal(self.stream):
            from tqdm import tqdm
            self.bar = tqdm(total=total, desc=what, unit=f" {unit}", unit_scale=total is None or total >= 10_000,
                            leave=False,
                            file=self.stream, smoothing=0.1, dynamic_ncols=True)

    def update(self, n: int = 1, note: str | None = None) -> None:
        """Count ``n`` more units done; ``note`` says what is being done now (``"dose 1e+03"``)."""
        self.n += n
        if note is not None:
            self.note = note
        if self.bar is not None:
            if note is not None:
                self.bar.set_postfix_str(note, refresh=False)
            self.bar.update(n)
            return
        self._maybe_write()

    def _maybe_write(self) -> None:
        with self._lock:
            now = self.clock()
            if self.show and self.t_end is None and now - self.last >= self.every_s:
                self.last = now
                self.stream.write(self.line(now) + "\n")
                self.stream.flush()

    def _beat(self) -> None:
        while not self._stop.wait(min(self.every_s, 1.0)):
            self._maybe_write()

    def line(self, now: float | None = None) -> str:
        """The progress line: ``ricom: simulate: 40 % (26 214/65 536 patterns, 12 s)``."""
        seconds = (self.clock() if now is None else now) - self.t0
        done = f"{count_text(self.n)}/{count_text(self.total)}" if self.total else count_text(self.n)
        share = f"{100 * self.n / self.total:.0f} % (" if self.total else "("
        note = f"; {self.note}" if self.note else ""
        return f"ricom: {self.what}: {share}{done} {self.unit}, {seconds:.0f} s{note})"

    @property
    def seconds(self) -> float:
        """Wall time from the start to `close` (or to now)."""
        return (self.clock() if self.t_end is None else self.t_end) - self.t0

    def summary(self, written: str = "", rate: bool = True) -> str:
        """The closing line: ``ricom simulate: 65 536 patterns in 58.1 s (1 128 patterns/s); wrote x.npy``."""
        seconds = self.seconds
        text = f"ricom {self.what}: {count_text(self.n)} {self.unit} in {seconds:.1f} s"
        if rate and seconds > 0 and self.n:
            text += f" ({count_text(self.n / seconds)} {self.unit}/s)"
        return f"{text}; {written}" if written else text

    def close(self) -> None:
        """The work is done (or stopped): the bar vanishes, the clock stops."""
        with self._lock:
            if self.t_end is None:
                self.t_end = self.clock()
        if self._stop is not None:
            self._stop.set()
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _is_terminal(stream) -> bool:
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty and isatty())
    except (ValueError, OSError):  # a closed stream
        return False
