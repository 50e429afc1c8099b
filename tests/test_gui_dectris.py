"""The GUI runs a DECTRIS live session: the source page, the pixel mask on the pattern, errors.

Offscreen with pytest-qt.  The detector is a ZMQ PUSH socket on 127.0.0.1 sending stream
V1/V2 messages built independently of ricom (`tests/dectris_wire.py`).  Passive sessions
get a closed port for the REST API (its failure is a message; the pixel mask comes with
the stream header); the active one a tiny SIMPLON REST stand-in (`_FakeRest`) that records
what ricom sets.  Every wait is bounded and every socket closed in ``finally``.
"""
from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest

pytest.importorskip("PySide6")
pytest.importorskip("pyqtgraph")
pytest.importorskip("pytestqt")
pytest.importorskip("zmq")
pytest.importorskip("cbor2")
pytest.importorskip("dectris.compression")

from dectris_wire import Pusher
from ricom.gui.dectris_page import STREAM_PORTS
from ricom.gui.source_panel import KINDS
from test_dectris_stream import _frames, _mask, _masked, _v1_series, _v2_series

WAIT_MS = 15_000
SCREENSHOT = os.environ.get("RICOM_GUI_SCREENSHOT")  # a PNG path: save the window after the first test


def _closed_port() -> int:
    """A port on 127.0.0.1 nothing listens on (the REST API that is not there)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _FakeRest:
    """A SIMPLON REST API on 127.0.0.1: version 1.8.0, no pixel mask, arm gives ``series``;
    ``config`` and ``commands`` record what was set and run, in order."""

    def __init__(self, series: int) -> None:
        self.config: dict = {}
        self.commands: list = []
        self.armed = threading.Event()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _answer(self, value) -> None:
                body = json.dumps(value).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):
                self._answer({"value": "1.8.0" if self.path.endswith("/version/") else None})

            def do_PUT(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"null")
                module, _, _, task, key = self.path.strip("/").split("/")
                if task == "command":
                    fake.commands.append(key)
                    if key == "arm":
                        fake.armed.set()
                        return self._answer({"sequence id": series})
                    return self._answer(None)
                fake.config[(module, key)] = body["value"]
                self._answer([key])

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _choose_dectris(w, port: int, stream: str = "v1", acquisitions: int = 1, host: str = "127.0.0.1"):
    sp = w.source_panel
    sp.kind.setCurrentIndex(KINDS.index("dectris"))
    page = sp.dectris
    page.host.setText(host)
    page.stream.setCurrentIndex(("v1", "v2").index(stream))
    page.api_port.setValue(_closed_port())
    page.stream_port.setValue(port)
    page.acquisitions.setValue(acquisitions)
    w.column.kernel_size.setValue(5)
    return page


def _overlay(w):
    return w.panels["diffraction"].mask_overlay


def test_a_passive_v1_session_shows_the_image_and_the_pixel_mask(qtbot, window):
    frames, mask = _frames(), _mask()
    push = Pusher()
    try:
        w = window
        _choose_dectris(w, push.port)
        w.start()
        assert w.sessions.dock.isVisible() and not w.source_panel.pause_button.isEnabled()
        qtbot.waitUntil(lambda: "waiting" in w.state_label.text(), timeout=WAIT_MS)
        push.send(_v1_series(3, frames, mask))
        qtbot.waitUntil(lambda: w.sessions.list.count() == 1, timeout=WAIT_MS)
        qtbot.waitUntil(lambda: w.worker.finished.is_set(), timeout=WAIT_MS)
        assert w.worker.error is None
        assert w.sessions.list.item(0).text().startswith("#1  finished, 36/36 frames")
        assert any("cannot reach" in m and "listening anyway" in m for m in w.messages)  # REST: only a warning
        source = w.worker.tap.source
        assert w.rec.snapshot().n_patterns == 36 and w.rec.scan_shape == (6, 6)

        diff, overlay = w.panels["diffraction"], _overlay(w)
        qtbot.waitUntil(lambda: overlay.bad is not None, timeout=WAIT_MS)
        np.testing.assert_array_equal(overlay.bad, source.mask.bad)
        np.testing.assert_array_equal(overlay.bad, (mask & 0xFFFF) != 0)
        assert diff.view.data is not None and diff.view.data.shape == source.mask.bad.shape
        assert np.all(diff.pattern[source.mask.bad] == 0)  # the source zeroed them; the overlay shows where
        np.testing.assert_array_equal(diff.pattern, _masked(frames, mask)[-1])  # the last pattern, decoded
        qtbot.waitUntil(lambda: w.progress.value() == 1000, timeout=WAIT_MS)
        assert overlay.bar.isVisible() and overlay.item.isVisible()
        assert overlay.label.text() == source.mask.summary()
        rgba = overlay.item.image
        assert np.array_equal(rgba[..., 3] > 0, source.mask.bad)
        overlay.toggle.setChecked(False)
        assert not overlay.item.isVisible() and overlay.bar.isVisible()
        overlay.toggle.setChecked(True)
        assert overlay.item.isVisible()

        announced = [m for m in w.messages if m.startswith("acquisition 1: 36 frames")]
        assert announced and source.mask.summary() in announced[0]
        assert w.state_label.toolTip() == announced[0]
        qtbot.waitUntil(lambda: w.state_label.text() == "finished", timeout=WAIT_MS)
        if SCREENSHOT:
            w.grab().save(SCREENSHOT)
    finally:
        push.close()


def test_the_overlay_follows_each_acquisition_and_stop_ends_the_session(qtbot, window):
    frames, first = _frames(), _mask()
    second = np.zeros_like(first)
    second[2:4, 10:13] = 1 << 8  # another detector configuration: a user-masked block
    push = Pusher()
    try:
        w = window
        _choose_dectris(w, push.port, stream="v2", acquisitions=0)  # until stopped
        w.start()
        qtbot.waitUntil(lambda: "waiting" in w.state_label.text(), timeout=WAIT_MS)
        push.send(_v2_series(1, frames, first))
        qtbot.waitUntil(lambda: _overlay(w).bad is not None
                        and np.array_equal(_overlay(w).bad, (first & 0xFFFF) != 0), timeout=WAIT_MS)
        qtbot.waitUntil(lambda: w.sessions.list.count() == 1, timeout=WAIT_MS)
        push.send(_v2_series(2, frames, second))
        qtbot.waitUntil(lambda: w.sessions.list.count() == 2, timeout=WAIT_MS)
        qtbot.waitUntil(lambda: _overlay(w).bad is not None and np.array_equal(_overlay(w).bad, second != 0),
                        timeout=WAIT_MS)
        assert _overlay(w).label.text().startswith("6 masked pixels (user 6)")

        w.stop_run(wait=5.0)
        qtbot.waitUntil(lambda: w.worker.finished.is_set(), timeout=WAIT_MS)
        qtbot.waitUntil(lambda: w.state_label.text() == "stopped", timeout=WAIT_MS)
        assert w.worker.error is None and w.sessions.list.count() == 2
        assert all(w.sessions.list.item(i).text().split("  ")[1].startswith("finished") for i in range(2))
    finally:
        push.close()


@pytest.mark.filterwarnings("ignore:skipped 4 DECTRIS stream messages:RuntimeWarning")  # series 6, on purpose
def test_an_active_session_sets_the_detector_up_arms_and_disarms(qtbot, window):
    frames, mask = _frames(), _mask()
    push, rest = Pusher(), _FakeRest(series=7)
    try:
        w = window
        page = _choose_dectris(w, push.port)
        page.api_port.setValue(rest.port)
        page.active.setChecked(True)
        page.count_time.setValue(0.5)  # ms
        page.roi_mode.setCurrentIndex(page.roi_mode.findData("merge2x2"))
        w.column.set_scan_shape((6, 6))  # the frame counts armed for
        w.start()
        qtbot.waitUntil(rest.armed.is_set, timeout=WAIT_MS)
        push.send(_v1_series(6, frames[:3]) + _v1_series(7, frames, mask))  # another series first: skipped
        qtbot.waitUntil(lambda: w.sessions.list.count() == 1, timeout=WAIT_MS)
        qtbot.waitUntil(lambda: w.worker.finished.is_set(), timeout=WAIT_MS)
        assert w.worker.error is None and w.sessions.list.item(0).text().startswith("#1  finished, 36/36")
        assert rest.config == {("detector", "roi_mode"): "merge2x2", ("detector", "trigger_mode"): "exte",
                               ("detector", "nimages"): 1, ("detector", "ntrigger"): 36,
                               ("detector", "count_time"): pytest.approx(5e-4),
                               ("detector", "compression"): "bslz4", ("stream", "mode"): "enabled",
                               ("stream", "format"): "legacy", ("stream", "header_detail"): "all"}
        assert rest.commands == ["arm", "disarm"]
        qtbot.waitUntil(lambda: _overlay(w).bad is not None, timeout=WAIT_MS)
        np.testing.assert_array_equal(_overlay(w).bad, w.worker.tap.mask.bad)
        assert not any("cannot reach" in m for m in w.messages)
    finally:
        push.close()
        rest.close()


def test_the_stream_port_follows_the_version_until_edited(window):
    sp = window.source_panel
    sp.kind.setCurrentIndex(KINDS.index("dectris"))
    page = sp.dectris
    assert page.stream_port.value() == STREAM_PORTS["v1"] == 9999 and page.api_port.value() == 80
    page.stream.setCurrentIndex(1)
    assert page.stream_port.value() == 31001
    page.stream.setCurrentIndex(0)
    assert page.stream_port.value() == 9999
    page.stream_port.setValue(5555)  # edited: stays
    page.stream.setCurrentIndex(1)
    assert page.stream_port.value() == 5555

    assert not page.arm_box.isEnabled()
    page.active.setChecked(True)
    page.trigger_mode.setCurrentIndex(2)
    page.count_time.setValue(0.5)
    page.roi_mode.setCurrentIndex(2)
    req = sp.request()
    assert page.arm_box.isEnabled() and req.kind == "dectris" and req.live_session
    d = req.dectris
    assert (d.stream, d.port, d.active, d.trigger_mode, d.roi_mode) == ("v2", 5555, True, "ints", "merge2x2")
    assert d.count_time_s == pytest.approx(5e-4) and d.frame_time_s is None
    sp.set_request(req)  # round trip (the command line's way in)
    assert sp.request() == req


def test_bad_hosts_are_messages_not_tracebacks(qtbot, window):
    w = window
    page = _choose_dectris(w, 9999, host="")
    w.start()
    qtbot.waitUntil(lambda: w.worker.finished.is_set(), timeout=WAIT_MS)
    qtbot.waitUntil(lambda: w.message_bar.isVisible(), timeout=WAIT_MS)
    assert "host" in w.message_bar.text() and w.state_label.text() == "failed"

    page.host.setText("no-such-host.invalid")  # active: the REST API is needed
    page.active.setChecked(True)
    w.start()
    qtbot.waitUntil(lambda: w.worker.finished.is_set(), timeout=WAIT_MS)
    qtbot.waitUntil(lambda: w.state_label.text() == "failed", timeout=WAIT_MS)
    assert "cannot reach the DECTRIS detector at no-such-host.invalid" in w.worker.error
    assert w.message_bar.text() == f"⚠ {w.worker.error}" and "Traceback" not in w.message_bar.text()
    assert not w.source_panel.stop_button.isEnabled() and w.source_panel.kind.isEnabled()


def test_command_line_dectris_request():
    import argparse

    from ricom.cli import gui as cli_gui

    p = argparse.ArgumentParser()
    cli_gui.add_arguments(p)
    req = cli_gui._request(p.parse_args(["--dectris", "10.0.0.7:31002", "--dectris-stream", "v2"]))
    assert (req.kind, req.host, req.dectris.stream, req.dectris.port, req.live_session) == \
        ("dectris", "10.0.0.7", "v2", 31002, True)
    assert cli_gui._request(p.parse_args(["--dectris", "det"])).dectris.port == 9999
