"""A DECTRIS detector simulator: SIMPLON REST API and a ZeroMQ stream (V1 or V2), serving real frames.

It behaves like a DECTRIS DCU (FORMATS.md §5): the REST API
(`ricom.simulators.dectris.rest`) configures the detector and takes commands; ``arm``
answers ``{"sequence id": N}`` and pushes the series header at once on the stream port;
the frames follow — at once in the external trigger modes ``exts``/``exte`` (as if the
scan generator pulsed; there is no trigger input), ``nimages`` per ``trigger`` command in
``ints``/``inte`` — ``ntrigger × nimages`` in all, then the end message, and the detector
is idle again.  ``disarm``, ``cancel`` and ``abort`` end a series early (with its end
message).  Stream V1 (``format legacy``) sends multipart JSON + blob messages, stream V2
(``format cbor``) one CBOR message per frame (`ricom.simulators.dectris.encode`).
Frames from a file or array repeat when a series is longer than the data; each distinct
frame is encoded once per setting (bit depth, compression, ROI, mask) and sent from
that cache.  With ``acquisitions=N`` the simulator arms itself N times, ``between_s``
apart, like microscope software does for passive clients.  This module owns
`DectrisSimulator`: its life cycle, detector state and commands; the stream thread is
`ricom.simulators.dectris.sender`, the faults `ricom.simulators.dectris.faults`.
"""
from __future__ import annotations

import datetime
import threading
import uuid

import numpy as np

from ricom.core.errors import InputError, SettingsError
from ricom.simulators.dectris import encode, rest
from ricom.simulators.dectris.faults import DectrisFaults
from ricom.simulators.dectris.frames import FrameStore, Readout, encoded_pass, image_shape
from ricom.simulators.dectris.headers import series_messages
from ricom.simulators.dectris.sender import Sender, Series

STREAMS = {"v1": "legacy", "v2": "cbor"}


class DectrisSimulator:
    """A simulated DECTRIS detector (see the module docstring).

    Parameters
    ----------
    data : ndarray, str or SimulationParams
        Integer frames ``(n, H, W)`` or ``(sy, sx, H, W)``, a file any ricom reader opens,
        or the built-in specimen.
    scan_shape : (int, int), optional
        The scan (default: from the data); ``ntrigger`` starts as its number of positions.
    host : str
        Interface for both ports (default loopback).
    api_port, stream_port : int
        The REST port and the ZeroMQ PUSH port; 0 picks a free port.
    stream : {"v1", "v2"}
        The stream format to start with (``stream/config/format`` legacy / cbor).
    compression : {"bslz4", "lz4", "none"}
    rate_hz : float
        Frames per second (0 = as fast as possible).
    roi : {None, "disabled", "merge2x2"}
        ``merge2x2`` sums 2×2 pixels, as ARINA's 96×96 mode does.
    bit_depth : {8, 16, 32}
    header_detail : {"all", "basic", "none"}
    faults : DectrisFaults, optional
    acquisitions : int
        Arm itself this many times (0 = only on ``arm`` commands), ``between_s`` apart.
    split_header : bool
        Stream V1: send the ``dheader`` part and the config JSON as separate single-part
        messages (as simulators in the ecosystem do) instead of one multipart message.
    log : callable, optional
        Receives one-line event messages.
    """

    def __init__(self, data, *, scan_shape=None, host: str = "127.0.0.1", api_port: int = 0,
                 stream_port: int = 0, stream: str = "v1", compression: str = "bslz4", rate_hz: float = 0.0,
                 roi: str | None = None, bit_depth: int = 16, header_detail: str = "all",
                 faults: DectrisFaults | None = None, acquisitions: int = 0, between_s: float = 0.2,
                 split_header: bool = False, log=None) -> None:
        if stream not in STREAMS:
            raise SettingsError(f"stream must be 'v1' or 'v2', got {stream!r}")
        if rate_hz < 0 or acquisitions < 0 or between_s < 0:
            raise SettingsError(f"rate, acquisitions and between_s must be ≥ 0, got {rate_hz}, {acquisitions}, "
                                f"{between_s}")
        self.store = FrameStore(data, scan_shape)
        self.faults = faults or DectrisFaults()
        if not isinstance(self.faults, DectrisFaults):
            raise SettingsError("faults must be a DectrisFaults")
        self.host, self.rate_hz, self.log = host, float(rate_hz), log
        self.acquisitions, self.between_s, self.split_header = int(acquisitions), float(between_s), split_header
        self._ports = (api_port, stream_port)
        self.config = self._default_config()
        self.mask = np.zeros(self.store.detector_shape, np.uint32)  # the user mask, full resolution
        settings = {("detector", "compression"): compression, ("detector", "bit_depth_image"): bit_depth,
                    ("detector", "roi_mode"): roi or "disabled", ("stream", "format"): STREAMS[stream],
                    ("stream", "header_detail"): header_detail}
        for (module, key), value in settings.items():
            try:
                self._set(module, key, value)
            except rest.ApiError as exc:
                raise SettingsError(exc.text) from None
        self.cond = threading.Condition()
        self.state, self.sequence_id, self.series_sent = "idle", 0, []
        self.current: Series | None = None
        self._cache: dict = {}
        self._http = self._sender = None
        self._auto: threading.Thread | None = None
        self._stopping = threading.Event()
        self.api_port = self.stream_port = None

    # --- life cycle --------------------------------------------------------------------
    def start(self) -> DectrisSimulator:
        """Encode the frames, bind both ports and serve on background threads; returns self."""
        import zmq

        self._encoded()  # pre-encode for the settings at start
        try:
            self._sender = Sender(self.host, self._ports[1], self.cond, self.rate_hz, self._series_ended)
            self._http, _ = rest.serve(self, self.host, self._ports[0])
        except (OSError, zmq.ZMQError) as exc:
            self.stop()
            raise InputError(f"cannot listen on {self.host}: {exc}; choose other ports (0 picks free ones)") from None
        self.stream_port, self.api_port = self._sender.port, self._http.server_address[1]
        if self.acquisitions:
            self._auto = threading.Thread(target=self._auto_arm, daemon=True, name="ricom-dectris-auto")
            self._auto.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop any series, close both ports and wait for the threads."""
        self._stopping.set()
        with self.cond:
            if self.current is not None:
                self.current.stop = "shutdown"
            self.cond.notify_all()
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
        if self._sender is not None:
            self._sender.close(timeout)
        if self._auto is not None:
            self._auto.join(timeout)

    def __enter__(self) -> DectrisSimulator:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def serve_forever(self) -> None:
        """Start (if needed) and block until stopped or Ctrl-C."""
        if self.api_port is None:
            self.start()
        try:
            while not self._stopping.wait(0.2):
                pass
        finally:
            self.stop()

    def _say(self, text: str) -> None:
        if self.log is not None:
            self.log(text)

    # --- configuration -----------------------------------------------------------------
    def _default_config(self) -> dict:
        h, w = self.store.detector_shape
        scan = self.store.scan_shape
        frames = scan[0] * scan[1] if scan else (self.store.n_frames or 1)
        det = {"nimages": 1, "ntrigger": int(frames), "trigger_mode": "exte", "count_time": 0.001,
               "frame_time": 0.001, "compression": "bslz4", "bit_depth_image": 16, "bit_depth_readout": 16,
               "x_pixels_in_detector": w, "y_pixels_in_detector": h, "roi_mode": "disabled",
               "pixel_mask_applied": True, "mask_to_zero": False, "number_of_excluded_pixels": 0,
               "flatfield_correction_applied": False, "countrate_correction_applied": False,
               "virtual_pixel_correction_applied": False, "photon_energy": 300000.0,
               "threshold_energy": 150000.0, "beam_center_x": w / 2, "beam_center_y": h / 2,
               "detector_distance": 0.1, "x_pixel_size": 1e-4, "y_pixel_size": 1e-4, "sensor_material": "Si",
               "sensor_thickness": 4.5e-4, "description": f"DECTRIS simulated {w}x{h} (ricom)",
               "detector_number": "RICOM-SIM-0001", "software_version": "1.8.0", "detector_readout_time": 1e-7}
        stream = {"mode": "enabled", "format": "legacy", "header_detail": "basic", "header_appendix": "",
                  "image_appendix": ""}
        return {"detector": det, "stream": stream, "filewriter": {"mode": "disabled"}, "monitor": {"mode": "disabled"}}

    @property
    def image_shape(self) -> tuple[int, int]:
        return image_shape(self.store.detector_shape, self.config["detector"]["roi_mode"])

    def image_mask(self) -> np.ndarray:
        """The pixel mask in the image shape: the user mask and the fault's, OR-ed over 2×2 with merge2x2."""
        m = self.mask | self.faults.mask_bits(self.store.detector_shape)
        if self.config["detector"]["roi_mode"] == "merge2x2":
            h, w = self.image_shape
            m = np.bitwise_or.reduce(m[:h * 2, :w * 2].reshape(h, 2, w, 2), axis=(1, 3))
        return m

    def _set(self, module: str, key: str, value) -> list[str]:
        """Set one parameter (validated); the parameters that changed."""
        spec = rest.CONFIG[module].get(key)
        if spec is None:
            raise rest.ApiError(404, f"unknown parameter {module}/config/{key}")
        det = self.config["detector"]
        if key == "pixel_mask" and module == "detector":
            mask = rest.from_darray(value, self.image_shape)
            if det["roi_mode"] == "merge2x2":
                mask = np.kron(mask, np.ones((2, 2), np.uint32))
                mask = np.pad(mask, [(0, a - b) for a, b in zip(self.store.detector_shape, mask.shape, strict=True)])
            self.mask = mask
            det["number_of_excluded_pixels"] = int(np.count_nonzero(self.image_mask() & 0xFFFF))
            return ["pixel_mask", "number_of_excluded_pixels"]
        value = spec.check(key, value)
        if key == "roi_mode" and value == "merge2x2" and min(self.store.detector_shape) < 2:
            raise rest.ApiError(400, "merge2x2 needs a detector of at least 2×2 pixels")
        changed = [key]
        self.config[module][key] = value
        if module == "detector" and key == "count_time" and det["frame_time"] < value:
            det["frame_time"] = value
            changed.append("frame_time")
        elif module == "detector" and key == "frame_time" and det["count_time"] > value:
            det["count_time"] = value
            changed.append("count_time")
        elif module == "detector" and key == "roi_mode":
            det["y_pixels_in_detector"], det["x_pixels_in_detector"] = self.image_shape
            changed += ["x_pixels_in_detector", "y_pixels_in_detector"]
        elif module == "detector" and key == "bit_depth_image":
            det["bit_depth_readout"] = value
        return changed

    # --- REST entry points (called from the HTTP threads) -------------------------------
    def api_get(self, module: str, task: str, key: str):
        with self.cond:
            if key == "keys":
                return list(rest.CONFIG[module] if task == "config" else rest.STATUS[module])
            if task == "config":
                spec = rest.CONFIG[module].get(key)
                if spec is None:
                    raise rest.ApiError(404, f"unknown parameter {module}/config/{key}")
                value = rest.darray(self.image_mask()) if key == "pixel_mask" else self.config[module][key]
                return spec.describe(value)
            kinds = rest.STATUS[module]
            if key not in kinds:
                raise rest.ApiError(404, f"unknown parameter {module}/status/{key}")
            return {"value": self._status(module, key), "value_type": kinds[key], "access_mode": "r"}

    def _status(self, module: str, key: str):
        if module == "detector":
            return {"state": self.state, "error": [], "series_unique_id": self.unique_id(self.sequence_id),
                    "time": datetime.datetime.now(datetime.timezone.utc).isoformat()}[key]
        if module == "stream":
            if key == "dropped":
                return 0
            return "disabled" if self.config["stream"]["mode"] == "disabled" else \
                ("acquire" if self.state == "acquire" else "ready")
        return "ready" if self.config[module]["mode"] == "enabled" else "disabled"

    def api_put(self, module: str, key: str, body):
        with self.cond:
            if self.state != "idle" and module in ("detector", "stream"):
                raise rest.ApiError(400, f"cannot change the configuration while the detector is {self.state}")
            if key == "":  # PUT …/config with {"key": {"value": v}, …}
                if not isinstance(body, dict) or not all(isinstance(v, dict) and "value" in v for v in body.values()):
                    raise rest.ApiError(400, 'expected {"param": {"value": …}, …}')
                return [c for k, v in body.items() for c in self._set(module, k, v["value"])]
            if not isinstance(body, dict) or "value" not in body:
                raise rest.ApiError(400, 'expected a JSON body {"value": …}')
            return self._set(module, key, body["value"])

    def api_command(self, module: str, command: str):
        if module != "detector" or command not in rest.COMMANDS:
            raise rest.ApiError(404, f"unknown command {module}/command/{command}")
        if command == "arm":
            return {"sequence id": self.arm()}
        if command == "trigger":
            self.trigger()
            return None
        if command == "initialize":
            self._end_current("abort")
            with self.cond:
                self.state = "idle"
            return None
        self._end_current(command)
        return {"sequence id": self.sequence_id}

    # --- commands ------------------------------------------------------------------------
    def arm(self) -> int:
        """Arm: a new series id; its header goes out at once (the frames too in exts/exte)."""
        with self.cond:
            if self.state != "idle":
                raise rest.ApiError(400, f"cannot arm: the detector is {self.state} (disarm first)")
            self.state = "configure"
        try:
            series = self._new_series(self.sequence_id + 1)
        except Exception:
            with self.cond:
                self.state = "idle"
            raise
        self._say(f"armed series {series.series_id}: {series.frames} frames ({self.config['detector']['trigger_mode']}"
                  f", stream {self.config['stream']['format']}, {self.config['detector']['compression']})")
        with self.cond:
            self.sequence_id, self.current = series.series_id, series
            self.state = "acquire" if not series.triggered else "ready"
            streaming = self.config["stream"]["mode"] == "enabled"
            if streaming:
                self._sender.submit(series)
        if not streaming and not series.triggered:  # acquired, but nothing goes out
            self._series_ended(series)
        return series.series_id

    def trigger(self) -> None:
        """A software trigger (ints/inte): release the next ``nimages`` frames."""
        with self.cond:
            s = self.current
            if s is None or not s.triggered or self.state not in ("ready", "acquire"):
                raise rest.ApiError(400, f"cannot trigger: the detector is {self.state}"
                                    + ("" if s is None or s.triggered else " in an external trigger mode"))
            s.allowed = min(s.frames, s.allowed + s.nimages)
            self.state = "acquire"
            self.cond.notify_all()

    def _end_current(self, how: str) -> None:
        with self.cond:
            s = self.current
            if s is None:
                self.state = "idle"
                return
            s.stop = how
            self.cond.notify_all()
        if self.config["stream"]["mode"] != "enabled":
            self._series_ended(s)
        s.done.wait(5.0)

    def _series_ended(self, series: Series) -> None:
        with self.cond:
            self.series_sent.append((series.series_id, series.sent))
            if self.current is series:
                self.current, self.state = None, "idle"
            self.cond.notify_all()
        series.done.set()
        how = f" ({series.stop})" if series.stop else ""
        self._say(f"series {series.series_id} ended{how}: {series.sent} frames sent")

    def _auto_arm(self) -> None:
        """Arm ``acquisitions`` times, ``between_s`` apart, as microscope software does."""
        for _ in range(self.acquisitions):
            if self._stopping.wait(self.between_s):
                return
            try:
                self.arm()
            except rest.ApiError:
                continue
            with self.cond:
                s = self.current
            if s is not None:
                while not s.done.wait(0.1):
                    if self._stopping.is_set():
                        return

    # --- series ----------------------------------------------------------------------------
    @staticmethod
    def unique_id(series_id: int) -> str:
        return str(uuid.UUID(int=series_id))

    def _readout(self) -> Readout:
        det = self.config["detector"]
        return Readout(bit_depth=int(det["bit_depth_image"]), roi=det["roi_mode"], mask=self.image_mask(),
                       applied=bool(det["pixel_mask_applied"]), mask_to_zero=bool(det["mask_to_zero"]),
                       hot=self.faults.hot(self.store.n_frames or 0, self.image_shape))

    def _encoded(self) -> list:
        det, stream = self.config["detector"], self.config["stream"]
        kind = "v1" if stream["format"] == "legacy" else "v2"
        readout = self._readout()
        key = (kind, det["compression"], readout.bit_depth, readout.roi, readout.applied, readout.mask_to_zero,
               readout.mask.tobytes())
        if key not in self._cache:
            self._cache.clear()
            self._cache[key] = encoded_pass(self.store, readout, kind, det["compression"])
        return self._cache[key]

    def _new_series(self, series_id: int) -> Series:
        det = self.config["detector"]
        frames = int(det["nimages"]) * int(det["ntrigger"])
        triggered = det["trigger_mode"] in ("ints", "inte")
        limit = self.faults.frame_limit(frames)
        series = Series(series_id=series_id, stream="v1" if self.config["stream"]["format"] == "legacy" else "v2",
                        frames=frames, limit=limit, stalls=self.faults.stalls(frames), nimages=int(det["nimages"]),
                        triggered=triggered, encoded=self._encoded(), header=[], end=None,
                        frame_ns=round(det["frame_time"] * 1e9), count_ns=round(det["count_time"] * 1e9),
                        allowed=0 if triggered else frames)
        series_messages(self, series)
        return series

    @property
    def saturation_value(self) -> int:
        return (1 << int(self.config["detector"]["bit_depth_image"])) - 2

    def dtype(self) -> np.dtype:
        return encode.DTYPES[int(self.config["detector"]["bit_depth_image"])]
