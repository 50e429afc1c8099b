"""Test helper: DECTRIS stream messages built here, independently of ricom's decoders.

Frames are compressed with the ``bitshuffle`` and ``lz4`` packages and framed by hand
(FORMATS.md §5), CBOR messages built with ``cbor2``; a `Pusher` sends them from a ZMQ
PUSH socket on 127.0.0.1.
"""
from __future__ import annotations

import hashlib
import json
import struct

import numpy as np


def bslz4(frame: np.ndarray, block_bytes: int = 8192) -> bytes:
    import bitshuffle
    flat = np.ascontiguousarray(frame).ravel()
    body = bitshuffle.compress_lz4(flat, block_bytes // flat.itemsize)
    return struct.pack(">QI", flat.nbytes, block_bytes) + bytes(body)


def lz4_block(frame: np.ndarray) -> bytes:
    import lz4.block
    return lz4.block.compress(np.ascontiguousarray(frame).tobytes(), store_size=False)


def lz4_hdf5(frame: np.ndarray, block_bytes: int = 8192) -> bytes:
    """LZ4 in the HDF5 framing (no shuffle): header, then per block a BE length and a block."""
    import lz4.block
    raw = np.ascontiguousarray(frame).tobytes()
    out = [struct.pack(">QI", len(raw), block_bytes)]
    for i in range(0, len(raw), block_bytes):
        c = lz4.block.compress(raw[i:i + block_bytes], store_size=False)
        out.append(struct.pack(">I", len(c)) + c)
    return b"".join(out)


V1_ENCODING = {"bslz4": lambda dt: f"bs{8 * dt.itemsize}-lz4<", "lz4": lambda dt: "lz4<", "none": lambda dt: "<"}


def v1_header(series: int, config: dict, mask: np.ndarray | None = None, split: bool = False) -> list:
    """The dheader message(s) (a list of multipart messages)."""
    head = json.dumps({"htype": "dheader-1.0", "series": series,
                       "header_detail": "all" if mask is not None else "basic"}).encode()
    parts = [head, json.dumps(config).encode()]
    if mask is not None:
        h, w = mask.shape
        parts += [json.dumps({"htype": "dpixelmask-1.0", "shape": [w, h], "type": "uint32"}).encode(),
                  mask.astype("<u4").tobytes()]
    return [[p] for p in parts] if split else [parts]


def v1_image(series: int, frame: int, data: np.ndarray, compression: str = "bslz4") -> list:
    blob = {"bslz4": bslz4, "lz4": lz4_block, "none": lambda a: a.astype(a.dtype.newbyteorder("<")).tobytes()}[
        compression](data)
    h, w = data.shape
    return [json.dumps({"htype": "dimage-1.0", "series": series, "frame": frame,
                        "hash": hashlib.md5(blob).hexdigest()}).encode(),
            json.dumps({"htype": "dimage_d-1.0", "shape": [w, h], "type": data.dtype.name,
                        "encoding": V1_ENCODING[compression](data.dtype), "size": len(blob)}).encode(),
            blob,
            json.dumps({"htype": "dconfig-1.0", "start_time": frame * 1000, "stop_time": frame * 1000 + 900,
                        "real_time": 900}).encode()]


def v1_end(series: int) -> list:
    return [json.dumps({"htype": "dseries_end-1.0", "series": series}).encode()]


_TYPED = {np.dtype("u1"): 64, np.dtype("<u2"): 69, np.dtype("<u4"): 70, np.dtype("<f4"): 85}


def cbor_array(a: np.ndarray, compression: str = "none"):
    import cbor2
    a = np.ascontiguousarray(a, a.dtype.newbyteorder("<"))
    if compression == "bslz4":
        body = cbor2.CBORTag(56500, ["bslz4", a.dtype.itemsize, bslz4(a)])
    elif compression == "lz4":
        body = cbor2.CBORTag(56500, ["lz4", 0, lz4_hdf5(a)])
    else:
        body = a.tobytes()
    return cbor2.CBORTag(40, [list(a.shape), cbor2.CBORTag(_TYPED[a.dtype], body)])


def v2(message: dict) -> list:
    import cbor2
    return [cbor2.dumps(cbor2.CBORTag(55799, message))]


def v2_start(series: int, shape, n: int, dtype="uint16", mask: np.ndarray | None = None) -> list:
    m = {"type": "start", "series_id": series, "series_unique_id": f"u{series}", "arm_date": "2026-12-06T00:00:00Z",
         "channels": ["threshold_1"], "image_dtype": dtype, "image_size_x": shape[1], "image_size_y": shape[0],
         "number_of_images": n, "count_time": 1e-4, "frame_time": 1e-4,
         "saturation_value": 60000, "pixel_mask_enabled": mask is not None, "user_data": None}
    if mask is not None:
        m["pixel_mask"] = {"threshold_1": cbor_array(mask.astype("<u4"))}
    return v2(m)


def v2_image(series: int, image_id: int, data: np.ndarray, compression: str = "bslz4") -> list:
    from fractions import Fraction
    return v2({"type": "image", "series_id": series, "series_unique_id": f"u{series}", "image_id": image_id,
               "real_time": [900, 10 ** 7], "start_time": [image_id * 1000, 10 ** 7],
               "stop_time": [image_id * 1000 + 900, 10 ** 7], "data": {"threshold_1": cbor_array(data, compression)},
               "x": Fraction(1, 3)})


def v2_end(series: int) -> list:
    return v2({"type": "end", "series_id": series, "series_unique_id": f"u{series}"})


class Pusher:
    """A ZMQ PUSH socket bound on 127.0.0.1 (random port)."""

    def __init__(self) -> None:
        import zmq
        self.ctx = zmq.Context()
        self.sock = self.ctx.socket(zmq.PUSH)
        self.sock.setsockopt(zmq.SNDHWM, 0)
        self.sock.setsockopt(zmq.LINGER, 2000)
        self.port = self.sock.bind_to_random_port("tcp://127.0.0.1")

    def send(self, messages) -> None:
        for m in messages:
            self.sock.send_multipart(m)

    def close(self) -> None:
        self.sock.close()
        self.ctx.term()
