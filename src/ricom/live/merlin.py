"""The Merlin data port as a live session's acquisition stream.

`MerlinAcquisitions` opens one `ricom.sources.merlin.connection.MerlinConnection` and
reads one acquisition after another from it as `MerlinLiveSource`s.  Waiting for the next
acquisition header has no time limit (the operator starts scans when ready); while an
acquisition is received, ``timeout`` seconds without data end it with a message naming
the host and what was last received.  In active mode ``trigger`` arms and starts each
acquisition through the control port.
"""
from __future__ import annotations

import threading
from collections.abc import Callable

from ricom.core.errors import InputError
from ricom.live.session import AcquisitionStream
from ricom.sources.merlin.connection import MerlinConnection
from ricom.sources.merlin.live import MerlinLiveSource


class MerlinAcquisitions(AcquisitionStream):
    """Acquisitions of one Merlin data connection.

    Parameters
    ----------
    host, port : str, int
        The detector PC and its data port.
    stop : threading.Event, optional
        Ends any wait.
    timeout : float, optional
        Seconds without data that end an acquisition being received (None: wait).
    trigger : callable, optional
        Called before waiting for each acquisition (active mode: arm and start it).
    source_options : dict
        `MerlinLiveSource` options (scan shape, skipped and flyback frames, crop, the
        control-port client that stops an acquisition cut short, …).
    """

    def __init__(self, host: str, port: int, *, stop: threading.Event | None = None, timeout: float | None = None,
                 trigger: Callable[[], object] | None = None, **source_options) -> None:
        self.host, self.port, self.stop, self.timeout = host, int(port), stop, timeout
        self.trigger, self.options = trigger, source_options

    def connect(self) -> MerlinConnection:
        return MerlinConnection(self.host, self.port, stop=self.stop, timeout=None)

    def next_source(self, connection: MerlinConnection) -> MerlinLiveSource:
        """Wait (without a time limit) for the next acquisition header; its source."""
        if connection.lost:
            raise InputError(f"the Merlin data connection to {self.host}:{self.port} was lost")
        connection.stream.timeout = None
        source = MerlinLiveSource(connection=connection, trigger=self.trigger, **self.options)
        connection.stream.timeout = self.timeout
        return source
