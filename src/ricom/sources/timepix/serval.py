"""A small client of the Timepix3 camera server's REST API (Serval), over `urllib`.

What it owns: the few requests a live session needs (``../shared/FORMATS.md`` §6) —
the detector configuration (``GET``/``PUT /detector/config``: ``TriggerMode``,
``ExposureTime``, ``TriggerPeriod``, ``nTriggers``), the raw destination (``PUT
/server/destination`` with ``{"Raw": [{"Base": "tcp://connect@HOST:PORT"}]}`` — Serval
connects out to ricom listening — or ``tcp://listen@HOST:PORT`` — Serval binds, ricom
connects) and a measurement's start and stop (``GET /measurement/start``, ``/stop``).
Every failure is one line (`InputError`) naming the request and the server.
"""
from __future__ import annotations

import json
import socket
import urllib.error
import urllib.request

from ricom.core.errors import InputError, SettingsError


class ServalClient:
    """Serval's REST API at ``url`` (e.g. ``http://localhost:8080``).

    Parameters
    ----------
    url : str
        The server's base URL (``http://`` is added when missing).
    timeout : float
        Seconds per request.
    """

    def __init__(self, url: str, timeout: float = 10.0) -> None:
        url = url.strip().rstrip("/")
        if not url:
            raise SettingsError("give the Serval URL as http://HOST:PORT")
        self.url = url if "://" in url else f"http://{url}"
        self.timeout = float(timeout)
        self.measuring = False

    def request(self, method: str, path: str, body=None) -> bytes:
        """The response body of ``method path`` (``body``: sent as JSON)."""
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"} if data is not None else {})
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                return resp.read()
        except urllib.error.HTTPError as exc:
            text = exc.read().decode(errors="replace").strip().splitlines()
            raise InputError(f"Serval {self.url}: {method} {path} failed: HTTP {exc.code}"
                             + (f" ({text[0][:200]})" if text else "")) from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise InputError(f"cannot reach Serval at {self.url} ({reason}); is it running?") from None

    def detector_config(self) -> dict:
        """``GET /detector/config``."""
        raw = self.request("GET", "/detector/config")
        try:
            return json.loads(raw)
        except ValueError:
            raise InputError(f"Serval {self.url}: /detector/config is not JSON") from None

    def set_detector_config(self, **changes) -> dict:
        """Change some keys of the detector configuration (read, update, ``PUT``); the new one."""
        config = {**self.detector_config(), **changes}
        self.request("PUT", "/detector/config", config)
        return config

    def set_raw_destination(self, base: str) -> None:
        """``PUT /server/destination`` with a raw TCP destination only."""
        if not base.startswith(("tcp://connect@", "tcp://listen@")):
            raise SettingsError(f"a raw destination is tcp://connect@HOST:PORT or tcp://listen@HOST:PORT, "
                                f"got {base!r}")
        self.request("PUT", "/server/destination", {"Raw": [{"Base": base}]})

    def start(self) -> None:
        """``GET /measurement/start``."""
        self.request("GET", "/measurement/start")
        self.measuring = True

    def stop(self) -> None:
        """``GET /measurement/stop`` (once per start)."""
        if self.measuring:
            self.measuring = False
            self.request("GET", "/measurement/stop")


def own_address(toward: str) -> str:
    """This machine's address on the route to host ``toward`` (for Serval's ``tcp://connect@``)."""
    host = urllib.request.urlparse(toward if "://" in toward else f"http://{toward}").hostname or "127.0.0.1"
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect((host, 9))  # (no packet is sent)
            return s.getsockname()[0]
        except OSError:
            return "127.0.0.1"


def raw_destination(serval_url: str, *, listen_port: int | None = None, listen_host: str = "0.0.0.0",
                    host: str | None = None, port: int | None = None) -> str:
    """Serval's raw destination for a ricom that listens (``connect@`` us) or connects (``listen@``)."""
    if listen_port is not None:
        ours = listen_host if listen_host not in ("", "0.0.0.0") else own_address(serval_url)
        return f"tcp://connect@{ours}:{int(listen_port)}"
    return f"tcp://listen@{host}:{int(port)}"


__all__ = ["ServalClient", "own_address", "raw_destination"]
