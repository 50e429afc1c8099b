"""ASI's sparse Timepix3 stream as a live session's acquisition stream.

`AsiAcquisitions` opens one `ricom.sources.timepix.asi.AsiConnection` to the camera
software and reads one scan after another from it as `AsiScanSource`s (each scan of an
acquisition is one `ricom.live.session.Acquisition`).  Waiting for the next ScanStart has
no time limit; while a scan is received, ``timeout`` seconds without data end it.
"""
from __future__ import annotations

import threading

from ricom.core.errors import InputError
from ricom.core.scan_positions import scan_positions_from
from ricom.live.session import AcquisitionStream
from ricom.sources.timepix.asi import PORT, AsiConnection, AsiScanSource


class AsiAcquisitions(AcquisitionStream):
    """Scans of one ASI sparse-stream connection.

    Parameters
    ----------
    host, port : str, int
        The camera PC and its sparse-stream port (default 8283).
    stop : threading.Event, optional
        Ends any wait.
    timeout : float, optional
        Seconds without data that end a scan being received (None: wait).
    source_options : dict
        `AsiScanSource` options (``scan_shape``, ``scan_positions``).
    """

    def __init__(self, host: str, port: int = PORT, *, stop: threading.Event | None = None,
                 timeout: float | None = None, **source_options) -> None:
        self.host, self.port, self.stop, self.timeout = host, int(port), stop, timeout
        if source_options.get("scan_positions") is not None:  # read once, not per scan
            source_options["scan_positions"] = scan_positions_from(source_options["scan_positions"])
        self.options = source_options

    def connect(self) -> AsiConnection:
        return AsiConnection(self.host, self.port, stop=self.stop, timeout=None)

    def next_source(self, connection: AsiConnection) -> AsiScanSource:
        """Wait (without a time limit) for the next ScanStart; its scan as a source."""
        if connection.lost:
            raise InputError(f"the ASI stream connection to {self.host}:{self.port} was lost")
        connection.stream.timeout = None
        connection.wait_for_scan()
        connection.stream.timeout = self.timeout
        return AsiScanSource(connection, **self.options)
