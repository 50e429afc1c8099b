"""One ZMQ PULL connection to a DECTRIS stream port, read by one series after another.

The detector PUSHes every message once to one consumer; what is not fetched is lost, so
the socket connects before the detector is armed (`StreamConnection` opens at once) and
has no receive limit (ZMQ queues what the reader has not taken yet).  Reads wait in short
slices so that a stop request (a `threading.Event`) ends any wait; `recv_batch` takes
every message already queued in one call, so per-frame costs stay in ZMQ.  Messages read
too early (the next series' header) go back with `push_back`.
"""
from __future__ import annotations

import collections
import threading
import time

from ricom.core.errors import InputError

POLL_S = 0.05
"""Longest wait between checks of the stop request."""


def _zmq():
    try:
        import zmq
    except ImportError as exc:  # the optional extra ``dectris``
        raise InputError("DECTRIS live streams need the package pyzmq (pip install 'ricom[dectris]')") from exc
    return zmq


class StreamConnection:
    """A PULL socket connected to ``tcp://host:port`` (see the module docstring).

    Parameters
    ----------
    host, port : str, int
        The detector's stream interface and port (9999 for stream V1, 31001 for V2).
    stop : threading.Event, optional
        Set it to end any wait.
    """

    def __init__(self, host: str, port: int, *, stop: threading.Event | None = None) -> None:
        zmq = _zmq()
        self.host, self.port, self.stop = host, int(port), stop
        self.lost = False
        self._pending: collections.deque = collections.deque()
        self._ctx = zmq.Context()
        self._again = zmq.Again
        self._noblock = int(zmq.NOBLOCK)  # a plain int: an enum costs a call per message
        self.sock = self._ctx.socket(zmq.PULL)
        self.sock.setsockopt(zmq.RCVHWM, 0)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.setsockopt(zmq.RCVBUF, 16 << 20)
        try:
            self.sock.connect(f"tcp://{host}:{self.port}")
        except zmq.ZMQError as exc:
            self.close()
            raise InputError(f"cannot open the DECTRIS stream tcp://{host}:{self.port} ({exc})") from None
        self.last_data = time.monotonic()

    @property
    def where(self) -> str:
        return f"{self.host}:{self.port}"

    def stopped(self) -> bool:
        return self.stop is not None and self.stop.is_set()

    def push_back(self, message: list) -> None:
        """Return a message read too early; the next `recv` gives it first."""
        self._pending.appendleft(message)

    def recv(self, timeout: float | None) -> list | None:
        """The next message (a list of byte strings), or None after ``timeout`` seconds
        (None: no limit) or a stop request."""
        if self._pending:
            return self._pending.popleft()
        t_end = None if timeout is None else time.monotonic() + timeout
        while not self.stopped():
            wait = POLL_S if t_end is None else min(POLL_S, t_end - time.monotonic())
            if wait <= 0:
                return None
            if self.sock.poll(int(wait * 1000) + 1):
                self.last_data = time.monotonic()
                return self.sock.recv_multipart()
        return None

    def recv_batch(self, limit: int, timeout: float | None) -> list:
        """Up to ``limit`` messages: waits (as `recv`) for the first, then takes the ones
        already queued without waiting."""
        first = self.recv(timeout)
        if first is None:
            return []
        out = [first]
        while self._pending and len(out) < limit:
            out.append(self._pending.popleft())
        recv, noblock = self.sock.recv_multipart, self._noblock
        try:
            while len(out) < limit:
                out.append(recv(noblock))
        except self._again:
            pass
        self.last_data = time.monotonic()
        return out

    def idle_s(self) -> float:
        return time.monotonic() - self.last_data

    def close(self) -> None:
        sock, self.sock = getattr(self, "sock", None), None
        if sock is not None:
            sock.close(0)
        ctx, self._ctx = getattr(self, "_ctx", None), None
        if ctx is not None:
            ctx.term()

    @property
    def closed(self) -> bool:
        return self.sock is None

    def __enter__(self) -> StreamConnection:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


__all__ = ["StreamConnection"]
