"""DECTRIS image encodings: naming them, and decoding blobs into frames.

Stream V1 names an image's encoding in its ``dimage_d-1.0`` part as ``[bs<N>-][lz4]<``
(the last character is the byte order): ``<`` raw pixels; ``lz4<`` one bare LZ4 block;
``bs<N>-lz4<`` bitshuffle + LZ4 in the HDF5 filter framing (12-byte header, blocks, an
uncompressed tail).  Stream V2 wraps compressed data in CBOR tag 56500 as
``["bslz4", elem_size, bytes]`` or ``["lz4", 0, bytes]``, both in the HDF5 framing
(``../shared/FORMATS.md`` §5).  `Encoding` is one of these, parsed once per series;
`decode_blobs` fills a preallocated ``(k, ny, nx)`` array from ``k`` blobs through
DECTRIS's ``dectris-compression`` (which lets other threads run while it works) or, for
bare LZ4 blocks, the ``lz4`` package.  A blob that decodes to the wrong size is an
`InputError` naming the frame.
"""
from __future__ import annotations

import re
import struct
from dataclasses import dataclass

import numpy as np

from ricom.core.errors import InputError

CODECS = ("raw", "bslz4", "lz4", "lz4-block")
"""``raw`` plain pixels; ``bslz4``/``lz4`` HDF5-framed (12-byte header); ``lz4-block`` one bare LZ4 block."""

DEFAULT_BLOCK_BYTES = 8192
"""Bitshuffle's block size, assumed when a sender leaves the HDF5 framing header empty."""
_NO_SIZE = bytes(8)
_V1_RE = re.compile(r"(?:bs(8|16|32|64)-)?(lz4)?([<>])")
_TYPES = {"uint8": "u1", "uint16": "u2", "uint32": "u4", "int8": "i1", "int16": "i2", "int32": "i4",
          "float32": "f4"}


@dataclass(frozen=True)
class Encoding:
    """How one series' images are encoded.

    Examples
    --------
    >>> Encoding.from_v1("bs16-lz4<", "uint16")
    Encoding(codec='bslz4', dtype=dtype('uint16'))
    >>> Encoding.from_v1("lz4<", "uint32").codec
    'lz4-block'
    """

    codec: str
    dtype: np.dtype

    @classmethod
    def from_v1(cls, encoding: str, type_name: str) -> Encoding:
        """From a V1 ``dimage_d`` ``encoding`` and ``type`` (``uint8|uint16|uint32``)."""
        m = _V1_RE.fullmatch(str(encoding).strip())
        if m is None:
            raise InputError(f"unknown DECTRIS image encoding {encoding!r} (known: '<', 'lz4<', 'bsN-lz4<')")
        bits, lz4, order = m.groups()
        dtype = _dtype(type_name, order)
        if bits and not lz4:
            raise InputError(f"unknown DECTRIS image encoding {encoding!r}: bitshuffle without LZ4")
        if bits and int(bits) != 8 * dtype.itemsize:
            raise InputError(f"DECTRIS image encoding {encoding!r} shuffles {bits}-bit values but the "
                             f"image type is {type_name}")
        return cls("bslz4" if bits else "lz4-block" if lz4 else "raw", dtype)

    @classmethod
    def from_v2(cls, algorithm: str | None, dtype: np.dtype) -> Encoding:
        """From a V2 tag-56500 algorithm (None: an uncompressed typed array)."""
        if algorithm is None:
            return cls("raw", np.dtype(dtype))
        if algorithm not in ("bslz4", "lz4"):
            raise InputError(f"unknown DECTRIS compression {algorithm!r} in the stream (known: 'bslz4', 'lz4')")
        return cls(algorithm, np.dtype(dtype))

    @property
    def hdf5_framed(self) -> bool:
        return self.codec in ("bslz4", "lz4")


def _dtype(type_name: str, order: str = "<") -> np.dtype:
    code = _TYPES.get(str(type_name))
    if code is None:
        raise InputError(f"unknown DECTRIS image type {type_name!r} (known: {', '.join(_TYPES)})")
    return np.dtype(order + code)


def _decompress():
    try:
        from dectris.compression import decompress
    except ImportError as exc:  # the optional extra ``dectris``
        raise InputError("decoding DECTRIS images needs the package dectris-compression "
                         "(pip install 'ricom[dectris]')") from exc
    return decompress


def _lz4_block():
    try:
        import lz4.block
    except ImportError as exc:
        raise InputError("decoding LZ4 DECTRIS images needs the package lz4 (pip install 'ricom[dectris]')") from exc
    return lz4.block.decompress


def decode_blobs(blobs, encoding: Encoding, out: np.ndarray, first_frame: int = 0, mask=None) -> None:
    """Decode ``blobs`` into ``out`` ``(k, ny, nx)`` (native byte order of ``out``).

    ``first_frame`` (the series' index of ``blobs[0]``) only names a bad frame.  ``mask``
    (a `ricom.sources.dectris.mask.PixelMask`) leaves its pixels out while each frame is
    copied out of the decompressor's buffer (one compiled pass that lets other threads run).
    """
    frame_bytes = out[0].nbytes if len(out) else 0
    itemsize = encoding.dtype.itemsize
    native = out.flags.c_contiguous and out.dtype == encoding.dtype.newbyteorder("=")
    # a byte view of ``out``: slice assignment is one memcpy, without NumPy's per-call overhead
    view = memoryview(out.reshape(-1).view(np.uint8)) if native and encoding.dtype.isnative else None
    copy = mask.copier(out.dtype) if mask is not None and native and encoding.dtype.isnative else None
    flat, extra = out.reshape(len(out), -1), 0
    if encoding.hdf5_framed:
        decompress = _decompress()
        algorithm = encoding.codec
    elif encoding.codec == "lz4-block":
        block = _lz4_block()
    for i, blob in enumerate(blobs):
        if encoding.codec == "raw":
            data = blob
        elif encoding.hdf5_framed:
            if blob[:8] == _NO_SIZE:  # some senders leave the 12-byte header zero: the header says the size
                blob = struct.pack(">QI", frame_bytes, DEFAULT_BLOCK_BYTES) + bytes(blob[12:])
            declared = int.from_bytes(bytes(blob[:8]), "big") if len(blob) >= 12 else frame_bytes
            if declared != frame_bytes:  # before the decompressor allocates what the header declares
                _wrong_size(first_frame + i, declared, out, encoding)
            data = _checked(decompress, blob, algorithm, itemsize, first_frame + i)
        else:
            try:
                data = block(blob, uncompressed_size=frame_bytes)
            except Exception as exc:  # lz4.block.LZ4BlockError and friends
                raise InputError(f"DECTRIS frame {first_frame + i}: its LZ4 block does not decode ({exc})") from None
        if len(data) != frame_bytes:
            _wrong_size(first_frame + i, len(data), out, encoding)
        if copy is not None:
            extra += copy(np.frombuffer(data, out.dtype), flat[i])
        elif view is not None:
            view[i * frame_bytes:(i + 1) * frame_bytes] = data
        else:
            out[i] = np.frombuffer(data, encoding.dtype).reshape(out.shape[1:])
    if mask is not None:
        if copy is None:
            mask.apply(out)
        else:
            mask.readings_removed += extra


def _wrong_size(frame: int, n_bytes: int, out: np.ndarray, encoding: Encoding) -> None:
    shape = "×".join(str(v) for v in out.shape[1:])
    raise InputError(f"DECTRIS frame {frame} decodes to {n_bytes} bytes but its header describes {shape} "
                     f"{encoding.dtype.name} ({out[0].nbytes if len(out) else 0} bytes)")


def _checked(decompress, blob, algorithm: str, itemsize: int, frame: int) -> bytes:
    if len(blob) < 12:
        raise InputError(f"DECTRIS frame {frame}: {len(blob)} bytes are too few for {algorithm} data "
                         f"(12-byte header)")
    try:
        return decompress(blob, algorithm, elem_size=itemsize)
    except Exception as exc:  # the library raises its own error types
        raise InputError(f"DECTRIS frame {frame}: its {algorithm} data do not decode ({exc})") from None


__all__ = ["CODECS", "Encoding", "decode_blobs"]
