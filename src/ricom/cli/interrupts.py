"""Ctrl-C (SIGINT) in the phases of a command that reconstructs and saves.

Every instant of a run is covered:

- **start-up** (parsing, imports, opening the input; `take_over` and `Interrupts`):
  nothing is written yet, so in the ``ricom`` process itself Ctrl-C prints one line and
  ends the process at once with status 130 (`end_interrupted`).  A `KeyboardInterrupt`
  would not do: raised inside a weak-reference callback of the import machinery it is
  printed as "Exception ignored" and lost.  Where ``main`` runs inside another program
  (tests), it is Python's `KeyboardInterrupt`, which ``main`` turns into exit 130.
- **processing** (`Interrupts.keep`, from the first chunk on): Ctrl-C sets the run's
  ``stop`` event, so the pipeline ends after the current chunk and keeps what it has;
  no exception can land in its clean-up or between the run and the save.
- **saving** (`deferred`, around the auto-rotation and the atomic write): Ctrl-C is held
  back until the file is complete; each one in between prints ``ricom: finishing the
  save…``.  Afterwards it is handed to the handler that was there before (a live
  session's, which ends the session) unless that is Python's default, which would raise
  in the middle of the summary; the caller then reads `Held.count` (exit 130).
- **shutdown**: `quiet_shutdown` ignores SIGINT once the command has returned, so no
  "Exception ignored in atexit callback" can appear; `end_interrupted` ends a process
  whose start-up was interrupted with exactly status 130.

Signal handlers can only be set in the main thread; elsewhere (a command run from a
thread) these helpers change nothing.  Handlers write with `os.write`, never `print`,
so that a signal landing inside a `print` cannot break the stream.
"""
from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Iterator

SAVING_NOTE = "ricom: finishing the save…"
INTERRUPTED = 130

_own_process = False
"""True once `take_over` ran: ricom's ``main`` owns the process (the ``ricom`` command)."""


def say(line: str) -> None:
    """One line on stderr, safe inside a signal handler."""
    with contextlib.suppress(OSError):
        os.write(2, (line + "\n").encode())


def _in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def _start_up_signal(signum, frame) -> None:
    """Ctrl-C before anything is written: one line, and the process ends with 130."""
    if not _own_process:
        raise KeyboardInterrupt
    say("ricom: interrupted")
    end_interrupted(INTERRUPTED)


def take_over() -> None:
    """The ``ricom`` command owns this process: Ctrl-C during start-up ends it at once (130)."""
    global _own_process
    if _in_main_thread():
        _own_process = True
        signal.signal(signal.SIGINT, _start_up_signal)


def hand_back() -> None:
    """Python's `KeyboardInterrupt` again (for commands that handle it themselves)."""
    if _in_main_thread():
        signal.signal(signal.SIGINT, signal.default_int_handler)


class Held:
    """Ctrl-C held back by `deferred`: ``count`` of them, and whether they were handed on."""

    def __init__(self) -> None:
        self.count = 0
        self.handed_on = False

    def __call__(self, signum, frame) -> None:
        self.count += 1
        say(SAVING_NOTE)


@contextlib.contextmanager
def deferred() -> Iterator[Held]:
    """Hold Ctrl-C back while the block runs (main thread only).

    On leaving, the previous handler is back; a held Ctrl-C is handed to it when it is a
    handler of a frontend (a Python function other than Python's default and than
    `Interrupts`), so a live session still stops; otherwise ``held.count`` tells the
    caller (the command's exit code).
    """
    held = Held()
    if not _in_main_thread():
        yield held
        return
    previous = signal.signal(signal.SIGINT, held)
    try:
        yield held
    finally:
        signal.signal(signal.SIGINT, previous)
    if held.count and callable(previous) and previous is not signal.default_int_handler \
            and not isinstance(getattr(previous, "__self__", None), Interrupts):
        held.handed_on = True
        previous(signal.SIGINT, None)


class Interrupts:
    """Ctrl-C of one reconstructing command: start-up (nothing written: exit 130) until
    `keep`, then a stop request.

    Use as a context manager around the command; call `keep` when processing starts (the
    `before_run` hook of `ricom.api.reconstruct_run`), or `hand_back` before work that
    handles `KeyboardInterrupt` itself (a Dask cluster).

    Attributes
    ----------
    stop : threading.Event
        Set by Ctrl-C once `keep` was called; hand it to the run.
    count : int
        Ctrl-C received since `keep`.
    """

    def __init__(self) -> None:
        self.stop = threading.Event()
        self.count = 0
        self._previous = None
        self._installed = False

    def __enter__(self) -> Interrupts:
        if _in_main_thread():
            self._previous = signal.signal(signal.SIGINT, _start_up_signal)
            self._installed = True
        return self

    def keep(self, *_ignored) -> None:
        """From now on Ctrl-C ends the run after the current chunk and keeps the result."""
        if self._installed:
            signal.signal(signal.SIGINT, self._on_signal)

    def hand_back(self) -> None:
        """Python's `KeyboardInterrupt` until `keep` (work that handles it itself)."""
        if self._installed:
            signal.signal(signal.SIGINT, signal.default_int_handler)

    def _on_signal(self, signum, frame) -> None:
        """The first Ctrl-C stops the run (the summary line says so); later ones say the
        save is being finished."""
        self.count += 1
        if self.stop.is_set():
            say(SAVING_NOTE)
        self.stop.set()

    def __exit__(self, *exc) -> None:
        if self._installed:
            signal.signal(signal.SIGINT, self._previous)
            self._installed = False


def quiet_shutdown() -> None:
    """Ignore Ctrl-C from now on: the command has returned, the interpreter is ending."""
    if _in_main_thread():
        signal.signal(signal.SIGINT, signal.SIG_IGN)


def end_interrupted(status: int) -> None:
    """End the process now with ``status``, after Ctrl-C that no command handled.

    Python's own exit would report "killed by SIGINT" instead of ``status`` when the
    `KeyboardInterrupt` passed through code that C extensions run at import time (the
    interpreter then remembers it as unhandled), and would wait for threads that may be
    blocked; nothing is left to save at this point (an atomic save removes its
    temporary file on the way out).
    """
    import sys

    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(status)
