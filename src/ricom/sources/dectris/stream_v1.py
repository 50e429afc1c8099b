"""DECTRIS stream V1 ("legacy"): multipart messages of JSON parts and blobs.

A series is a ``dheader-1.0`` message (the detector configuration follows as part 1, and
with ``header_detail`` all the flat field, pixel mask and count-rate table as (JSON,
blob) pairs; some senders split these into single-part messages), one 4-part message per
image (``dimage-1.0`` with series and frame, ``dimage_d-1.0`` with shape ``[W, H]``, type,
encoding and size, the blob, ``dconfig-1.0`` times) and ``dseries_end-1.0``
(``../shared/FORMATS.md`` §5).  `V1Protocol` classifies messages, reads a header and
turns a list of image messages into an `ImageBatch`; one JSON parse per part, no work per
pixel.
"""
from __future__ import annotations

import json
import re

import numpy as np

from ricom.core.errors import InputError
from ricom.sources.dectris.codec import Encoding, decode_blobs
from ricom.sources.dectris.series import ImageBatch, ImageParser, SeriesHeader, checked_shape, config_frames

PORT = 9999
_HEAD = {b"dheader-1.0": "header", b"dimage-1.0": "image", b"dseries_end-1.0": "end"}
_SERIES = re.compile(rb'"series"\s*:\s*(\d+)')
_FRAME = re.compile(rb'"frame"\s*:\s*(\d+)')
_SIZE = re.compile(rb'"size"\s*:\s*(\d+)')
SPLIT_HEADER_WAIT_S = 0.5
"""How long to wait for the next part of a header sent as single-part messages."""


def _json(part, what: str) -> dict:
    try:
        value = json.loads(bytes(part))
    except (ValueError, UnicodeDecodeError):
        raise InputError(f"a DECTRIS stream V1 {what} is not JSON ({bytes(part)[:40]!r}); "
                         f"is this a stream V2 (CBOR) port?") from None
    if not isinstance(value, dict):
        raise InputError(f"a DECTRIS stream V1 {what} is not a JSON object ({bytes(part)[:40]!r})")
    return value


class V1Protocol(ImageParser):
    """Stream V1 (see the module docstring)."""

    name = "v1"
    port = PORT


    def classify(self, message: list) -> tuple[str, int | None]:
        """``("header"|"image"|"end"|"other", series)`` of one message."""
        part = bytes(message[0])
        if not part.startswith(b"{"):
            return "other", None
        for key, kind in _HEAD.items():
            if key in part:
                try:
                    return kind, int(json.loads(part).get("series"))
                except (ValueError, TypeError):
                    return "other", None
        return "other", None

    def read_header(self, message: list, connection) -> SeriesHeader:
        """The header of the series whose ``dheader`` message is ``message`` (further
        single-part messages of a split header are read from ``connection``)."""
        head = _json(message[0], "header")
        parts = list(message[1:])
        detail = str(head.get("header_detail", "basic"))
        if detail != "none" and not parts:
            parts = self._split_parts(connection, detail)
        config = _json(parts[0], "detector configuration") if parts else {}
        mask = None
        i = 1
        while i + 1 < len(parts):
            pair = _json(parts[i], "header part")
            if pair.get("htype") == "dpixelmask-1.0":
                mask = _array(pair, parts[i + 1], "pixel mask")
            i += 2
        return _header(int(head.get("series", 0)), config, mask)

    def _split_parts(self, connection, detail: str) -> list:
        """Header parts sent as single-part messages after a bare ``dheader``."""
        parts: list = []
        while True:
            msg = connection.recv(SPLIT_HEADER_WAIT_S if parts else 5.0)
            if msg is None:
                return parts
            kind, _ = self.classify(msg)
            if kind != "other":
                connection.push_back(msg)
                return parts
            parts.extend(msg)
            if detail == "basic" and len(parts) == 1:
                return parts

    def _images(self, messages: list, header: SeriesHeader, start: int, batch: ImageBatch) -> ImageBatch:
        frames, blobs, encoding = batch.frames, batch.blobs, None
        series, cache = header.series, self._cache
        for k in range(start, len(messages)):
            msg = messages[k]
            part = msg[0]
            if b"dimage-1.0" not in part:
                if self.classify(msg)[0] != "other":
                    batch.stop = k
                    return batch
                continue
            ms, mf = _SERIES.search(part), _FRAME.search(part)
            if ms is None or mf is None:
                raise InputError(f"a DECTRIS image message lacks its series or frame number ({part[:60]!r})")
            if int(ms.group(1)) != series:
                batch.skipped += 1
                continue
            if len(msg) < 3:
                raise InputError(f"DECTRIS image {int(mf.group(1))} came in {len(msg)} parts, not 4; "
                                 f"the stream is corrupt")
            d_part, blob = msg[1], msg[2]
            m = _SIZE.search(d_part)
            key = d_part if m is None else d_part[:m.start(1)] + d_part[m.end(1):]
            enc = cache.get(key)
            if enc is None:
                enc = self._image_encoding(key, d_part, header)
            if encoding is None:
                batch.encoding = encoding = enc
            elif enc is not encoding:
                raise InputError(f"DECTRIS image {int(mf.group(1))} changed its encoding mid-series ({d_part[:80]!r})")
            if m is not None and int(m.group(1)) != len(blob):
                raise InputError(f"DECTRIS image {int(mf.group(1))}: the blob holds {len(blob)} bytes but "
                                 f"its header says {int(m.group(1))}; the stream is corrupt")
            frames.append(int(mf.group(1)))
            blobs.append(blob)
        return batch

    def _image_encoding(self, key: bytes, d_part, header: SeriesHeader) -> Encoding:
        """Encoding of a new kind of ``dimage_d`` part (checked against the series' shape), cached."""
        d = _json(d_part, "image header")
        enc = Encoding.from_v1(d.get("encoding", "<"), d.get("type", "uint16"))
        if header.detector_shape is None:
            header.detector_shape = _shape(d)
        elif _shape(d) != tuple(header.detector_shape):
            raise InputError(f"a DECTRIS image is {_shape(d)} but the series is {tuple(header.detector_shape)}")
        return self._remember(key, enc)


def _shape(d: dict) -> tuple[int, int]:
    shape = d.get("shape")
    if not isinstance(shape, list) or len(shape) != 2:
        raise InputError(f"a DECTRIS image header has no [width, height] shape ({str(d)[:80]})")
    return checked_shape(shape[1], shape[0], "a DECTRIS image header")


def _array(d: dict, blob, what: str) -> np.ndarray:
    h, w = _shape(d)
    enc = Encoding.from_v1(d.get("encoding", "<"), d.get("type", "uint32"))
    out = np.empty((1, h, w), enc.dtype.newbyteorder("="))
    decode_blobs([blob], enc, out)
    return out[0]


def _header(series: int, config: dict, mask) -> SeriesHeader:
    """A V1 header from the detector configuration; the frame shape and type come with the
    first image (``dimage_d``), and the bit depth, when the configuration lacks
    ``bit_depth_image`` (real EIGER firmware), from the image type."""
    bit_depth = config.get("bit_depth_image")
    return SeriesHeader(series, None, None, config_frames(config),
                        int(bit_depth) if bit_depth else None,
                        (1 << int(bit_depth)) - 1 if bit_depth else None, mask, config, "v1")


__all__ = ["PORT", "V1Protocol"]
