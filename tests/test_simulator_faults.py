"""The Merlin simulator's fault modes, checked against an independent reader of the raw TCP stream.

`read_stream` is a small plain-Python parser written from FORMATS.md §2 (``MPX,`` +
10-digit length + 1, ``HDR,`` payloads, ``MQ1,`` frame headers with their sequence
numbers), not ricom's client; one test also runs ricom's client
(`MerlinLiveSource`) on the first of several acquisitions.  Every server listens on a
free port of 127.0.0.1 and is stopped by its context manager; every wait is bounded.
"""
from __future__ import annotations

import socket
import time

import numpy as np
import pytest

from ricom.cli.main import build_parser
from ricom.cli.simulate_merlin import build_server
from ricom.core.errors import SettingsError
from ricom.simulators.merlin.server import MerlinServer
from ricom.sources.merlin.live import MerlinLiveSource

SCAN, DET = (8, 8), (16, 16)
N = SCAN[0] * SCAN[1]
FRAMES = np.random.default_rng(5).integers(0, 4000, (N, *DET)).astype(np.uint16)


def read_stream(port: int, idle_s: float = 0.4, limit_s: float = 10.0) -> tuple[list, bool]:
    """Messages on the data port until ``idle_s`` of silence, EOF or ``limit_s``.

    Returns ``(events, closed)``: events are ``("junk", n_bytes)``, ``("hdr", fields)``
    and ``("frame", sequence_number)`` in stream order; ``closed`` says the server closed
    the connection.
    """
    events, buf, closed = [], b"", False
    with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
        sock.settimeout(idle_s)
        end = time.monotonic() + limit_s
        while time.monotonic() < end:
            try:
                data = sock.recv(1 << 20)
            except TimeoutError:
                break
            if not data:
                closed = True
                break
            buf += data
            buf = _take_messages(buf, events)
    return events, closed


def _take_messages(buf: bytes, events: list) -> bytes:
    """Parse whole messages off the front of ``buf`` into ``events``; the rest is returned."""
    while True:
        at = buf.find(b"MPX,")
        if at < 0 or len(buf) < at + 15:
            return buf
        if at:
            events.append(("junk", at))
            buf = buf[at:]
        assert buf[14:15] == b",", buf[:15]
        size = int(buf[4:14]) - 1
        if len(buf) < 15 + size:
            return buf
        payload, buf = buf[15:15 + size], buf[15 + size:]
        if payload.startswith(b"HDR,"):
            fields = {}
            for line in payload.decode("latin-1").splitlines():
                key, sep, value = line.partition(":")
                if sep:
                    fields[key.strip()] = value.strip()
            events.append(("hdr", fields))
        else:
            assert payload.startswith(b"MQ1,"), payload[:20]
            events.append(("frame", int(payload[4:10])))


def acquisitions(events: list) -> list[dict]:
    """Group events by header: per acquisition the junk before it, its header fields and frame numbers."""
    out, junk = [], 0
    for kind, value in events:
        if kind == "junk":
            junk += value
        elif kind == "hdr":
            out.append({"junk": junk, "frames_in_hdr": int(value["Frames in Acquisition (Number)"]),
                        "scan": (int(value["ScanY"]), int(value["ScanX"])), "seq": []})
            junk = 0
        else:
            assert out, "a frame before any header"
            out[-1]["seq"].append(value)
    return out


def server(**options) -> MerlinServer:
    options = {"scan_shape": SCAN, "data_port": 0, "control_port": None, "start_on": "connect", **options}
    return MerlinServer(FRAMES, **options)


def test_default_one_acquisition_then_quiet():
    with server() as s:
        events, closed = read_stream(s.data_port)
    [acq] = acquisitions(events)
    assert acq == {"junk": 0, "frames_in_hdr": N, "scan": SCAN, "seq": list(range(1, N + 1))}
    assert not closed and s.error is None


def test_several_acquisitions_with_their_own_scan_and_junk():
    shapes = [(8, 8), (4, 8), (10, 8), (2, 3)]  # (10, 8) runs past the data: it starts again at frame 1
    with server(acquisitions=4, between_s=0.05, scan_shapes=shapes, junk_bytes=7, junk_between=5) as s:
        events, closed = read_stream(s.data_port)
    got = acquisitions(events)
    assert [a["scan"] for a in got] == shapes
    assert [a["frames_in_hdr"] for a in got] == [sy * sx for sy, sx in shapes]
    assert [a["junk"] for a in got] == [7, 5, 5, 5]
    for a, (sy, sx) in zip(got, shapes, strict=True):
        assert a["seq"] == list(range(1, sy * sx + 1))  # numbering restarts at 1 with each header
    assert not closed and s.acquisitions == 4 and s.error is None


def test_scan_shapes_cycle_over_the_acquisitions():
    with server(acquisitions=3, scan_shapes=[(2, 2), (1, 3)]) as s:
        got = acquisitions(read_stream(s.data_port)[0])
    assert [(a["scan"], len(a["seq"])) for a in got] == [((2, 2), 4), ((1, 3), 3), ((2, 2), 4)]


def test_abort_after_k_frames_then_the_next_header():
    with server(acquisitions=2, abort_after=5) as s:
        got = acquisitions(read_stream(s.data_port)[0])
    assert [(a["frames_in_hdr"], a["seq"]) for a in got] == [(N, [1, 2, 3, 4, 5])] * 2
    with server(acquisitions=3, abort_after=[5, None]) as s:  # one value per acquisition, in turn
        got = acquisitions(read_stream(s.data_port)[0])
    assert [a["seq"][-1] for a in got] == [5, N, 5]
    assert all(a["seq"] == list(range(1, len(a["seq"]) + 1)) for a in got)


def test_header_scan_shape_disagrees_with_the_frames():
    with server(header_scan_shape=(4, 5)) as s:
        [a] = acquisitions(read_stream(s.data_port)[0])
    assert (a["scan"], a["frames_in_hdr"], len(a["seq"])) == ((4, 5), 20, N)  # count as Merlin computes it
    with server(header_scan_shape=(16, 16), header_frames=100, acquisitions=2, scan_shapes=[(4, 4)]) as s:
        got = acquisitions(read_stream(s.data_port)[0])
    assert [(a["scan"], a["frames_in_hdr"], len(a["seq"])) for a in got] == [((16, 16), 100, 16)] * 2
    with server(header_frames=[None, 3], acquisitions=2) as s:
        got = acquisitions(read_stream(s.data_port)[0])
    assert [(a["scan"], a["frames_in_hdr"], len(a["seq"])) for a in got] == [(SCAN, N, N), (SCAN, 3, N)]


def test_stall_sends_k_frames_then_nothing_with_the_connection_open():
    with server(stall_after=6, acquisitions=2) as s:
        t0 = time.monotonic()
        events, closed = read_stream(s.data_port, idle_s=0.5)
        assert time.monotonic() - t0 < 5
    [a] = acquisitions(events)  # no second header either: the stream stalled
    assert a["seq"] == [1, 2, 3, 4, 5, 6] and a["frames_in_hdr"] == N
    assert not closed and s.error is None


def test_stall_ends_when_the_server_stops():
    s = server(stall_after=3).start()
    try:
        with socket.create_connection(("127.0.0.1", s.data_port), timeout=2) as sock:
            sock.settimeout(0.3)
            buf, events = b"", []
            end = time.monotonic() + 5
            while time.monotonic() < end and sum(k == "frame" for k, _ in events) < 3:
                buf = _take_messages(buf + sock.recv(1 << 16), events)
            with pytest.raises(TimeoutError):
                sock.recv(1)  # stalled: nothing within 0.3 s, connection open
            s.stop(timeout=2)
            sock.settimeout(2)
            assert sock.recv(1) == b""  # the server stopping closes it
    finally:
        s.stop(timeout=2)


def test_stall_in_a_later_acquisition():
    with server(acquisitions=3, stall_after=[None, 2]) as s:
        got = acquisitions(read_stream(s.data_port)[0])
    assert [a["seq"] for a in got] == [list(range(1, N + 1)), [1, 2]]


def test_ricom_client_reads_the_first_of_several_acquisitions():
    with server(acquisitions=2, between_s=0.05, scan_shapes=[(8, 8), (4, 4)], junk_between=9) as s:
        source = MerlinLiveSource("127.0.0.1", s.data_port, timeout=10)
        try:
            assert source.scan_shape == SCAN and source.n_frames == N
            got = np.concatenate([c.frames.copy() for c in source.chunks(16)])
        finally:
            source.close()
    assert np.array_equal(got, FRAMES)


@pytest.mark.parametrize("options", [
    {"acquisitions": 0}, {"between_s": -1}, {"abort_after": -1}, {"stall_after": [1, -2]},
    {"header_scan_shape": (0, 4)}, {"scan_shapes": [(4, 4), None]}, {"junk_between": -1},
    {"scan_shapes": [(4, 4)], "repeat": 2},
])
def test_bad_fault_options_are_settings_errors(options):
    with pytest.raises(SettingsError):
        server(**options)


def test_cli_flags_reach_the_server():
    args = build_parser().parse_args([
        "simulate", "merlin", "--demo", "--port", "0", "--control-port", "-1", "--acquisitions", "3",
        "--between", "0.2", "--scan-shapes", "64x64,32x32", "--abort-after", "5,none", "--header-scan-shape",
        "16", "16", "--header-frames", "100", "--stall-after", "7", "--junk-between", "11"])
    f = build_server(args).faults
    assert (f.acquisitions, f.between_s, f.scan_shapes, f.abort_after) == (3, 0.2, [(64, 64), (32, 32)], [5, None])
    assert (f.header_scan_shape, f.header_frames, f.stall_after, f.junk_between) == ((16, 16), 100, 7, 11)
    args = build_parser().parse_args(["simulate", "merlin", "--demo", "--abort-after", "none,100"])
    assert build_server(args).faults.abort_after == [None, 100]
    defaults = build_server(build_parser().parse_args(["simulate", "merlin", "--demo"])).faults
    assert (defaults.acquisitions, defaults.abort_after, defaults.stall_after, defaults.scan_shapes) == (1, None,
                                                                                                       None, None)
