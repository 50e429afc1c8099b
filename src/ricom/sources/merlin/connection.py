"""One open connection to a Merlin data port, read by one acquisition after another.

`MerlinConnection` owns the socket and its `ricom.sources.merlin.stream.StreamBuffer`;
`ricom.sources.merlin.live.MerlinLiveSource` reads one acquisition from it (header,
frames) and leaves the stream at the next acquisition's header, so a live session
(`ricom.live`) can stay connected while the microscope software starts scan after scan.
`AcquisitionAborted` says that an acquisition ended early because the next one began.
"""
from __future__ import annotations

import threading
import time

from ricom.core.errors import InputError
from ricom.sources.merlin.control import DATA_PORT, connect
from ricom.sources.merlin.stream import StreamBuffer


class AcquisitionAborted(InputError):
    """An acquisition ended before its frame count: the next acquisition header arrived."""


class MerlinConnection:
    """An open data-port connection (see the module docstring).

    Parameters
    ----------
    host, port : str, int
        The detector PC and its data port.
    stop : threading.Event, optional
        Set it to end any wait on this connection.
    timeout : float, optional
        Give up (`InputError`) when no byte arrives for this many seconds while an
        acquisition is being received; None waits.
    connect_timeout : float
        Seconds to wait for the connection itself.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = DATA_PORT, *, stop: threading.Event | None = None,
                 timeout: float | None = None, connect_timeout: float = 5.0) -> None:
        self.host, self.port = host, int(port)
        self.sock = connect(host, self.port, connect_timeout)
        self.stream = StreamBuffer(self.sock, stop, timeout)
        self.lost = False
        self.t_open = time.monotonic()

    @property
    def closed(self) -> bool:
        return self.sock is None

    def idle_s(self) -> float:
        """Seconds since the last byte arrived."""
        return time.monotonic() - self.stream.last_data

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    def __enter__(self) -> MerlinConnection:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
