"""The DECTRIS SIMPLON REST API: what a 4D-STEM client reads, sets and commands.

URLs are ``http://HOST:PORT/<module>/api/<version>/<task>/<param>`` (modules
``detector`` and ``stream``; tasks ``config``, ``status``, ``command``).  A GET answers
``{"value": V, ...}``; a config PUT sends ``{"value": V}`` and answers the list of keys
that changed; commands are PUTs (``arm`` answers ``{"sequence id": N}``)
(``../shared/FORMATS.md`` §5).  `SimplonClient` reads the API version first and speaks
it; every refusal becomes one `InputError` line naming the detector, the request and the
detector's own words.  `decode_darray` turns the API's base64 arrays (the pixel mask)
into NumPy.
"""
from __future__ import annotations

import base64
import json
import urllib.error
import urllib.request

import numpy as np

from ricom.core.errors import InputError

API_PORT = 80
SUPPORTED_MAJOR = 1
"""SIMPLON API versions 1.x (1.6 … 1.8 seen on EIGER2, ARINA and QUADRO)."""


class SimplonClient:
    """A SIMPLON REST client.

    Parameters
    ----------
    host, port : str, int
        The detector control unit (DCU) and its HTTP port (80 on a detector).
    timeout : float
        Seconds to wait for each answer.
    version : str, optional
        API version to use; default: the one the detector reports.
    """

    def __init__(self, host: str, port: int = API_PORT, *, timeout: float = 5.0, version: str | None = None) -> None:
        self.host, self.port, self.timeout = host, int(port), float(timeout)
        self.version = version or self.read_version()

    @property
    def where(self) -> str:
        return f"the DECTRIS detector at {self.host}:{self.port}"

    def read_version(self) -> str:
        """The API version the detector speaks (checked to be 1.x)."""
        answer = self._request("GET", "/detector/api/version/")
        version = str(answer.get("value", "")) if isinstance(answer, dict) else ""
        if not version.split(".")[0].isdigit():
            raise InputError(f"{self.where} answered {answer!r} for its API version; is this a SIMPLON API?")
        if int(version.split(".")[0]) != SUPPORTED_MAJOR:
            raise InputError(f"{self.where} speaks SIMPLON API {version}; ricom speaks 1.x")
        return version

    def _url(self, module: str, task: str, param: str) -> str:
        return f"/{module}/api/{self.version}/{task}/{param}"

    def get(self, param: str, module: str = "detector", task: str = "config"):
        """The value of one key (``{"value": V}`` unwrapped)."""
        answer = self._request("GET", self._url(module, task, param))
        return answer.get("value") if isinstance(answer, dict) else answer

    def set(self, param: str, value, module: str = "detector") -> list:
        """Set one configuration key; the keys the detector changed (possibly others too)."""
        answer = self._request("PUT", self._url(module, "config", param), {"value": value})
        return answer if isinstance(answer, list) else []

    def command(self, name: str, timeout: float | None = None):
        """Run a detector command (``arm``, ``trigger``, ``disarm``, ``cancel``, ``abort``, ``initialize``)."""
        return self._request("PUT", self._url("detector", "command", name), None, timeout=timeout)

    def arm(self) -> int:
        """Arm the detector; the sequence id (``series``) of the acquisition it starts."""
        answer = self.command("arm", timeout=max(self.timeout, 30.0))
        if not isinstance(answer, dict) or "sequence id" not in answer:
            raise InputError(f"{self.where} armed without a sequence id (answer {answer!r})")
        return int(answer["sequence id"])

    def state(self) -> str:
        return str(self.get("state", task="status"))

    def pixel_mask(self) -> np.ndarray | None:
        """The detector's pixel mask (uint32, NeXus bits), or None if it has none."""
        value = self.get("pixel_mask")
        return None if value is None else decode_darray(value)

    def _request(self, method: str, path: str, body=None, timeout: float | None = None):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(f"http://{self.host}:{self.port}{path}", data=data, method=method,
                                     headers={"Content-Type": "application/json", "Accept": "application/json"})
        if method == "PUT" and data is None:
            req.data = b""
        what = f"{method} {path}"
        try:
            with urllib.request.urlopen(req, timeout=timeout or self.timeout) as r:
                text = r.read()
        except urllib.error.HTTPError as exc:
            detail = _detail(exc.read())
            raise InputError(f"{self.where} refused {what}: HTTP {exc.code}"
                             + (f" ({detail})" if detail else "") + _advice(exc.code, detail, path)) from None
        except (TimeoutError, urllib.error.URLError, ConnectionError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise InputError(f"cannot reach {self.where} ({reason}); check the host name, the API port "
                             f"and that the detector is on") from None
        if not text.strip():
            return None
        try:
            return json.loads(text)
        except ValueError:
            raise InputError(f"{self.where} answered {what} with something that is not JSON: "
                             f"{text[:60]!r}") from None


def _detail(body: bytes) -> str:
    text = body.decode("utf-8", "replace").strip()
    try:
        value = json.loads(text)
        if isinstance(value, dict):
            text = str(value.get("value") or value.get("error") or value.get("message") or value)
    except ValueError:
        pass
    return " ".join(text.split())[:160]


def _advice(code: int, detail: str, path: str) -> str:
    low = detail.lower()
    if code == 404 or "not found" in low or "unknown" in low:
        return f"; the detector does not know {path.rsplit('/', 1)[-1]!r} in this API version"
    if any(word in low for word in ("busy", "armed", "disarm", "acquir", "state")):
        return "; the detector is busy (armed or acquiring): wait, or disarm it"
    return ""


def decode_darray(value) -> np.ndarray:
    """A SIMPLON ``darray`` (``{type, shape, filters: ["base64"], data}``) as a NumPy array.

    ``shape`` is given as ``[width, height]`` (the stream's order); the result is
    ``(height, width)``.

    Examples
    --------
    >>> import base64
    >>> raw = np.arange(6, dtype="<u4").tobytes()
    >>> decode_darray({"type": "<u4", "shape": [3, 2], "filters": ["base64"],
    ...                "data": base64.b64encode(raw).decode()}).tolist()
    [[0, 1, 2], [3, 4, 5]]
    """
    if isinstance(value, dict) and "value" in value and "data" not in value:
        value = value["value"]
    if not isinstance(value, dict) or "data" not in value or "shape" not in value:
        raise InputError(f"a DECTRIS array must hold 'type', 'shape' and 'data'; got {str(value)[:80]!r}")
    data = value["data"]
    for f in reversed(value.get("filters") or []):
        if f != "base64":
            raise InputError(f"DECTRIS array filter {f!r} is not supported (only base64)")
        data = base64.b64decode(data)
    if isinstance(data, str):
        data = data.encode("latin-1")
    dtype = np.dtype(str(value.get("type", "<u4")))
    width, height = (int(v) for v in value["shape"])
    arr = np.frombuffer(data, dtype)
    if arr.size != width * height:
        raise InputError(f"DECTRIS array of shape {value['shape']} holds {arr.size} values")
    return arr.reshape(height, width)


__all__ = ["API_PORT", "SimplonClient", "decode_darray"]
