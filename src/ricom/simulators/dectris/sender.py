"""The ZeroMQ side of the DECTRIS simulator: one PUSH socket and the thread that plays each series.

`Series` is one armed acquisition (its id, how many frames, which of them wait for
``trigger`` commands, its prebuilt header/end messages and the cached encoded frames);
`Sender` owns the socket (ZeroMQ sockets belong to one thread) and plays a series:
leftover images of the previous series (a fault), the header, the frames (paced by a
clock when a rate is set; software triggers release ``nimages`` frames each), and the
end message — or nothing more after a stall.  Frame blobs are prebuilt ``zmq.Frame``
objects sent without copying; only the small per-frame JSON parts (V1) or the message
head (V2) are built per frame.
"""
from __future__ import annotations

import dataclasses
import threading
import time

from ricom.simulators.dectris import encode

SEND_HWM = 200_000  # queued messages before send blocks (a slow client slows the detector down)
POLL_S = 0.1


@dataclasses.dataclass(eq=False)
class Series:
    """One armed acquisition, as the sender plays it (counters shared with the REST threads)."""

    series_id: int
    stream: str  # "v1" | "v2"
    frames: int  # ntrigger × nimages
    limit: int  # frames actually sent (faults end or stall the series early)
    stalls: bool
    nimages: int
    triggered: bool  # ints / inte: frames wait for `trigger` commands
    encoded: list
    header: list  # messages (V1: lists of parts; V2: bytes)
    end: object
    frame_ns: int
    count_ns: int
    leftovers: list = dataclasses.field(default_factory=list)
    v2: encode.V2Images | None = None
    allowed: int = 0  # frames released so far (by arm in exts/exte, by triggers in ints/inte)
    sent: int = 0
    stop: str | None = None  # "disarm" | "cancel" | "abort" | "shutdown"
    done: threading.Event = dataclasses.field(default_factory=threading.Event)

    def image(self, i: int) -> list | bytes:
        """Image message ``i`` of this series (frame ``i % len(encoded)`` of the data)."""
        item = self.encoded[i % len(self.encoded)]
        start_ns = i * self.frame_ns
        if self.stream == "v1":
            blob, dimage_d, md5 = item
            return encode.v1_image_parts(self.series_id, i, blob, dimage_d, md5, start_ns, self.count_ns)
        return self.v2.message(i, item, start_ns, self.count_ns)


class Sender:
    """The PUSH socket and its thread (see the module docstring).

    Parameters
    ----------
    host, port : str, int
        Where to bind (port 0 picks a free one; `port` is then the bound one).
    cond : threading.Condition
        Guards the series counters; notified on triggers and stops.
    rate_hz : float
        Frames per second (0 = as fast as possible).
    on_end : callable
        Called with the finished `Series` (after its end message, or at a stall's stop).
    """

    def __init__(self, host: str, port: int, cond: threading.Condition, rate_hz: float, on_end) -> None:
        import zmq

        self._zmq = zmq
        self.ctx = zmq.Context()
        self.sock = self.ctx.socket(zmq.PUSH)
        self.sock.setsockopt(zmq.SNDHWM, SEND_HWM)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.setsockopt(zmq.SNDTIMEO, int(POLL_S * 1000))
        try:
            if int(port):
                self.sock.bind(f"tcp://{host}:{int(port)}")
                self.port = int(port)
            else:
                self.port = self.sock.bind_to_random_port(f"tcp://{host}")
        except zmq.ZMQError:
            self.sock.close()
            self.ctx.term()
            raise
        self.cond, self.rate_hz, self.on_end = cond, float(rate_hz), on_end
        self.queue: list[Series] = []
        self.stopping = False
        self.thread = threading.Thread(target=self._run, daemon=True, name="ricom-dectris-stream")
        self.thread.start()

    def submit(self, series: Series) -> None:
        with self.cond:
            self.queue.append(series)
            self.cond.notify_all()

    def close(self, timeout: float = 5.0) -> None:
        with self.cond:
            self.stopping = True
            for s in self.queue:
                s.stop = "shutdown"
            self.cond.notify_all()
        self.thread.join(timeout)
        self.sock.close(0)
        self.ctx.term()

    # --- the thread --------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            with self.cond:
                while not self.queue and not self.stopping:
                    self.cond.wait(POLL_S)
                if self.stopping:
                    return
                series = self.queue[0]
            try:
                self._play(series)
            finally:
                with self.cond:
                    self.queue.remove(series)
                series.done.set()

    def _send(self, msg, series: Series) -> bool:
        """Send one message (retrying while no client takes it); False when the series stopped."""
        again = self._zmq.Again
        while True:
            try:
                if isinstance(msg, list):
                    last = len(msg) - 1
                    for k, part in enumerate(msg):
                        self.sock.send(part, self._zmq.SNDMORE if k < last else 0, copy=False)
                else:
                    self.sock.send(msg, copy=False)
                return True
            except again:
                if series.stop is not None:
                    return False

    def _play(self, series: Series) -> None:
        for msg in series.leftovers + series.header:
            if not self._send(msg, series):
                break
        self._frames(series)
        if series.stalls and series.sent == series.limit:
            with self.cond:  # the stream stalls: nothing more, until a disarm/abort ends the series
                while series.stop is None:
                    self.cond.wait(POLL_S)
        elif series.stop != "shutdown":
            self._send(series.end, series)
        self.on_end(series)

    def _frames(self, series: Series) -> None:
        """Send the frames as they are released, until the limit or a stop (disarm, cancel, abort)."""
        t0, rate = time.monotonic(), self.rate_hz
        i = 0
        while i < series.limit and series.stop is None:
            if i >= series.allowed:  # software triggers: wait for the next one
                with self.cond:
                    while i >= series.allowed and series.stop is None:
                        self.cond.wait(POLL_S)
                t0 = time.monotonic() - i / rate if rate else t0
                continue
            if rate:
                ahead = t0 + i / rate - time.monotonic()
                if ahead > 0:
                    time.sleep(min(ahead, POLL_S))
                    continue
            if not self._send(series.image(i), series):
                return
            i += 1
            series.sent = i
