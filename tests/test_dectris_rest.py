"""The SIMPLON REST client: against the project's simulator and a server answering as a
detector of another API version would; every refusal is one line naming the request."""
from __future__ import annotations

import base64
import http.server
import json
import threading

import numpy as np
import pytest

from ricom.core.errors import InputError
from ricom.live.dectris import ArmSettings
from ricom.sources.dectris.rest import SimplonClient, decode_darray

pytest.importorskip("zmq")
from ricom.simulators.dectris import DectrisSimulator


@pytest.fixture(scope="module")
def sim():
    frames = np.random.default_rng(0).poisson(1.0, (4, 4, 16, 16)).astype(np.uint16)
    with DectrisSimulator(frames) as s:
        yield s


def test_configure_arm_busy_disarm(sim):
    c = SimplonClient("127.0.0.1", sim.api_port)
    assert c.version == "1.8.0"
    ArmSettings((4, 4), "exts", count_time_s=1e-3, frame_time_s=1e-3).apply(c, "v2")
    assert (c.get("nimages"), c.get("ntrigger"), c.get("trigger_mode")) == (4, 4, "exts")
    ArmSettings((4, 4), "ints").apply(c, "v2")  # frames wait for a trigger (nobody reads them here)
    assert c.get("format", module="stream") == "cbor" and c.get("header_detail", module="stream") == "all"
    first = c.arm()
    busy = r"refused PUT /detector/api/1\.8\.0/command/arm: HTTP 400 .*; the detector is busy"
    with pytest.raises(InputError, match=busy):
        c.arm()
    c.command("abort")
    c.command("disarm")
    assert c.arm() == first + 1
    c.command("abort")
    c.command("disarm")


def test_unknown_key_and_bad_value(sim):
    c = SimplonClient("127.0.0.1", sim.api_port)
    with pytest.raises(InputError, match=r"HTTP 404.*does not know 'no_such_key'"):
        c.set("no_such_key", 1)
    with pytest.raises(InputError, match="roi_mode: HTTP 400"):
        c.set("roi_mode", "diagonal")
    mask = c.pixel_mask()
    assert mask.shape == (16, 16) and mask.dtype == np.uint32


class _OtherVersion(http.server.BaseHTTPRequestHandler):
    version_text = "2.0.0"

    def do_GET(self):
        body = json.dumps({"value": self.version_text, "value_type": "string"}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def test_wrong_api_version_and_no_detector():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _OtherVersion)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with pytest.raises(InputError, match=r"speaks SIMPLON API 2\.0\.0; ricom speaks 1\.x"):
            SimplonClient("127.0.0.1", server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()
    with pytest.raises(InputError, match=r"cannot reach the DECTRIS detector at 127\.0\.0\.1:9"):
        SimplonClient("127.0.0.1", 9, timeout=1)


def test_darray_orders_width_height():
    mask = np.arange(12, dtype="<u4").reshape(3, 4)  # 3 rows, 4 columns
    value = {"__darray__": [1, 0, 0], "type": "<u4", "shape": [4, 3], "filters": ["base64"],
             "data": base64.b64encode(mask.tobytes()).decode()}
    np.testing.assert_array_equal(decode_darray({"value": value}), mask)
    with pytest.raises(InputError, match="only base64"):
        decode_darray({**value, "filters": ["bslz4"]})


def test_arm_settings_counts():
    assert ArmSettings((8, 10)).counts() == {"nimages": 1, "ntrigger": 80}
    assert ArmSettings((8, 10), "exts", flyback_frames=2).counts() == {"nimages": 12, "ntrigger": 8}
    assert ArmSettings((8, 10), "ints").counts() == {"nimages": 80, "ntrigger": 1}
    with pytest.raises(Exception, match="trigger mode 'inte'"):
        ArmSettings((8, 10), "inte")
