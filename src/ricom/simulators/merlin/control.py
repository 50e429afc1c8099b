"""The control port of the Merlin simulator: parameters, commands and their replies.

Like the Merlin software (FORMATS.md §2), the control port (default 6341) answers
``MPX``-framed ``GET,NAME`` / ``SET,NAME,VALUE`` / ``CMD,NAME`` requests with
``GET,NAME,VALUE,CODE`` / ``SET,NAME,CODE`` / ``CMD,NAME,CODE`` (0 OK, 1 busy,
2 unrecognised, 3 out of range).  `SETTABLE` lists the parameters and their defaults;
``COUNTERDEPTH``, ``FILEFORMAT`` (0 processed, 2 raw), ``NUMFRAMESTOACQUIRE``
(0 = continuous), ``SCANX``/``SCANY`` and ``TRIGGERSTART`` (5 = soft trigger) change
what the data port sends; ``IMAGEX``, ``IMAGEY`` and ``DETECTORSTATUS`` can be read.

`ControlPort` is the part of `ricom.simulators.merlin.server.MerlinServer` that serves it; it uses
the server's acquisition state (``params``, ``feed``, ``_cond``, ``_state`` and the
start/trigger/abort flags) and its threads and connections.
"""
from __future__ import annotations

import socket

from ricom.sources.merlin.control import mpx_prefix, take_message

STATUS = {"idle": 0, "busy": 1, "armed": 4}
SETTABLE = {  # name: (type, allowed values or (low, high) or None), default
    "COUNTERDEPTH": ((int, {1, 6, 12, 24}), 12), "FILEFORMAT": ((int, {0, 2}), 0),
    "NUMFRAMESTOACQUIRE": ((int, (0, 2**31)), 0), "NUMFRAMESPERTRIGGER": ((int, (1, 2**31)), 1),
    "TRIGGERSTART": ((int, (0, 7)), 0), "TRIGGERSTOP": ((int, (0, 7)), 0),
    "SCANX": ((int, (0, 65535)), 0), "SCANY": ((int, (0, 65535)), 0),
    "ACQUISITIONTIME": ((float, (0, 1e7)), 1.0), "ACQUISITIONPERIOD": ((float, (0, 1e7)), 1.0),
    "CONTINUOUSRW": ((int, {0, 1}), 1), "GAIN": ((int, (0, 3)), 0), "COLOURMODE": ((int, {0, 1}), 0),
    "CHARGESUMMING": ((int, {0, 1}), 0), "ENABLECOUNTER1": ((int, (0, 2)), 0),
    "OPERATINGENERGY": ((float, (0, 1e3)), 300.0), "HVBIAS": ((float, (0, 1e3)), 120.0),
    "POLARITY": ((int, {0, 1}), 0), "FILEENABLE": ((int, {0, 1}), 0), "RUNHEADLESS": ((int, {0, 1}), 1),
    "FILEDIRECTORY": ((str, None), ""), "FILENAME": ((str, None), ""),
    "FLATFIELDCORRECTION": ((int, {0, 1}), 0), "DEADTIMECORRECTION": ((int, {0, 1}), 0),
    "MASKINDATA": ((int, {0, 1}), 0), "GAPFILLMODE": ((int, (0, 3)), 0),
    **{f"THRESHOLD{i}": ((float, (0, 1e3)), 2.0 if i == 0 else 511.0) for i in range(8)},
}
COMMANDS = {"STARTACQUISITION", "STOPACQUISITION", "SOFTTRIGGER", "ABORT", "RESET", "THSCAN"}


class ControlPort:
    """Control-port requests of a simulated Merlin: a part of `ricom.simulators.merlin.server.MerlinServer`."""

    def _serve_control_thread(self, conn: socket.socket) -> None:
        self._spawn(self._serve_control, conn)

    def _serve_control(self, conn: socket.socket) -> None:
        buf = bytearray()
        conn.settimeout(0.2)
        try:
            while not self._stopping.is_set():
                try:
                    data = conn.recv(65536)
                except TimeoutError:
                    continue
                if not data:
                    return
                buf += data
                while (request := take_message(buf)) is not None:
                    body = self.handle_request(request.decode("latin-1")).encode("latin-1")
                    conn.sendall(mpx_prefix(len(body)) + body)
        except OSError:
            return
        finally:
            self._conns.discard(conn)
            conn.close()

    def handle_request(self, text: str) -> str:
        """Reply body (without the MPX prefix) to one control request body."""
        parts = [p.strip() for p in text.strip().split(",")]
        kind, name = parts[0].upper(), (parts[1] if len(parts) > 1 else "")
        key, value = name.upper(), (parts[2] if len(parts) > 2 else None)
        with self._cond:
            busy = self._state != "idle"
            if kind == "GET":
                v = self._get(key)
                return f"GET,{name},{'0' if v is None else v},{2 if v is None else 0}"
            if kind == "SET":
                if key not in SETTABLE or value is None:
                    return f"SET,{name},2"
                if busy:
                    return f"SET,{name},1"
                (typ, allowed), _ = SETTABLE[key]
                try:
                    v = typ(float(value)) if typ is int else typ(value)
                except ValueError:
                    return f"SET,{name},3"
                if (isinstance(allowed, set) and v not in allowed) or \
                        (isinstance(allowed, tuple) and not allowed[0] <= v <= allowed[1]) or \
                        (key == "FILEFORMAT" and v == 2 and not self._raw_ok):
                    return f"SET,{name},3"
                self.params[key] = v
                return f"SET,{name},0"
            if kind == "CMD":
                return f"CMD,{name},{self._command(key, busy)}"
        return f"{kind},{name},2"

    def _get(self, key: str):
        if key in self.params:
            v = self.params[key]
            return f"{v:.6f}" if isinstance(v, float) else v
        return {"IMAGEX": self.feed.detector_shape[1], "IMAGEY": self.feed.detector_shape[0],
                "DETECTORSTATUS": STATUS[self._state], "SOFTWAREVERSION": "ricom-merlin-simulator",
                "TEMPERATURE": "30.000000"}.get(key)

    def _command(self, key: str, busy: bool) -> int:
        if key not in COMMANDS:
            return 2
        if key == "STARTACQUISITION":
            if busy and not self._auto:
                return 1
            if not busy:
                self._start_pending, self._trigger = True, False
        elif key == "SOFTTRIGGER":
            self._trigger = True
        elif key in ("STOPACQUISITION", "ABORT"):
            self._start_pending, self._abort = False, busy
        self._cond.notify_all()
        return 0
