"""The Merlin data port as bytes: a socket read into one reusable buffer.

Owns `StreamBuffer`, which `ricom.sources.merlin.live.MerlinLiveSource` reads the
``MPX``-framed messages from: ``recv_into`` a preallocated buffer (no copy per read), wait
for a number of bytes with a poll interval so a stop request or a silent detector
(``timeout``) is noticed, and hand out views of the unread bytes.  Bytes that keep coming
without a whole message (`StreamBuffer.progress`) end too, after the same ``timeout``: a
peer streaming junk is not a silent one.
"""
from __future__ import annotations

import socket
import threading
import time

from ricom.core.errors import InputError, Param

_POLL_S = 0.05


class StreamBuffer:
    """A socket read into one preallocated buffer; ``buf[start:end]`` holds unread bytes."""

    def __init__(self, sock: socket.socket, stop: threading.Event | None, timeout: float | None) -> None:
        self.sock, self.stop, self.timeout = sock, stop, timeout
        self.buf, self.start, self.end, self.eof = bytearray(4 << 20), 0, 0, False
        self.last_data = self.last_progress = time.monotonic()
        self.last_recv_s = time.perf_counter()  # when bytes last arrived (for latency figures)
        sock.settimeout(_POLL_S)  # the kernel's receive-buffer autotuning is left on (no SO_RCVBUF)

    @property
    def available(self) -> int:
        return self.end - self.start

    def stopped(self) -> bool:
        return self.stop is not None and self.stop.is_set()

    def reserve(self, n: int) -> None:
        """Make room for ``n`` unread bytes from ``start`` (moves the unread tail to the front)."""
        if n > len(self.buf):
            new = bytearray(max(n, 2 * len(self.buf)))
            new[:self.available] = memoryview(self.buf)[self.start:self.end]
            self.buf, self.start, self.end = new, 0, self.available
        elif self.start + n > len(self.buf) or self.end == len(self.buf):
            a = self.available
            memoryview(self.buf)[:a] = memoryview(self.buf)[self.start:self.end]
            self.start, self.end = 0, a

    def recv(self) -> int:
        """One ``recv_into`` the free tail (waits at most a poll interval); 0 on timeout/EOF."""
        if self.eof:
            return 0
        if self.end == len(self.buf):
            self.reserve(self.available + 1)
        try:
            k = self.sock.recv_into(memoryview(self.buf)[self.end:])
        except TimeoutError:
            if self.timeout is not None and time.monotonic() - self.last_data > self.timeout:
                raise InputError(f"no data from the detector for {self.timeout:g} s; check the scan "
                                 "and trigger, or raise ", Param("timeout")) from None
            return 0
        except OSError:  # reset or closed: the same as the end of the stream
            k = 0
        self.eof = k == 0
        self.end, self.last_data, self.last_recv_s = self.end + k, time.monotonic(), time.perf_counter()
        if k and self.timeout is not None and self.last_data - self.last_progress > self.timeout:
            raise InputError(f"bytes kept arriving for {self.timeout:g} s without one complete Merlin message "
                             "(not Merlin data, or frames that never complete); check the data port, or raise ",
                             Param("timeout"))
        return k

    def progress(self) -> None:
        """Note that a whole message (header or frames) was read: the deadline for the next starts now."""
        self.last_progress = time.monotonic()

    def fill(self, n: int) -> bool:
        """Wait until ``n`` bytes are unread; False on end of stream or a stop request.

        The buffer grows as the bytes arrive (`recv` doubles it when full), so a damaged
        length field allocates nothing before the bytes it claims have come."""
        self.reserve(min(n, len(self.buf)))
        while self.available < n:
            if self.eof or self.stopped():
                return False
            self.recv()
        return True

    def consume(self, n: int) -> None:
        self.start += n

    def peek(self, n: int) -> bytes:
        return bytes(memoryview(self.buf)[self.start:self.start + min(n, self.available)])
