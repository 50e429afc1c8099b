"""A DECTRIS detector (SIMPLON REST + stream V1/V2) as a live session's acquisition stream.

`DectrisAcquisitions` opens the ZMQ stream before anything is armed and reads one series
after another from it as `ricom.sources.dectris.live.DectrisLiveSource`s.  Passive mode
(the microscope software arms) only listens and takes each next header; the REST API, if
reachable, supplies the pixel mask.  Active mode configures the detector for the scan
(`ArmSettings`: trigger mode, frame counts from the scan shape, times, ROI, compression,
the stream's format and header detail), arms it for every acquisition and keeps the
sequence id so that only that series is read; after the series it disarms, and a series
cut short is aborted at once.
"""
from __future__ import annotations

import threading
import warnings
from dataclasses import dataclass

from ricom.core.chunks import ScanLayout
from ricom.core.errors import InputError, Param, SettingsError
from ricom.live.session import AcquisitionStream
from ricom.sources.dectris.connection import StreamConnection
from ricom.sources.dectris.live import DectrisLiveSource
from ricom.sources.dectris.rest import API_PORT, SimplonClient
from ricom.sources.dectris.stream_v1 import V1Protocol
from ricom.sources.dectris.stream_v2 import V2Protocol

PROTOCOLS = {"v1": V1Protocol, "v2": V2Protocol}
STREAM_FORMAT = {"v1": "legacy", "v2": "cbor"}
TRIGGER_MODES = ("exte", "exts", "ints")
ARMED_HEADER_S = 10.0
"""How long the header of an armed series may take (it is sent at arm time)."""


@dataclass(frozen=True)
class ArmSettings:
    """How active mode sets the detector up for one scan.

    ``trigger_mode``: ``exte`` one frame per external pulse (``ntrigger`` = frames),
    ``exts`` one pulse per scan line (``nimages`` = frames per line), ``ints`` software
    trigger (``nimages`` = frames).  ``None`` values leave the detector's setting alone.
    """

    scan_shape: tuple[int, int]
    trigger_mode: str = "exte"
    count_time_s: float | None = None
    frame_time_s: float | None = None
    roi_mode: str | None = None
    compression: str | None = "bslz4"
    skip_frames: int = 0
    flyback_frames: int = 0
    frames_per_position: int = 1

    def __post_init__(self) -> None:
        if self.trigger_mode not in TRIGGER_MODES:
            raise SettingsError(f"DECTRIS trigger mode {self.trigger_mode!r} is not one of {', '.join(TRIGGER_MODES)}")
        for name in ("count_time_s", "frame_time_s"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise SettingsError(f"{name} must be > 0 s, got {value}")

    def counts(self) -> dict:
        """``nimages`` and ``ntrigger`` for the scan."""
        layout = ScanLayout(self.scan_shape, self.skip_frames, self.flyback_frames, self.frames_per_position)
        n = layout.skip_frames + layout.frames_per_pass
        if self.trigger_mode == "exts":
            lines = self.scan_shape[0]
            if self.skip_frames or n % lines:
                raise SettingsError("trigger mode exts (one pulse per line) needs whole lines: no skipped frames")
            return {"nimages": n // lines, "ntrigger": lines}
        if self.trigger_mode == "ints":
            return {"nimages": n, "ntrigger": 1}
        return {"nimages": 1, "ntrigger": n}

    def apply(self, client: SimplonClient, stream: str) -> None:
        """Configure the detector and its stream (ROI first: setting it resets others)."""
        if self.roi_mode is not None:
            client.set("roi_mode", self.roi_mode)
        client.set("trigger_mode", self.trigger_mode)
        for key, value in self.counts().items():
            client.set(key, value)
        if self.count_time_s is not None:
            client.set("count_time", self.count_time_s)
        if self.frame_time_s is not None:
            client.set("frame_time", self.frame_time_s)
        if self.compression is not None:
            client.set("compression", self.compression)
        configure_stream(client, stream)


def configure_stream(client: SimplonClient, stream: str) -> None:
    """Enable the stream in the version asked for, with the full header (pixel mask)."""
    client.set("mode", "enabled", module="stream")
    client.set("format", STREAM_FORMAT[stream], module="stream")
    client.set("header_detail", "all", module="stream")


class DectrisAcquisitions(AcquisitionStream):
    """Series of one DECTRIS detector (see the module docstring).

    Parameters
    ----------
    host : str
        The detector control unit.
    api_port : int
        SIMPLON REST port (80).
    stream_port : int, optional
        ZMQ stream port; default 9999 (V1) or 31001 (V2).
    stream : {"v1", "v2"}
    arm : ArmSettings, optional
        Active mode: configure and arm for each acquisition.  None: passive.
    stop : threading.Event, optional
    timeout : float, optional
        Seconds without data that end a series being received.
    source_options : dict
        `DectrisLiveSource` options (scan shape, skip/flyback frames, frames, crop, …).
    """

    def __init__(self, host: str, *, api_port: int = API_PORT, stream_port: int | None = None, stream: str = "v1",
                 arm: ArmSettings | None = None, stop: threading.Event | None = None, timeout: float | None = None,
                 **source_options) -> None:
        if stream not in PROTOCOLS:
            raise SettingsError(f"DECTRIS stream {stream!r} is not 'v1' or 'v2'")
        self.host, self.api_port, self.stream, self.arm = host, int(api_port), stream, arm
        self.stream_port = int(stream_port or PROTOCOLS[stream].port)
        self.stop, self.timeout, self.options = stop, timeout, source_options
        self.client: SimplonClient | None = None
        self.mask = None

    def connect(self) -> StreamConnection:
        """Check the REST API (required when active), set the detector up, open the stream."""
        try:
            self.client = SimplonClient(self.host, self.api_port)
            if self.arm is not None:
                self.arm.apply(self.client, self.stream)
            self.mask = self.client.pixel_mask()
        except InputError as exc:
            if self.arm is not None:
                raise
            warnings.warn(f"{exc.message}; listening anyway (the pixel mask comes with the stream header, "
                          f"if the detector sends it)", RuntimeWarning, stacklevel=2)
            self.client = None
        return StreamConnection(self.host, self.stream_port, stop=self.stop)

    def next_source(self, connection: StreamConnection) -> DectrisLiveSource:
        """Arm (active) or wait without a time limit (passive) for the next series' header."""
        if connection.lost:
            raise InputError(f"the DECTRIS stream {connection.where} stopped sending")
        series, header_s, on_close = None, None, None
        if self.arm is not None:
            series, header_s = self.client.arm(), ARMED_HEADER_S
            on_close = self._after_series
            if self.arm.trigger_mode == "ints":  # a software trigger blocks until the series is done
                threading.Thread(target=self._trigger, name="ricom-dectris-trigger", daemon=True).start()
        options = dict(self.options)
        if self.arm is not None:
            options.setdefault("scan_shape", self.arm.scan_shape)
        try:
            return DectrisLiveSource(connection, PROTOCOLS[self.stream](), series=series, header_timeout=header_s,
                                     timeout=self.timeout, stop=self.stop, pixel_mask=self.mask,
                                     on_close=on_close, **options)
        except BaseException:
            if on_close is not None:
                on_close(False)
            raise

    def _trigger(self) -> None:
        try:
            self.client.command("trigger", timeout=3600.0)
        except InputError as exc:
            warnings.warn(f"the software trigger failed: {exc.message}", RuntimeWarning, stacklevel=1)

    def _after_series(self, finished: bool) -> None:
        """Leave the detector idle: abort a series cut short, then disarm."""
        try:
            if not finished:
                self.client.command("abort")
            self.client.command("disarm")
        except InputError as exc:
            warnings.warn(f"could not disarm the detector: {exc.message}", RuntimeWarning, stacklevel=2)


def needs_scan_shape() -> SettingsError:
    return SettingsError("arming the DECTRIS detector needs the scan size: give ", Param("scan_shape", form=True))


__all__ = ["ArmSettings", "DectrisAcquisitions", "configure_stream"]
