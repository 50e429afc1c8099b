"""Live streams that misbehave (issue 18, part 5): junk that never makes a frame, frames
that arrive twice, jumps in the frame numbers (Merlin data port and DECTRIS ZeroMQ).

Each stream here is written by hand, independently of the simulators.
"""
from __future__ import annotations

import socket
import threading
import time
import warnings

import numpy as np
import pytest

from dectris_wire import Pusher, v1_end, v1_header, v1_image
from ricom import api
from ricom.core.errors import InputError
from ricom.live.bookkeeping import count_scan
from ricom.sources.dectris.connection import StreamConnection
from ricom.sources.dectris.live import DectrisLiveSource
from ricom.sources.dectris.stream_v1 import V1Protocol
from ricom.sources.frame_order import FrameOrder
from ricom.sources.merlin.encode import encode_frames
from ricom.sources.merlin.live import MerlinLiveSource, mpx_prefix

SCAN, DET = (3, 4), (16, 16)
N = SCAN[0] * SCAN[1]
SETTINGS = api.make_settings(kernel_size=3, center_yx=(7.5, 7.5))


def _frames(n=N, seed=1):
    rng = np.random.default_rng(seed)
    return rng.poisson(3.0, (n, *DET)).astype(np.uint16)


class _Server:
    """A TCP 'detector' on loopback: sends ``payload``, then calls ``then(conn)`` until stopped."""

    def __init__(self, payload: bytes, then=None) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(10)
        self.port = self.listener.getsockname()[1]
        self.stop = threading.Event()
        self.payload, self.then = payload, then
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        try:
            conn, _ = self.listener.accept()
        except OSError:
            return
        with conn:
            try:
                conn.sendall(self.payload)
                while self.then is not None and not self.stop.is_set():
                    self.then(conn)
            except OSError:
                pass
            self.stop.wait(10)

    def close(self) -> None:
        self.stop.set()
        self.listener.close()
        self.thread.join(10)


def _hdr(n: int) -> bytes:
    hdr = (f"HDR,\nFrames in Acquisition (Number):\t{n}\nFrames per Trigger (Number):\t{SCAN[1]}\n"
           f"Counter Depth (number):\t12\nEnd\t").encode()
    return mpx_prefix(len(hdr)) + hdr


def _messages(frames, sequence) -> bytes:
    out = []
    for seq in sequence:
        body = encode_frames(frames[seq - 1:seq], 12, False, start_seq=seq)
        out.append(mpx_prefix(len(body)) + body)
    return b"".join(out)


def _junk(conn) -> None:
    conn.sendall(b"\x00junk" * 50)
    time.sleep(0.01)


def _trickle(conn) -> None:
    conn.sendall(b"x")
    time.sleep(0.05)


def test_merlin_junk_only_stream_times_out_despite_never_falling_silent():
    server = _Server(b"", then=_junk)
    t0 = time.monotonic()
    try:
        with pytest.raises(InputError, match=r"without one complete Merlin message.*timeout"):
            MerlinLiveSource("127.0.0.1", server.port, timeout=1.0)
    finally:
        server.close()
    assert time.monotonic() - t0 < 8


def test_merlin_frame_that_never_completes_times_out():
    frames = _frames()
    first = _messages(frames, [1])
    body_len = len(first) - 15  # the MPX prefix is 15 bytes
    payload = _hdr(N) + first + mpx_prefix(body_len)  # frame 2 announced, then bytes trickle forever
    server = _Server(payload, then=_trickle)
    try:
        source = MerlinLiveSource("127.0.0.1", server.port, timeout=1.0)
        with pytest.raises(InputError, match="without one complete Merlin message"):
            for _ in source.chunks(64):
                pass
        source.close()
    finally:
        server.close()


def _receive_merlin(sequence, **options):
    frames = _frames()
    server = _Server(_hdr(N) + _messages(frames, sequence))
    try:
        source = MerlinLiveSource("127.0.0.1", server.port, timeout=5.0, **options)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            result, rec, _ = api.reconstruct_run(source, settings=SETTINGS, chunk_size=64)
        source.close()
    finally:
        server.close()
    return frames, result, rec, source, [str(w.message) for w in caught]


def _offline(frames):
    return api.reconstruct(frames.reshape(*SCAN, *DET), settings=SETTINGS)


def test_merlin_duplicate_frame_is_dropped_counted_and_reported():
    frames, result, rec, source, notes = _receive_merlin([1, 2, 3, 4, 5, 5, 6, 7, 8, 9, 10, 11, 12])
    assert result.error is None
    assert source.frames_duplicated == 1 and source.frames_lost == 0
    assert rec.moments.hits.tolist() == [1] * N  # not added twice
    np.testing.assert_allclose(rec.snapshot().ricom, _offline(frames).ricom, rtol=1e-12, atol=1e-12)
    assert any("1 frames arrived a second time (sequence number 5 first)" in n for n in notes)
    count = count_scan(rec, source)
    assert count.n_duplicates == 1 and count.consistent and "dropped" in count.note
    assert count.as_attrs()["n_duplicates"] == 1


def test_merlin_gap_is_named_at_the_frame_where_it_happened():
    sequence = [*range(1, 11), 12]  # frame 11 is lost
    _, _, rec, source, notes = _receive_merlin(sequence)
    jump = [n for n in notes if "jump" in n]
    assert jump and "jump from 10 to 12 at frame 11 (1 frames lost" in jump[0], notes
    assert source.frames_lost == 1 and rec.moments.hits[10] == 0


def test_merlin_late_frame_fills_its_hole_and_is_not_a_duplicate():
    _, _, rec, source, _ = _receive_merlin([1, 2, 4, 3, *range(5, 13)])
    assert source.frames_lost == 0 and source.frames_duplicated == 0
    assert rec.moments.hits.tolist() == [1] * N


# ---------------------------------------------------------------- DECTRIS

def _config(n):
    return {"nimages": 1, "ntrigger": n, "trigger_mode": "exte", "x_pixels_in_detector": DET[1],
            "y_pixels_in_detector": DET[0], "compression": "none", "count_time": 1e-4, "frame_time": 1e-4,
            "bit_depth_image": 16}


def test_dectris_stream_of_junk_messages_times_out():
    push = Pusher()
    conn = StreamConnection("127.0.0.1", push.port)
    stop = threading.Event()
    frames = _frames()

    def junk():
        push.send([*v1_header(7, _config(N)), v1_image(7, 0, frames[0], "none")])
        while not stop.is_set():
            push.send([[b"not a DECTRIS message"]])
            time.sleep(0.01)

    sender = threading.Thread(target=junk, daemon=True)
    sender.start()
    t0 = time.monotonic()
    try:
        source = DectrisLiveSource(conn, V1Protocol(), header_timeout=5, timeout=1.0, scan_shape=SCAN)
        result, _, _ = api.reconstruct_run(source, settings=SETTINGS, chunk_size=8)
    finally:
        stop.set()
        sender.join(10)
        conn.close()
        push.close()
    assert result.error is not None and "but no image for 1 s after 1 of 12 frames" in result.error
    assert time.monotonic() - t0 < 10


def test_dectris_duplicate_image_is_dropped_and_counted():
    frames = _frames()
    order = [*range(6), 5, *range(6, N)]
    msgs = v1_header(8, _config(N)) + [v1_image(8, i, frames[i], "none") for i in order] + [v1_end(8)]
    push = Pusher()
    conn = StreamConnection("127.0.0.1", push.port)
    try:
        push.send(msgs)
        source = DectrisLiveSource(conn, V1Protocol(), header_timeout=5, timeout=2, scan_shape=SCAN)
        with pytest.warns(RuntimeWarning, match="arrived a second time \\(image number 5 first\\)"):
            result, rec, _ = api.reconstruct_run(source, settings=SETTINGS, chunk_size=4)
    finally:
        conn.close()
        push.close()
    assert result.error is None and source.frames_duplicated == 1 and source.frames_received == N
    assert rec.moments.hits.tolist() == [1] * N
    np.testing.assert_allclose(rec.snapshot().ricom, _offline(frames).ricom, rtol=1e-12, atol=1e-12)


# ---------------------------------------------------------------- the bookkeeping itself

def test_frame_order_counts_across_chunks_against_a_set():
    """Random arrival orders with repeats, cut into chunks: lost and duplicates as a set gives them."""
    rng = np.random.default_rng(5)
    for _ in range(50):
        arrivals = rng.integers(0, 40, rng.integers(1, 80))
        order = FrameOrder("numbers", "number")
        keeps = []
        for part in np.array_split(arrivals, rng.integers(1, 6)):
            if len(part):
                keep, _ = order.accept(part)
                keeps.append(np.ones(len(part), bool) if keep is None else keep)
        seen, expected_keep = set(), []
        for x in arrivals.tolist():
            expected_keep.append(x not in seen)
            seen.add(x)
        assert np.concatenate(keeps).tolist() == expected_keep
        assert order.duplicates == len(arrivals) - len(seen)
        assert order.next == max(seen) + 1 and order.lost == order.next - len(seen)
