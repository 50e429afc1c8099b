"""Which detector a GUI live session watches: a `SourceRequest` turned into an acquisition stream.

Owns `acquisition_stream` (a Merlin request gives `ricom.live.merlin.MerlinAcquisitions`,
started through the control port when one is given; a DECTRIS request gives
`ricom.live.dectris.DectrisAcquisitions`, passive or, with ``dectris.active``, configured
and armed for the scan; a Timepix3 request gives `ricom.live.timepix.Tpx3RawAcquisitions`
(raw packets, listening or connecting, scan shape from the settings column) or
`ricom.live.asi.AsiAcquisitions`) and `TappedStream` (the stream with each acquisition's source
wrapped in a `SourceTap`, so the diffraction panel sees its latest pattern and its pixel
mask, and with the warnings of connecting — a passive DECTRIS session whose REST API is
unreachable listens anyway — handed to the window instead of stderr).

The DECTRIS layer is imported only when asked for, so the GUI works without its extra.
"""
from __future__ import annotations

import importlib
import threading
import warnings
from collections.abc import Callable

from ricom.core.errors import InputError
from ricom.gui.source_panel import SourceRequest
from ricom.gui.worker import PatternTap
from ricom.live.asi import AsiAcquisitions
from ricom.live.merlin import MerlinAcquisitions
from ricom.live.session import AcquisitionStream
from ricom.live.timepix import Tpx3RawAcquisitions
from ricom.sources.base import Source
from ricom.sources.merlin.control import MerlinControl


class SourceTap(PatternTap):
    """A `PatternTap` that `ricom.api.reconstruct_run` accepts as a `Source`."""


Source.register(SourceTap)


class TappedStream(AcquisitionStream):
    """The detector's acquisition stream, each source wrapped in a `SourceTap`.

    ``note(text)`` receives the warnings raised while connecting.
    """

    def __init__(self, stream: AcquisitionStream, note: Callable[[str], None]) -> None:
        self.stream, self.note = stream, note
        self.connection = None

    def connect(self):
        """Connect (``connection`` keeps it: a listening Timepix3 stream's port is ``connection.port``)."""
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            self.connection = self.stream.connect()
        for w in caught:
            self.note(str(w.message))
        return self.connection

    def next_source(self, connection):
        return SourceTap(self.stream.next_source(connection))


def acquisition_stream(request: SourceRequest, stop: threading.Event, scan_shape=None) -> AcquisitionStream:
    """The acquisition stream of a Merlin, DECTRIS or Timepix3 ``request``.

    ``scan_shape`` is the settings column's scan: what an active DECTRIS session sets the
    detector up for and the scan of a raw Timepix3 stream, unless ``request.source_options``
    gives one (the override).
    """
    if request.kind == "timepix3":
        return _timepix_stream(request, stop, scan_shape)
    if not request.host:
        raise InputError("give the detector's host name or address")
    if request.kind == "dectris":
        return _dectris_stream(request, stop, scan_shape)
    control = trigger = None
    if request.control_port:
        control = MerlinControl(request.host, request.control_port)
        trigger = control.start
    return MerlinAcquisitions(request.host, request.data_port, stop=stop, trigger=trigger, control=control,
                              **request.source_options)


def _dectris_stream(request: SourceRequest, stop: threading.Event, scan_shape) -> AcquisitionStream:
    try:
        live = importlib.import_module("ricom.live.dectris")
    except ImportError as exc:
        raise InputError(f"DECTRIS live streams are not available in this installation of ricom ({exc}); "
                         f"pip install 'ricom[dectris]'") from None
    d = request.dectris
    options = dict(request.source_options)
    arm = None
    if d.active:
        scan = options.get("scan_shape") or scan_shape
        if scan is None:
            raise live.needs_scan_shape()
        arm = live.ArmSettings(tuple(int(n) for n in scan), d.trigger_mode, d.count_time_s, d.frame_time_s,
                               d.roi_mode, d.compression)
    return live.DectrisAcquisitions(request.host, api_port=d.api_port, stream_port=d.port, stream=d.stream,
                                    arm=arm, stop=stop, **options)


def _timepix_stream(request: SourceRequest, stop: threading.Event, scan_shape) -> AcquisitionStream:
    """Raw packets (listening, or connecting to ``request.host``) or ASI's sparse stream."""
    t = request.timepix
    options = dict(request.source_options)
    if t.protocol == "asi":
        if not request.host:
            raise InputError("give the ASI camera PC's host name or address")
        return AsiAcquisitions(request.host, t.port, stop=stop, **options)
    options = {**t.source_options(), **options, "keep_times": True}
    options.pop("acceptance_ns", None)  # the engine filters (`SessionWorker.acceptance`): it can rebuild a scan
    options.setdefault("scan_shape", None if scan_shape is None else tuple(int(n) for n in scan_shape))
    if t.listen:
        return Tpx3RawAcquisitions(listen_port=t.port, stop=stop, **options)
    if not request.host:
        raise InputError("give the camera server's host name or address (or listen for it)")
    return Tpx3RawAcquisitions(request.host, t.port, stop=stop, **options)


__all__ = ["SourceTap", "TappedStream", "acquisition_stream"]
