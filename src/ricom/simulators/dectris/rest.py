"""The SIMPLON REST API subset of the DECTRIS simulator, on ``http.server``.

URLs ``/<module>/api/<version>/<task>/<param>`` (FORMATS.md §5): modules ``detector``,
``stream``, ``filewriter``, ``monitor``; tasks ``config`` (GET/PUT), ``status`` (GET),
``command`` (PUT).  ``GET /<module>/api/version/`` answers the API version and
``GET …/<task>/keys`` the parameter names.  A GET answers ``{"value", "value_type",
"access_mode", …}`` (with ``min``/``max``, ``allowed_values``, ``unit`` where they
apply); a PUT with ``{"value": V}`` answers the JSON list of the parameters that changed
(a PUT on ``…/config`` itself sets several: ``{"mode": {"value": …}, …}``).  The pixel
mask travels as a "darray" ``{"__darray__": [1, 0, 0], "type": "<u4", "shape": [W, H],
"filters": ["base64"], "data": …}``.

Errors (the body is one line of plain text): an unknown module, task, parameter or
command, or an API version other than 1.8.0, is 404; a value that is out of range, not
allowed or of the wrong type, a PUT on a read-only parameter, and a command the detector
cannot take in its state (``arm`` while armed or acquiring, ``trigger`` when not armed
for software triggers, changing the configuration while armed) are 400.  DECTRIS's
manual does not list the codes for each case; these follow the HTTP meaning and what
clients check (status ≠ 200 is a failure).  `ParamTable` holds the parameters and
validates values; `serve` runs the HTTP server over a simulator (`ApiHandler` routes
requests to it: ``sim.api_get``, ``sim.api_put``, ``sim.api_command``).
"""
from __future__ import annotations

import base64
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np

API_VERSION = "1.8.0"
MODULES = ("detector", "stream", "filewriter", "monitor")
COMMANDS = ("arm", "trigger", "disarm", "cancel", "abort", "initialize")


class ApiError(Exception):
    """An HTTP error answer: status code and a one-line text."""

    def __init__(self, status: int, text: str) -> None:
        super().__init__(text)
        self.status, self.text = status, text


class Spec:
    """One parameter: its type, access mode and the values it takes."""

    def __init__(self, value_type: str, access: str = "rw", allowed=None, low=None, high=None, unit=None):
        self.value_type, self.access, self.allowed, self.low, self.high, self.unit = \
            value_type, access, allowed, low, high, unit

    def describe(self, value) -> dict:
        out = {"value": value, "value_type": self.value_type, "access_mode": self.access}
        if self.allowed is not None:
            out["allowed_values"] = list(self.allowed)
        if self.low is not None:
            out["min"] = self.low
        if self.high is not None:
            out["max"] = self.high
        if self.unit is not None:
            out["unit"] = self.unit
        return out

    def check(self, key: str, value):
        """``value`` converted to the parameter's type, or ApiError 400."""
        if self.access == "r":
            raise ApiError(400, f"parameter {key} is read-only")
        t = self.value_type
        try:
            if t == "bool":
                if not isinstance(value, bool):
                    raise TypeError
            elif t in ("uint", "int"):
                if isinstance(value, bool) or not float(value).is_integer():
                    raise TypeError
                value = int(value)
            elif t == "float":
                if isinstance(value, bool):
                    raise TypeError
                value = float(value)
            elif t == "string" and not isinstance(value, str):
                raise TypeError
        except (TypeError, ValueError):
            raise ApiError(400, f"invalid value {value!r} for {key} (expected {t})") from None
        if self.allowed is not None and value not in self.allowed:
            raise ApiError(400, f"value {value!r} not allowed for {key} (allowed: {list(self.allowed)})")
        if (self.low is not None and value < self.low) or (self.high is not None and value > self.high):
            raise ApiError(400, f"value {value!r} for {key} out of range [{self.low}, {self.high}]")
        return value


_U32 = 2**31 - 1
DETECTOR_CONFIG = {
    "nimages": Spec("uint", low=1, high=_U32),
    "ntrigger": Spec("uint", low=1, high=_U32),
    "trigger_mode": Spec("string", allowed=("ints", "inte", "exts", "exte")),
    "count_time": Spec("float", low=1e-7, high=3600.0, unit="s"),
    "frame_time": Spec("float", low=1e-7, high=3600.0, unit="s"),
    "compression": Spec("string", allowed=("bslz4", "lz4", "none")),
    "bit_depth_image": Spec("uint", allowed=(8, 16, 32)),
    "bit_depth_readout": Spec("uint", "r"),
    "x_pixels_in_detector": Spec("uint", "r"),
    "y_pixels_in_detector": Spec("uint", "r"),
    "roi_mode": Spec("string", allowed=("disabled", "merge2x2")),
    "pixel_mask": Spec("uint"),
    "pixel_mask_applied": Spec("bool"),
    "mask_to_zero": Spec("bool"),
    "number_of_excluded_pixels": Spec("uint", "r"),
    "flatfield_correction_applied": Spec("bool"),
    "countrate_correction_applied": Spec("bool"),
    "virtual_pixel_correction_applied": Spec("bool"),
    "photon_energy": Spec("float", low=0.0, unit="eV"),
    "threshold_energy": Spec("float", low=0.0, unit="eV"),
    "beam_center_x": Spec("float", unit="pixel"),
    "beam_center_y": Spec("float", unit="pixel"),
    "detector_distance": Spec("float", low=0.0, unit="m"),
    "x_pixel_size": Spec("float", "r", unit="m"),
    "y_pixel_size": Spec("float", "r", unit="m"),
    "sensor_material": Spec("string", "r"),
    "sensor_thickness": Spec("float", "r", unit="m"),
    "description": Spec("string", "r"),
    "detector_number": Spec("string", "r"),
    "software_version": Spec("string", "r"),
    "detector_readout_time": Spec("float", "r", unit="s"),
}
STREAM_CONFIG = {
    "mode": Spec("string", allowed=("enabled", "disabled")),
    "format": Spec("string", allowed=("legacy", "cbor")),
    "header_detail": Spec("string", allowed=("all", "basic", "none")),
    "header_appendix": Spec("string"),
    "image_appendix": Spec("string"),
}
MODE_ONLY = {"mode": Spec("string", allowed=("enabled", "disabled"))}
CONFIG = {"detector": DETECTOR_CONFIG, "stream": STREAM_CONFIG, "filewriter": MODE_ONLY, "monitor": MODE_ONLY}
STATUS = {"detector": {"state": "string", "error": "list", "time": "string", "series_unique_id": "string"},
          "stream": {"state": "string", "dropped": "uint"},
          "filewriter": {"state": "string"}, "monitor": {"state": "string"}}


def darray(mask: np.ndarray) -> dict:
    """A uint32 image as a SIMPLON darray (shape ``[W, H]``)."""
    m = np.ascontiguousarray(mask, "<u4")
    return {"__darray__": [1, 0, 0], "type": "<u4", "shape": [m.shape[1], m.shape[0]], "filters": ["base64"],
            "data": base64.b64encode(m.tobytes()).decode("ascii")}


def from_darray(value, shape: tuple[int, int]) -> np.ndarray:
    """A darray (or a nested list) as a uint32 image of ``shape`` (rows, cols), or ApiError 400."""
    try:
        if isinstance(value, dict):
            raw = base64.b64decode(value["data"])
            arr = np.frombuffer(raw, np.dtype(value.get("type", "<u4")))
            dims = [int(v) for v in value["shape"]]
            if dims not in ([shape[1], shape[0]], list(shape)):  # [W, H]; [H, W] accepted too
                raise ValueError
            arr = arr.reshape(shape)
        else:
            arr = np.asarray(value)
        if arr.shape != tuple(shape) or arr.dtype.kind not in "ui":
            raise ValueError
        return arr.astype(np.uint32)
    except (KeyError, TypeError, ValueError, base64.binascii.Error):
        raise ApiError(400, f"pixel_mask must be a uint32 darray of shape [{shape[1]}, {shape[0]}]") from None


class ApiHandler(BaseHTTPRequestHandler):
    """Routes one request to the simulator (``self.server.sim``)."""

    server_version = "ricom-dectris-sim"
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:  # quiet
        pass

    def _answer(self, status: int, body) -> None:
        if isinstance(body, str) and status != 200:
            data, ctype = (body + "\n").encode(), "text/plain"
        else:
            data, ctype = json.dumps(body).encode(), "application/json; charset=utf-8"
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _route(self) -> tuple[str, str, list[str]]:
        path = [p for p in self.path.split("?", 1)[0].split("/") if p]
        if len(path) < 3 or path[0] not in MODULES or path[1] != "api":
            raise ApiError(404, f"not found: {self.path}")
        if path[2] == "version":
            return path[0], "version", []
        if path[2] != API_VERSION:
            raise ApiError(404, f"API version {path[2]} is not supported (this detector speaks {API_VERSION})")
        if len(path) < 4 or path[3] not in ("config", "status", "command"):
            raise ApiError(404, f"not found: {self.path}")
        return path[0], path[3], path[4:]

    def _body(self):
        n = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(n) if n else b""
        if not raw.strip():
            return None
        try:
            return json.loads(raw)
        except ValueError:
            raise ApiError(400, "the request body is not JSON") from None

    def _handle(self, method: str) -> None:
        try:
            module, task, rest = self._route()
            sim = self.server.sim
            if method == "GET":
                if task == "version":
                    answer = {"value": API_VERSION, "value_type": "string"}
                elif task == "command":
                    raise ApiError(405 if rest else 404, "commands take PUT")
                else:
                    answer = sim.api_get(module, task, "/".join(rest))
            else:
                body = self._body()
                if task == "command":
                    answer = sim.api_command(module, "/".join(rest))
                elif task == "config":
                    answer = sim.api_put(module, "/".join(rest), body)
                else:
                    raise ApiError(400 if task == "status" else 404, f"{module} {task} is read-only")
            self._answer(200, answer)
        except ApiError as exc:
            self._answer(exc.status, exc.text)

    def do_GET(self) -> None:
        self._handle("GET")

    def do_PUT(self) -> None:
        self._handle("PUT")


def serve(sim, host: str, port: int) -> tuple[ThreadingHTTPServer, threading.Thread]:
    """Start the HTTP server for ``sim`` on a daemon thread; returns (server, thread)."""
    httpd = ThreadingHTTPServer((host, int(port)), ApiHandler)
    httpd.daemon_threads = True
    httpd.sim = sim
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True,
                              name="ricom-dectris-rest")
    thread.start()
    return httpd, thread
