"""The Merlin control port client and the ``MPX`` message framing shared by client and server.

Protocol (``../shared/FORMATS.md`` §2): every message on the control port (default 6341)
and the data port (default 6342) is ``MPX,`` + 10 decimal digits + ``,`` + payload, the
number being the payload length **plus one**.  `mpx_prefix` writes that prefix,
`take_message` cuts complete messages out of a receive buffer (the simulator's control
port) and `connect` opens a TCP connection to either port.  `MerlinControl` talks to the
control port: ``GET``/``SET``/``CMD`` requests with return codes.  The data stream itself
is read by `ricom.sources.merlin.live`.
"""
from __future__ import annotations

import re
import socket

from ricom.core.errors import InputError

DATA_PORT = 6342
CONTROL_PORT = 6341
PREFIX_BYTES = 15
PREFIX_RE = re.compile(rb"MPX,(\d{10}),")


def mpx_prefix(payload_bytes: int) -> bytes:
    """The 15-byte ``MPX,<payload length + 1>,`` prefix of a message."""
    return b"MPX,%010d," % (payload_bytes + 1)


def connect(host: str, port: int, timeout: float = 5.0, what: str = "data") -> socket.socket:
    """A TCP connection to the detector, or an `InputError` saying what to check."""
    try:
        sock = socket.create_connection((host, int(port)), timeout=timeout)
    except OSError as exc:
        raise InputError(f"cannot connect to the Merlin {what} port {host}:{port} "
                         f"({exc.strerror or exc}); is the detector software or "
                         f"'ricom simulate merlin' running there?") from None
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def take_message(buf: bytearray) -> bytes | None:
    """Remove and return the payload of the first complete MPX message in ``buf``."""
    start = buf.find(b"MPX,")
    if start < 0:
        del buf[:max(0, len(buf) - 3)]
        return None
    del buf[:start]
    if len(buf) < PREFIX_BYTES:
        return None
    digits = bytes(buf[4:14])
    if not digits.isdigit() or buf[14:15] != b",":
        del buf[:4]
        return take_message(buf)
    end = PREFIX_BYTES + int(digits) - 1
    if len(buf) < end:
        return None
    payload = bytes(buf[PREFIX_BYTES:end])
    del buf[:end]
    return payload


_CODES = {1: "the detector is busy (an acquisition is running); stop it first",
          2: "the detector does not recognise it", 3: "the value is out of range"}


class MerlinControl:
    """Client of the Merlin control port: ``GET``, ``SET`` and ``CMD`` with return codes.

    Parameters
    ----------
    host, port : str, int
        The control port (default 6341).
    timeout : float
        Seconds to wait for each reply.

    Examples
    --------
    >>> with MerlinControl("127.0.0.1", 6341) as c:  # doctest: +SKIP
    ...     c.configure(depth=12, n_frames=64 * 64, scan_shape=(64, 64))
    ...     c.start(soft_trigger=True)
    """

    def __init__(self, host: str = "127.0.0.1", port: int = CONTROL_PORT, timeout: float = 5.0) -> None:
        self.host, self.port, self.timeout = host, int(port), float(timeout)
        self._sock: socket.socket | None = None

    def connect(self) -> MerlinControl:
        if self._sock is None:
            self._sock = connect(self.host, self.port, self.timeout, "control")
            self._sock.settimeout(self.timeout)
        return self

    def close(self) -> None:
        if self._sock is not None:
            self._sock, sock = None, self._sock
            sock.close()

    __enter__ = connect

    def __exit__(self, *exc) -> None:
        self.close()

    def request(self, kind: str, name: str, value=None) -> tuple[str | None, int]:
        """Send ``kind,name[,value]``; return (value for GET, return code)."""
        body = f"{kind},{name}" + (f",{value}" if value is not None else "")
        sock = self.connect()._sock
        try:
            sock.sendall(mpx_prefix(len(body)) + body.encode("ascii"))
            reply = self._read_reply(sock)
        except TimeoutError:
            raise InputError(f"no reply from the Merlin control port {self.host}:{self.port} to {body} "
                             f"within {self.timeout:g} s") from None
        except OSError as exc:
            raise InputError(f"the Merlin control connection failed during {body} ({exc})") from None
        parts = reply.decode("latin-1").strip().split(",")
        try:
            code = int(parts[-1])
            at = parts.index(kind)
        except ValueError:
            raise InputError(f"unreadable reply {reply[:60]!r} from the Merlin control port to {body}") from None
        return (",".join(parts[at + 2:-1]) if kind == "GET" else None), code

    @staticmethod
    def _read_reply(sock: socket.socket) -> bytes:
        """One reply; replies answer one request at a time, so every byte received belongs to it
        (some simulators send no MPX prefix, or count the length without the +1)."""
        data = b""
        while True:
            more = sock.recv(4096)
            if not more:
                raise OSError("connection closed")
            data += more
            if len(data) >= PREFIX_BYTES or not b"MPX,".startswith(data[:4]):
                m = PREFIX_RE.match(data)
                if m is None:
                    return data
                if len(data) >= PREFIX_BYTES + int(m.group(1)) - 1:
                    return data[PREFIX_BYTES:]

    def _checked(self, kind: str, name: str, value=None) -> str | None:
        result, code = self.request(kind, name, value)
        if code != 0:
            what = f"{kind} {name}" + (f" {value}" if value is not None else "")
            raise InputError(f"Merlin refused {what}: {_CODES.get(code, f'return code {code}')}")
        return result

    def get(self, name: str) -> str:
        """Value of a detector parameter (e.g. ``COUNTERDEPTH``, ``IMAGEX``)."""
        return self._checked("GET", name) or ""

    def set(self, name: str, value) -> None:
        """Set a detector parameter (e.g. ``NUMFRAMESTOACQUIRE``)."""
        self._checked("SET", name, value)

    def cmd(self, name: str) -> None:
        """Run a command (``STARTACQUISITION``, ``SOFTTRIGGER``, ``STOPACQUISITION`` …)."""
        self._checked("CMD", name)

    def configure(self, *, depth: int | None = None, n_frames: int | None = None, scan_shape=None,
                  raw: bool | None = None, soft_trigger: bool | None = None) -> None:
        """Set what is not None: counter depth, frame count, raw (FILEFORMAT), soft trigger
        (TRIGGERSTART 5), scan shape (SCANX/SCANY; tolerated if unknown, as on older software)."""
        if depth is not None:
            self.set("COUNTERDEPTH", int(depth))
        if n_frames is not None:
            self.set("NUMFRAMESTOACQUIRE", int(n_frames))
        if raw is not None:
            self.set("FILEFORMAT", 2 if raw else 0)
        if soft_trigger:
            self.set("TRIGGERSTART", 5)
        if scan_shape is not None:
            for name, v in (("SCANX", scan_shape[1]), ("SCANY", scan_shape[0])):
                _, code = self.request("SET", name, int(v))
                if code not in (0, 2):
                    raise InputError(f"Merlin refused SET {name} {v}: {_CODES.get(code, code)}")

    def start(self, soft_trigger: bool = True) -> None:
        """Arm the detector (``STARTACQUISITION``) and, with a soft trigger, fire it."""
        self.cmd("STARTACQUISITION")
        if soft_trigger:
            self.cmd("SOFTTRIGGER")

    def stop(self) -> None:
        """End the running acquisition (``STOPACQUISITION``)."""
        self.cmd("STOPACQUISITION")
