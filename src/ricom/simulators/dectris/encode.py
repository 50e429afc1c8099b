"""Frames and series messages as a DECTRIS detector sends them: compression, stream V1 and V2.

Written from the public descriptions (FORMATS.md §5: DECTRIS's stream V2 README and CBOR
compression tag, the bitshuffle HDF5 filter, LiberTEM-rs), not from ricom's decoder.

Compression: ``bslz4`` is bitshuffle + LZ4 in the bitshuffle HDF5-filter framing (a
12-byte header: big-endian u64 uncompressed bytes and u32 block bytes, 8192; then per
block a big-endian u32 length and an LZ4 block; the last ``total % (8·itemsize)`` bytes
stored as they are); ``lz4`` in stream V2 is the HDF5 LZ4-filter framing (same header,
blocks stored raw when LZ4 does not shrink them), in stream V1 (encoding ``lz4<``) one
bare LZ4 block; ``none`` sends the little-endian pixels.

Stream V1 (``format legacy``): multipart messages of JSON parts and blobs (`v1_header`,
`v1_image_parts`, `v1_end`).  Stream V2 (``format cbor``): one CBOR message per ZeroMQ
frame, starting with the self-describe tag 55799 (`v2_start`, `v2_image`, `v2_end`);
arrays are tag 40 ``[[rows, cols], typed array]`` with RFC 8746 typed-array tags and the
compression tag 56500 ``[algorithm, element size or 0, bytes]`` in place of the bytes.
"""
from __future__ import annotations

import hashlib
import json
import struct

import numpy as np

BSLZ4_BLOCK_BYTES = 8192
DTYPES = {8: np.dtype("<u1"), 16: np.dtype("<u2"), 32: np.dtype("<u4")}
TYPED_ARRAY_TAGS = {"u1": 64, "u2": 69, "u4": 70, "f4": 85}  # RFC 8746, little endian
V1_ENCODINGS = {"bslz4": "bs{bits}-lz4<", "lz4": "lz4<", "none": "<"}
CHANNEL = "threshold_1"
TIME_BASE_HZ = 1_000_000_000  # denominators of the V2 rational times (ns)


# --- compression --------------------------------------------------------------------------
def bslz4(pixels: np.ndarray) -> bytes:
    """Bitshuffle + LZ4 with the 12-byte HDF5-filter header (``bs<bits>-lz4<`` / ``"bslz4"``)."""
    import bitshuffle

    flat = np.ascontiguousarray(pixels).reshape(-1)
    body = bitshuffle.compress_lz4(flat, BSLZ4_BLOCK_BYTES // flat.itemsize)
    return struct.pack(">QI", flat.nbytes, BSLZ4_BLOCK_BYTES) + body.tobytes()


def lz4_hdf5(raw: bytes, block_bytes: int = 1 << 30) -> bytes:
    """LZ4 blocks in the HDF5 LZ4-filter framing (stream V2 ``"lz4"``)."""
    import lz4.block

    block = min(block_bytes, len(raw)) or 1
    parts = [struct.pack(">QI", len(raw), block)]
    for start in range(0, len(raw), block):
        chunk = raw[start:start + block]
        packed = lz4.block.compress(chunk, store_size=False)
        if len(packed) >= len(chunk):  # incompressible: the filter stores the block as it is
            packed = chunk
        parts += [struct.pack(">I", len(packed)), packed]
    return b"".join(parts)


def lz4_bare(raw: bytes) -> bytes:
    """One LZ4 block without any header (stream V1 encoding ``lz4<``)."""
    import lz4.block

    return lz4.block.compress(raw, store_size=False)


# --- stream V1 ------------------------------------------------------------------------------
def _json(obj) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def v1_blob(pixels: np.ndarray, compression: str) -> tuple[bytes, bytes]:
    """``(blob, dimage_d part)`` of one frame for stream V1."""
    raw = np.ascontiguousarray(pixels)
    if compression == "bslz4":
        blob = bslz4(raw)
    elif compression == "lz4":
        blob = lz4_bare(raw.tobytes())
    else:
        blob = raw.tobytes()
    h, w = raw.shape
    encoding = V1_ENCODINGS[compression].format(bits=raw.dtype.itemsize * 8)
    dimage_d = _json({"htype": "dimage_d-1.0", "shape": [w, h], "type": raw.dtype.name,
                      "encoding": encoding, "size": len(blob)})
    return blob, dimage_d


def v1_image_parts(series: int, frame: int, blob, dimage_d: bytes, md5: str,
                   start_ns: int, count_ns: int) -> list:
    """The four parts of image message ``frame`` (from 0): dimage, dimage_d, blob, dconfig."""
    dimage = b'{"htype":"dimage-1.0","series":%d,"frame":%d,"hash":"%s"}' % (series, frame, md5.encode())
    dconfig = b'{"htype":"dconfig-1.0","start_time":%d,"stop_time":%d,"real_time":%d}' % (
        start_ns, start_ns + count_ns, count_ns)
    return [dimage, dimage_d, blob, dconfig]


def md5_hex(blob: bytes) -> str:
    return hashlib.md5(blob).hexdigest()


def v1_header(series: int, detail: str, config: dict, mask: np.ndarray, split: bool = False) -> list[list]:
    """The global header: a list of messages (each a list of parts).

    ``none`` sends only the ``dheader`` part; ``basic`` adds the detector-config JSON;
    ``all`` adds (JSON, blob) pairs for the flatfield (float32 ones), the pixel mask
    (uint32) and the count-rate table (float32).  ``split`` sends every part as a
    message of its own (as simulators in the ecosystem send the first two).
    """
    h, w = mask.shape
    parts = [_json({"htype": "dheader-1.0", "series": series, "header_detail": detail})]
    if detail in ("basic", "all"):
        parts.append(_json(config))
    if detail == "all":
        table = np.stack([np.arange(64, dtype=np.float32), np.arange(64, dtype=np.float32)])
        parts += [_json({"htype": "dflatfield-1.0", "shape": [w, h], "type": "float32"}),
                  np.ones((h, w), "<f4").tobytes(),
                  _json({"htype": "dpixelmask-1.0", "shape": [w, h], "type": "uint32"}),
                  np.ascontiguousarray(mask, "<u4").tobytes(),
                  _json({"htype": "dcountrate_table-1.0", "shape": list(table.shape[::-1]), "type": "float32"}),
                  table.astype("<f4").tobytes()]
    return [[p] for p in parts] if split else [parts]


def v1_end(series: int) -> list:
    return [_json({"htype": "dseries_end-1.0", "series": series})]


# --- stream V2 (CBOR) -----------------------------------------------------------------------
SELF_DESCRIBE = b"\xd9\xd9\xf7"


def _head(major: int, n: int) -> bytes:
    """A CBOR item head (major type, argument) in its shortest form."""
    m = major << 5
    if n < 24:
        return bytes([m | n])
    if n < 1 << 8:
        return bytes([m | 24, n])
    if n < 1 << 16:
        return bytes([m | 25]) + n.to_bytes(2, "big")
    if n < 1 << 32:
        return bytes([m | 26]) + n.to_bytes(4, "big")
    return bytes([m | 27]) + n.to_bytes(8, "big")


def _text(s: str) -> bytes:
    b = s.encode()
    return _head(3, len(b)) + b


def _rational(num: int, den: int) -> bytes:
    return b"\x82" + _head(0, num) + _head(0, den)


def v2_array(pixels: np.ndarray, compression: str):
    """A cbor2 item: tag 40 ``[[rows, cols], typed array]`` (the bytes compressed with tag 56500)."""
    from cbor2 import CBORTag

    arr = np.ascontiguousarray(pixels, pixels.dtype.newbyteorder("<"))
    raw = arr.tobytes()
    if compression == "bslz4":
        payload = CBORTag(56500, ["bslz4", arr.itemsize, bslz4(arr)])
    elif compression == "lz4":
        payload = CBORTag(56500, ["lz4", 0, lz4_hdf5(raw)])
    else:
        payload = raw
    return CBORTag(40, [list(arr.shape), CBORTag(TYPED_ARRAY_TAGS[arr.dtype.str[1:]], payload)])


def v2_data(pixels: np.ndarray, compression: str) -> bytes:
    """The encoded ``data`` map ``{channel: array}`` of one image."""
    import cbor2

    return cbor2.dumps({CHANNEL: v2_array(pixels, compression)})


def v2_start(fields: dict) -> bytes:
    """The ``start`` message (``fields`` without ``type``; arrays already `v2_array` items)."""
    import cbor2

    return cbor2.dumps(cbor2.CBORTag(55799, {"type": "start", **fields}))


def v2_end(series: int, unique_id: str) -> bytes:
    import cbor2

    return cbor2.dumps(cbor2.CBORTag(55799, {"type": "end", "series_id": series, "series_unique_id": unique_id}))


class V2Images:
    """Image messages of one series, built fast from constant pieces (one bytes join per image)."""

    def __init__(self, series: int, unique_id: str, series_date: str, user_data=None) -> None:
        import cbor2

        n = 9 + (user_data is not None)
        self.prefix = b"".join([SELF_DESCRIBE, _head(5, n), _text("type"), _text("image"), _text("series_id"),
                                _head(0, series), _text("series_unique_id"), _text(unique_id),
                                _text("series_date"), cbor2.dumps(cbor2.CBORTag(0, series_date)),
                                b"" if user_data is None else _text("user_data") + cbor2.dumps(user_data),
                                _text("image_id")])
        self.k_start, self.k_stop, self.k_real = _text("start_time"), _text("stop_time"), _text("real_time")
        self.k_data = _text("data")

    def message(self, image_id: int, data: bytes, start_ns: int, count_ns: int) -> bytes:
        """Image ``image_id`` with the encoded ``data`` map (`v2_data`)."""
        return b"".join([self.prefix, _head(0, image_id), self.k_start, _rational(start_ns, TIME_BASE_HZ),
                         self.k_stop, _rational(start_ns + count_ns, TIME_BASE_HZ), self.k_real,
                         _rational(count_ns, TIME_BASE_HZ), self.k_data, data])
