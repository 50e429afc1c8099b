"""A Timepix3 camera server's raw packet stream (Serval) as a live session's acquisition stream.

`Tpx3RawAcquisitions` listens for Serval (``tcp://connect@…``) or connects to it
(``tcp://listen@…``) through one `ricom.sources.timepix.stream.Tpx3Connection`; every
TCP connection carries one scan, read as a `Tpx3StreamSource`.  With a
`ricom.sources.timepix.serval.ServalClient` it also sets Serval's raw destination and
starts a measurement per scan.  A scan that ends early
(cancelled, a missing line trigger, a connection broken mid-chunk) is kept as partial.
"""
from __future__ import annotations

import threading
import time

from ricom.core.errors import InputError, Param, SettingsError
from ricom.core.scan_positions import scan_positions_from
from ricom.live.session import AcquisitionStream
from ricom.sources.timepix.serval import ServalClient, raw_destination
from ricom.sources.timepix.stream import Tpx3Connection, Tpx3StreamSource
from ricom.sources.timepix.sync import SyncOptions


class Tpx3RawAcquisitions(AcquisitionStream):
    """Scans of raw Timepix3 packets, one per TCP connection.

    Parameters
    ----------
    host, port : str, int, optional
        Connect to Serval's ``tcp://listen@HOST:PORT``.
    listen_port : int, optional
        Listen for Serval's ``tcp://connect@…`` instead (``listen_host``: the interface).
    stop : threading.Event, optional
    timeout : float, optional
        Seconds without data that end a scan being received.
    serval : ServalClient, optional
        Drive Serval's REST API: set its raw destination to this connection
        (``tcp://connect@`` this machine when listening, ``tcp://listen@HOST:PORT``
        otherwise) and start a measurement per scan (the previous one is stopped first;
        `close_serval` stops the last).
    source_options : dict
        `Tpx3StreamSource` options (scan shape, sync, dwell, acceptance, chip layout, scan
        order ``scan_positions``, …).
    """

    def __init__(self, host: str | None = None, port: int | None = None, *, listen_port: int | None = None,
                 listen_host: str = "0.0.0.0", stop: threading.Event | None = None, timeout: float | None = None,
                 serval: ServalClient | None = None, **source_options) -> None:
        if source_options.get("scan_shape") is None:
            raise SettingsError("a Timepix3 raw stream does not carry the scan shape; give ",
                                Param("scan_shape", form=True))
        source_options.pop("n_frames", None)
        if source_options.get("sync") in (None, "auto"):
            source_options["sync"] = "line"
        order = scan_positions_from(source_options.get("scan_positions"))
        if order is not None:  # read once, and checked against scan shape and sync before any scan arrives
            source_options["scan_positions"] = order
            SyncOptions(tuple(source_options["scan_shape"]), source_options["sync"],
                        flyback_frames=source_options.get("flyback_frames", 0), scan_positions=order)
        self.host, self.port, self.listen_port, self.listen_host = host, port, listen_port, listen_host
        self.stop, self.timeout, self.options = stop, timeout, source_options
        self.serval, self.scans = serval, 0

    def connect(self) -> Tpx3Connection:
        if self.serval is None:
            return Tpx3Connection(self.host, self.port, listen_port=self.listen_port, listen_host=self.listen_host,
                                  stop=self.stop)
        if self.listen_port is not None:
            conn = Tpx3Connection(listen_port=self.listen_port, listen_host=self.listen_host, stop=self.stop)
            self.serval.set_raw_destination(raw_destination(self.serval.url, listen_port=conn.port,
                                                            listen_host=self.listen_host))
            return conn
        self.serval.set_raw_destination(raw_destination(self.serval.url, host=self.host, port=self.port))
        self.serval.start()  # Serval binds when the measurement starts: connect after
        deadline = time.monotonic() + 5.0
        while True:
            try:
                return Tpx3Connection(self.host, self.port, stop=self.stop)
            except InputError:
                if time.monotonic() > deadline or (self.stop is not None and self.stop.wait(0.1)):
                    raise

    def close_serval(self) -> None:
        """Stop Serval's measurement, if one is running."""
        if self.serval is not None:
            self.serval.stop()

    def next_source(self, connection: Tpx3Connection) -> Tpx3StreamSource:
        """Wait (without a time limit) for the next scan's connection; its source."""
        if self.serval is not None:
            if self.scans and self.serval.measuring:
                self.serval.stop()
            if not self.serval.measuring:
                self.serval.start()
        sock = connection.next_socket()
        self.scans += 1
        options = dict(self.options)
        return Tpx3StreamSource(sock, stop=self.stop, timeout=self.timeout, where=connection.where,
                                connection=connection, **options)
