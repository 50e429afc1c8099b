"""DECTRIS stream V2: one CBOR message per ZMQ frame (``start``, ``image``, ``end``).

Each message is the CBOR self-describe tag 55799 around a map whose ``type`` is ``start``
(at arm: series id, image size and type, frame count, saturation value, pixel mask, …),
``image`` (series id, ``image_id``, ``data`` {channel → array}) or ``end``.  Arrays are
tag 40 ``[[rows, cols], typed array]`` with RFC 8746 typed-array tags (64 u8, 69 u16 LE,
70 u32 LE, 85 f32 LE, …) whose byte string may be replaced by the compression tag 56500
``[algorithm, elem_size, bytes]`` (``../shared/FORMATS.md`` §5).  `V2Protocol` decodes
the messages with ``cbor2`` (tags kept as `cbor2.CBORTag` and read here, which works
across cbor2 versions) and hands the still-compressed bytes on.
"""
from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from ricom.core.errors import InputError
from ricom.sources.dectris.cbor_fast import image_parts
from ricom.sources.dectris.codec import Encoding, decode_blobs
from ricom.sources.dectris.series import ImageBatch, ImageParser, SeriesHeader, checked_shape

PORT = 31001
TYPED = {64: "u1", 65: ">u2", 66: ">u4", 67: ">u8", 68: "u1", 69: "<u2", 70: "<u4", 71: "<u8", 72: "i1",
         73: ">i2", 74: ">i4", 75: ">i8", 77: "<i2", 78: "<i4", 79: "<i8", 80: ">f2", 81: ">f4", 82: ">f8",
         84: "<f2", 85: "<f4", 86: "<f8"}
"""RFC 8746 typed-array tags → NumPy dtype."""
_BULKY = ("pixel_mask", "flatfield", "countrate_correction_table", "countrate_correction_lookup_table")


def _cbor():
    try:
        import cbor2
    except ImportError as exc:  # the optional extra ``dectris``
        raise InputError("DECTRIS stream V2 needs the package cbor2 (pip install 'ricom[dectris]')") from exc
    return cbor2


class CborArray:
    """A tag-40 array as received: shape, dtype, bytes and compression (None: plain)."""

    __slots__ = ("algorithm", "data", "dtype", "shape")

    def __init__(self, value) -> None:
        cbor2 = _cbor()
        if not isinstance(value, cbor2.CBORTag) or value.tag != 40:
            raise InputError(f"a DECTRIS stream V2 array is not a tag-40 array ({str(value)[:60]})")
        try:
            dims, typed = value.value
            rows, cols = dims
        except (TypeError, ValueError):
            raise InputError(f"a DECTRIS stream V2 array is not [[rows, cols], data] ({str(value)[:60]})") from None
        if not isinstance(typed, cbor2.CBORTag) or typed.tag not in TYPED:
            raise InputError(f"a DECTRIS stream V2 array has no known typed-array tag ({str(typed)[:60]})")
        self.shape = checked_shape(rows, cols, "a DECTRIS stream V2 array")
        self.dtype = np.dtype(TYPED[typed.tag])
        inner = typed.value
        self.algorithm = None
        if isinstance(inner, cbor2.CBORTag):
            if inner.tag != 56500 or not isinstance(inner.value, (list, tuple)) or len(inner.value) != 3:
                raise InputError(f"unknown CBOR tag {inner.tag} inside a DECTRIS stream V2 array")
            self.algorithm, _, inner = inner.value
        self.data = _blob(inner)

    def decode(self) -> np.ndarray:
        enc = Encoding.from_v2(self.algorithm, self.dtype)
        out = np.empty((1, *self.shape), self.dtype.newbyteorder("="))
        decode_blobs([self.data], enc, out)
        return out[0]


class V2Protocol(ImageParser):
    """Stream V2 (see the module docstring)."""

    name = "v2"
    port = PORT

    def __init__(self) -> None:
        super().__init__()
        self._loads = _cbor().loads
        self._tag = _cbor().CBORTag

    def _load(self, message: list) -> Mapping | None:
        if len(message) != 1:
            return None
        try:
            value = self._loads(message[0])
        except Exception:  # cbor2 raises its own decode errors; such a message is not V2
            return None
        while isinstance(value, self._tag) and value.tag == 55799:
            value = value.value
        return value if isinstance(value, Mapping) and "type" in value else None

    def classify(self, message: list) -> tuple[str, int | None]:
        m = self._load(message)
        if m is None:
            return "other", None
        kind = {"start": "header", "image": "image", "end": "end"}.get(m["type"], "other")
        return kind, _series(m)

    def read_header(self, message: list, connection=None) -> SeriesHeader:
        m = self._load(message)
        if m is None or m["type"] != "start":
            raise InputError("expected a DECTRIS stream V2 start message")
        try:
            return self._header(m)
        except (TypeError, ValueError, KeyError, AttributeError, StopIteration, OverflowError) as exc:
            raise InputError(f"a damaged DECTRIS stream V2 start message ({type(exc).__name__}: "
                             f"{str(exc)[:60]}); the stream is corrupt") from None

    def _header(self, m: Mapping) -> SeriesHeader:
        shape = checked_shape(m.get("image_size_y"), m.get("image_size_x"), "the DECTRIS stream V2 start message")
        dtype = np.dtype(str(m.get("image_dtype", "uint16"))).newbyteorder("<")
        if dtype.kind not in "uif" or dtype.itemsize > 8:
            raise InputError(f"the DECTRIS stream V2 start message gives the image type {dtype}; the stream is corrupt")
        mask = None
        masks = m.get("pixel_mask") or {}
        if masks and m.get("pixel_mask_enabled", True):
            mask = CborArray(next(iter(masks.values()))).decode()
        saturation = m.get("saturation_value")
        config = {str(k): _plain(v) for k, v in m.items() if k not in _BULKY}  # a CBOR map may have bytes keys
        config["nimages"] = m.get("number_of_images")
        return SeriesHeader(_series(m), shape, dtype, int(m["number_of_images"]) if m.get("number_of_images") else None,
                            8 * dtype.itemsize, int(saturation) if saturation is not None else None, mask, config, "v2")

    def _images(self, messages: list, header: SeriesHeader, start: int, batch: ImageBatch) -> ImageBatch:
        frames, blobs, encoding = batch.frames, batch.blobs, None
        series, cache = header.series, self._cache
        for k in range(start, len(messages)):
            msg = messages[k]
            fast = image_parts(msg[0]) if len(msg) == 1 else None
            if fast is not None and fast[2] in cache:  # the usual case: no CBOR decoding
                got_series, image_id, key, data = fast
                enc = cache[key]
            else:
                m = self._load(msg)
                kind = m["type"] if m is not None else None
                if kind != "image":
                    if kind in ("start", "end"):
                        batch.stop = k
                        return batch
                    continue
                got_series, image_id, key, data, value = _image(m)
                enc = cache.get(key) or self._image_encoding(key, value, header)
            if got_series != series:
                batch.skipped += 1
                continue
            if encoding is None:
                batch.encoding = encoding = enc
            elif enc is not encoding:
                raise InputError(f"DECTRIS image {image_id} changed its encoding mid-series")
            frames.append(int(image_id))
            blobs.append(data)
        return batch

    def _image_encoding(self, key: tuple, value, header: SeriesHeader) -> Encoding:
        """Encoding of a new kind of image array (checked against the series' shape), cached."""
        arr = CborArray(value)
        enc = Encoding.from_v2(arr.algorithm, arr.dtype)
        if header.detector_shape is not None and arr.shape != tuple(header.detector_shape):
            raise InputError(f"a DECTRIS image is {arr.shape} but the series is {tuple(header.detector_shape)}")
        return self._remember(key, enc)


def _image(m: Mapping) -> tuple:
    """``(series_id, image_id, key, data, array)`` of a decoded image message (the first channel)."""
    image_id = m.get("image_id")
    try:
        value = next(iter(m["data"].values()))
        dims, typed = value.value
        inner = typed.value
        if isinstance(inner, _cbor().CBORTag):
            algorithm, _, data = inner.value
        else:
            algorithm, data = None, inner
        key = (typed.tag, algorithm, dims[0], dims[1])
    except (KeyError, StopIteration, AttributeError, TypeError, ValueError):
        raise InputError(f"DECTRIS stream V2 image {image_id} holds no readable data array") from None
    if not isinstance(image_id, int) or image_id < 0:
        raise InputError(f"a DECTRIS stream V2 image message has no image_id ({str(image_id)[:40]}); the stream is "
                         f"corrupt")
    return _series(m), image_id, key, _blob(data), value


def _blob(data):
    """The bytes of an array (a damaged message can hold any CBOR item there)."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise InputError(f"a DECTRIS stream V2 array holds {type(data).__name__}, not bytes; the stream is corrupt")
    return data


def _series(m: Mapping) -> int | None:
    try:
        return int(m.get("series_id"))
    except (TypeError, ValueError):
        return None


def _plain(v):
    """A header value as JSON-friendly Python (fractions as floats, tags as text)."""
    if isinstance(v, (str, int, float, bool)) or v is None:
        return v
    if isinstance(v, Mapping):
        return {str(k): _plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    try:
        return float(v)
    except (TypeError, ValueError):
        return str(v)[:80]


__all__ = ["PORT", "CborArray", "V2Protocol"]
