"""Serval's REST API (`ricom.sources.timepix.serval`) against a tiny fake Serval that, on
``/measurement/start``, makes a `RawSimulator` send to the raw destination it was given."""
from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import h5py
import numpy as np
import pytest

import ricom
from ricom.core.errors import InputError
from ricom.simulators.timepix.raw import RawSimulator, demo_tpx3
from ricom.sources.timepix.serval import ServalClient, raw_destination


class FakeServal:
    """Records every request; answers ``/detector/config``; a measurement start sends ``path``."""

    def __init__(self, path: str):
        self.path, self.requests, self.config = path, [], {"TriggerMode": "AUTOTRIGSTART_TIMERSTOP", "nTriggers": 1}
        self.destination, self.sims = None, []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _answer(self, code=200, body=b""):
                self.send_response(code)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):
                fake.requests.append(("GET", self.path, None))
                if self.path == "/detector/config":
                    return self._answer(body=json.dumps(fake.config).encode())
                if self.path == "/measurement/start":
                    fake.start()
                    return self._answer()
                self._answer(200 if self.path == "/measurement/stop" else 404, b"Not found")

            def do_PUT(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                fake.requests.append(("PUT", self.path, body))
                if self.path == "/server/destination":
                    fake.destination = body["Raw"][0]["Base"]
                elif self.path == "/detector/config":
                    fake.config = body
                self._answer()

        self.http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.http.server_address[1]}"
        threading.Thread(target=self.http.serve_forever, daemon=True).start()

    def start(self):
        mode, _, where = self.destination[len("tcp://"):].partition("@")
        host, port = where.rsplit(":", 1)
        self.sims.append(RawSimulator(self.path, host=host, port=int(port), connect=mode == "connect",
                                      scans=1).start())

    def close(self):
        for sim in self.sims:
            sim.close()
        self.http.shutdown()
        self.http.server_close()


@pytest.fixture
def serval(tmp_path):
    path = str(tmp_path / "scan.tpx3")
    demo_tpx3(path, (16, 16), (32, 32), dose=50)
    fake = FakeServal(path)
    yield fake
    fake.close()


def test_client_requests(serval):
    client = ServalClient(serval.url.removeprefix("http://"))
    assert client.detector_config()["nTriggers"] == 1
    assert client.set_detector_config(nTriggers=256)["nTriggers"] == 256 and serval.config["nTriggers"] == 256
    client.set_raw_destination("tcp://listen@127.0.0.1:1")
    assert serval.requests[-1] == ("PUT", "/server/destination", {"Raw": [{"Base": "tcp://listen@127.0.0.1:1"}]})
    assert raw_destination(serval.url, listen_port=5, listen_host="127.0.0.1") == "tcp://connect@127.0.0.1:5"
    assert raw_destination(serval.url, listen_port=5).startswith("tcp://connect@")
    with pytest.raises(InputError, match="HTTP 404"):
        client.request("GET", "/nothing")
    with pytest.raises(InputError, match="cannot reach Serval"):
        ServalClient("http://127.0.0.1:1", timeout=1).detector_config()
    with pytest.raises(ricom.core.errors.SettingsError, match="raw destination"):
        client.set_raw_destination("file:///tmp")


@pytest.mark.parametrize("mode", ["listen", "connect"])
def test_cli_drives_serval(serval, tmp_path, mode):
    """``ricom live timepix3 --raw --serval URL``: destination set, one measurement started and
    stopped, the scan the same as the file's."""
    from ricom.cli.main import main

    out = tmp_path / "live.h5"
    where = ["--listen", "0", "--listen-host", "127.0.0.1"] if mode == "connect" else \
        ["--host", "127.0.0.1", "--port", str(_free_port())]
    rc = main(["live", "timepix3", "--raw", *where, "--serval", serval.url, "--scan-shape", "16", "16",
               "--kernel-size", "7", "--center", "255.5", "255.5", "--no-progress", "-o", str(out)])
    assert rc == 0 and out.exists()
    assert serval.destination.startswith(f"tcp://{mode}@127.0.0.1:")
    paths = [p for _, p, _ in serval.requests]
    assert paths == ["/server/destination", "/measurement/start", "/measurement/stop"]
    ref = ricom.reconstruct(serval.path, kernel_size=7, center_yx=(255.5, 255.5))
    with h5py.File(out) as f:
        assert np.corrcoef(ref.ricom.ravel(), f["ricom"][()].ravel())[0, 1] >= 0.9999


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
