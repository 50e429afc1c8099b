"""A fast path through stream V2 image messages: find the compressed frame without decoding.

A V2 image message is a small CBOR map around one compressed array (tag 40 ``[[rows,
cols], typed-array tag [tag 56500 [algorithm, elem_size, bytes]]]``).  Decoding the whole
map with ``cbor2`` costs several microseconds per frame in Python; `image_parts` instead
locates the one compression tag, reads the few integers around it and the ``series_id``
and ``image_id`` keys outside the frame's bytes, and returns a zero-copy view of those
bytes.  Anything unexpected (another layout, an uncompressed array, several channels)
returns None, and the caller decodes the message with ``cbor2`` as before.
"""
from __future__ import annotations

_COMPRESSED = b"\xd9\xdc\xb4\x83"  # tag 56500, then an array of 3
_DIMS = b"\xd8\x28\x82\x82"         # tag 40, [ [rows, cols], …
_TYPE_IMAGE = b"\x64type\x65image"
_SERIES = b"\x69series_id"
_IMAGE_ID = b"\x68image_id"
_ALGORITHMS = {b"\x65bslz4": "bslz4", b"\x63lz4": "lz4"}


def _uint(buf: bytes, i: int) -> tuple[int, int] | None:
    """A CBOR unsigned integer at ``buf[i]``: (value, index after it)."""
    b = buf[i]
    if b < 0x18:
        return b, i + 1
    width = {0x18: 1, 0x19: 2, 0x1A: 4, 0x1B: 8}.get(b)
    if width is None:
        return None
    return int.from_bytes(buf[i + 1:i + 1 + width], "big"), i + 1 + width


def _bytes_head(buf: bytes, i: int) -> tuple[int, int] | None:
    """A CBOR byte-string head at ``buf[i]``: (length, index of the first byte)."""
    b = buf[i]
    if b >> 5 != 2:
        return None
    low = b & 0x1F
    if low < 24:
        return low, i + 1
    width = {24: 1, 25: 2, 26: 4, 27: 8}.get(low)
    if width is None:
        return None
    return int.from_bytes(buf[i + 1:i + 1 + width], "big"), i + 1 + width


def _key_uint(head: bytes, tail: bytes, key: bytes) -> int | None:
    for part in (head, tail):
        k = part.find(key)
        if k >= 0:
            got = _uint(part, k + len(key))
            return None if got is None else got[0]
    return None


def image_parts(buf: bytes):
    """``(series_id, image_id, (typed tag, algorithm, rows, cols), data)`` of a V2 image
    message with one compressed array, or None (decode it the general way).

    Examples
    --------
    >>> import cbor2
    >>> arr = cbor2.CBORTag(40, [[2, 3], cbor2.CBORTag(69, cbor2.CBORTag(56500, ["bslz4", 2, b"xyz"]))])
    >>> msg = cbor2.dumps(cbor2.CBORTag(55799, {"type": "image", "series_id": 7, "image_id": 300,
    ...                                         "data": {"threshold_1": arr}}))
    >>> s, i, key, data = image_parts(msg)
    >>> s, i, key, bytes(data)
    (7, 300, (69, 'bslz4', 2, 3), b'xyz')
    """
    try:
        t = buf.find(_COMPRESSED)
        d = buf.rfind(_DIMS, 0, t) if t > 0 else -1
        if d < 0 or buf[t - 2] != 0xD8 or buf.find(_COMPRESSED, t + 4) >= 0:
            return None
        rows, j = _uint(buf, d + 4)
        cols, j = _uint(buf, j)
        if j != t - 2:
            return None
        name = next((a for a in _ALGORITHMS if buf.startswith(a, t + 4)), None)
        if name is None:
            return None
        _, j = _uint(buf, t + 4 + len(name))
        n, start = _bytes_head(buf, j)
        end = start + n
        if end > len(buf):
            return None
        head, tail = buf[:d], buf[end:]
        if _TYPE_IMAGE not in head and _TYPE_IMAGE not in tail:
            return None
        series, image_id = _key_uint(head, tail, _SERIES), _key_uint(head, tail, _IMAGE_ID)
        if series is None or image_id is None:
            return None
        return series, image_id, (buf[t - 1], _ALGORITHMS[name], rows, cols), memoryview(buf)[start:end]
    except (TypeError, IndexError):  # a None from a helper, or a message cut short
        return None


__all__ = ["image_parts"]
