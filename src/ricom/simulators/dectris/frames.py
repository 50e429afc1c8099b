"""The frames the DECTRIS simulator sends, and their encoded forms, each distinct frame encoded once.

`FrameStore` holds the input: integer frames ``(n, H, W)`` or ``(sy, sx, H, W)``, a file
any ricom reader opens (`ricom.sources.open_source`, read again for each new encoding),
or the built-in specimen (`ricom.simulators.specimen`, simulated once and kept; without a
dose scaled so that its brightest pixel reads 1000 counts).  `Readout` is what the
detector makes of a frame for one setting: the ``merge2x2`` ROI (2×2 sums, like ARINA's
96×96 from 192×192), counts clipped to the saturation value, hot readings (a fault), and
masked pixels set to 2^bit_depth − 1 (0 with ``mask_to_zero``).  `encoded_pass` turns
one pass over the frames into cached per-frame stream pieces (`ricom.simulators.dectris.encode`).
"""
from __future__ import annotations

import ctypes
import dataclasses
import os
import re
import threading
from collections.abc import Iterator

import numpy as np

from ricom.core.errors import SettingsError
from ricom.simulators.dectris import encode
from ricom.simulators.specimen import SimulationParams, frame_stack, simulate_chunks

DEMO_PEAK_COUNTS = 1000


class FrameStore:
    """One pass over the frames to send (see the module docstring)."""

    def __init__(self, data, scan_shape=None) -> None:
        self._path = None
        if isinstance(data, (str, os.PathLike)):
            from ricom.sources import open_source

            self._path = os.fspath(data)
            src = open_source(self._path, **({"scan_shape": tuple(scan_shape)} if scan_shape else {}))
            if src.kind != "frames":
                raise SettingsError(f"the DECTRIS simulator sends frames; {self._path!r} holds events")
            self._options = {"scan_shape": tuple(scan_shape)} if scan_shape else {}
            self.detector_shape, self.scan_shape = tuple(src.detector_shape), src.scan_shape
            self.n_frames = src.n_frames or (src.scan_shape[0] * src.scan_shape[1] if src.scan_shape else None)
            self.frames = None
        else:
            if isinstance(data, SimulationParams):
                data = _demo_frames(data)
            self.frames, self.scan_shape = _as_frames(data, scan_shape)
            self.detector_shape, self.n_frames = tuple(self.frames.shape[1:]), len(self.frames)
        if scan_shape is not None:
            self.scan_shape = tuple(int(v) for v in scan_shape)

    def chunks(self, size: int = 256) -> Iterator[np.ndarray]:
        """Integer frames ``(k, H, W)`` in order."""
        if self.frames is not None:
            for s in range(0, len(self.frames), size):
                yield self.frames[s:s + size]
            return
        from ricom.sources import open_source

        count = 0
        for chunk in open_source(self._path, **self._options).chunks(size):
            frames = chunk.frames
            if frames.dtype.kind == "f":
                frames = np.rint(np.maximum(frames, 0)).astype(np.uint32)
            count += len(frames)
            yield frames
        self.n_frames = count


def _as_frames(data, scan_shape) -> tuple[np.ndarray, tuple | None]:
    return frame_stack(data, scan_shape, "the DECTRIS simulator")


def _demo_frames(params: SimulationParams) -> np.ndarray:
    """The built-in specimen as integer counts (without a dose, scaled to DEMO_PEAK_COUNTS)."""
    parts = [frames for frames, _ in simulate_chunks(params)]
    frames = np.concatenate(parts)
    if params.dose_e_per_probe is None:
        frames = np.rint(frames * (DEMO_PEAK_COUNTS / max(float(frames.max()), 1e-30))).astype(np.uint16)
    return frames.reshape(*params.scan_shape, *params.detector_shape)


@dataclasses.dataclass(frozen=True)
class Readout:
    """How the detector reads a frame for one setting.

    Attributes
    ----------
    bit_depth : {8, 16, 32}
    roi : {"disabled", "merge2x2"}
    mask : ndarray of uint32
        The pixel mask in the image shape (after the ROI).
    applied : bool
        ``pixel_mask_applied``: masked pixels read ``fill``.
    mask_to_zero : bool
        Masked pixels read 0 instead of 2^bit_depth − 1.
    hot : dict
        Frame index → flat pixel indices that read the saturation value (a fault).
    """

    bit_depth: int
    roi: str
    mask: np.ndarray
    applied: bool = True
    mask_to_zero: bool = False
    hot: dict = dataclasses.field(default_factory=dict)

    @property
    def dtype(self) -> np.dtype:
        return encode.DTYPES[self.bit_depth]

    @property
    def saturation(self) -> int:
        """The largest count a pixel reads (2^bit_depth − 2; 2^bit_depth − 1 marks masked pixels)."""
        return (1 << self.bit_depth) - 2

    @property
    def fill(self) -> int:
        return 0 if self.mask_to_zero else (1 << self.bit_depth) - 1

    def apply(self, frames: np.ndarray, first: int) -> np.ndarray:
        """Frames ``first…`` as sent: ROI, saturation, hot readings, mask; in the image dtype."""
        f = frames.astype(np.int64)
        if self.roi == "merge2x2":
            k, h, w = f.shape
            f = f[:, :h // 2 * 2, :w // 2 * 2].reshape(k, h // 2, 2, w // 2, 2).sum(axis=(2, 4))
        np.clip(f, 0, self.saturation, out=f)
        for i in range(len(f)):
            pixels = self.hot.get(first + i)
            if pixels is not None:
                f[i].reshape(-1)[pixels % f[i].size] = self.saturation
        masked = (self.mask & 0xFFFF) != 0 if self.applied else None
        if masked is not None and masked.any():
            f[:, masked] = self.fill
        return f.astype(self.dtype)


def image_shape(detector_shape: tuple[int, int], roi: str) -> tuple[int, int]:
    """The shape of the images sent for a ROI mode."""
    h, w = detector_shape
    return (h // 2, w // 2) if roi == "merge2x2" else (h, w)


def encoded_pass(store: FrameStore, readout: Readout, stream: str, compression: str) -> list:
    """Every frame of ``store`` encoded once for the stream: a list with one item per frame.

    V1 items are ``(blob, dimage_d part, md5 hex)`` (blob a ``zmq.Frame`` sent without
    copying); V2 items are the encoded ``data`` map of the image message.  The work runs
    on a thread of its own with OpenMP limited to one thread there: bitshuffle starts its
    OpenMP threads on every call, which costs ~100 µs a frame, ten times the compression.
    """
    result: dict = {}

    def work() -> None:
        if compression == "bslz4":
            import bitshuffle  # noqa: F401 (loads its OpenMP runtime, to be limited next)
        _openmp_single_thread()
        try:
            result["out"] = _encode_all(store, readout, stream, compression)
        except BaseException as exc:  # handed to the caller
            result["error"] = exc

    thread = threading.Thread(target=work, name="ricom-dectris-encode")
    thread.start()
    thread.join()
    if "error" in result:
        raise result["error"]
    return result["out"]


def _encode_all(store: FrameStore, readout: Readout, stream: str, compression: str) -> list:
    import zmq

    out: list = []
    for frames in store.chunks():
        pixels = readout.apply(frames, len(out))
        for p in pixels:
            if stream == "v1":
                blob, dimage_d = encode.v1_blob(p, compression)
                out.append((zmq.Frame(blob), dimage_d, encode.md5_hex(blob)))
            else:
                out.append(encode.v2_data(p, compression))
    if not out:
        raise SettingsError("the DECTRIS simulator has no frames to send")
    return out


def _openmp_single_thread() -> None:
    """One OpenMP thread for the calling thread (``omp_set_num_threads`` is per thread), where loaded."""
    try:
        with open("/proc/self/maps") as fh:
            paths = {line.split()[-1] for line in fh if re.search(r"/lib[gi]?omp[^/]*\.so", line)}
    except OSError:  # not Linux: leave OpenMP as it is
        return
    for path in paths:
        try:
            ctypes.CDLL(path).omp_set_num_threads(1)
        except (OSError, AttributeError):
            continue
