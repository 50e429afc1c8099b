"""What a DECTRIS series header says, and a batch of received images.

Both stream versions end up here: `SeriesHeader` is one acquisition's header (series id,
frame shape and type, frame count, bit depth, pixel mask, the detector configuration);
`ImageBatch` is what one pass over received messages found (frame indices, blobs, their
`ricom.sources.dectris.codec.Encoding`, and the first message that is not an image of the
series).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np

from ricom.core.errors import InputError
from ricom.sources.dectris.codec import Encoding


@dataclass
class SeriesHeader:
    """One series' (acquisition's) header.

    ``detector_shape``/``dtype`` may be None until the first image says (V1 headers with
    ``header_detail`` none); ``saturation`` is the value marking masked pixels
    (2^bit_depth − 1) when known.
    """

    series: int
    detector_shape: tuple[int, int] | None
    dtype: np.dtype | None
    n_frames: int | None
    bit_depth: int | None = None
    saturation: int | None = None
    pixel_mask: np.ndarray | None = None
    config: dict = field(default_factory=dict)
    stream: str = "v1"

    def text(self) -> str:
        """The header as JSON text (kept with each acquisition)."""
        return json.dumps({"series": self.series, "stream": self.stream, **self.config}, default=str)

    def summary(self) -> str:
        shape = "×".join(str(v) for v in self.detector_shape) if self.detector_shape else "?"
        depth = f"{self.bit_depth}-bit" if self.bit_depth else (self.dtype.name if self.dtype is not None else "")
        mode = self.config.get("trigger_mode")
        roi = self.config.get("roi_mode")
        bits = [f"series {self.series}", f"{shape} {depth}".strip()]
        if roi and roi != "disabled":
            bits.append(f"roi {roi}")
        if mode:
            bits.append(f"trigger {mode}")
        comp = self.config.get("compression")
        if comp:
            bits.append(str(comp))
        return ", ".join(bits)


@dataclass
class ImageBatch:
    """Images of one series found in a list of messages.

    ``stop`` is the index of the first message that is not an image of the series (a
    header or end, handled by the caller), or None; ``skipped`` counts images of other
    series that were dropped; ``error`` is a corrupt message met after the images found
    (the caller keeps those, then raises it).
    """

    frames: list
    blobs: list
    encoding: Encoding | None
    stop: int | None = None
    skipped: int = 0
    error: Exception | None = None


class ImageParser:
    """What both stream versions share: a batch of image messages into an `ImageBatch`, a
    corrupt message ending the batch with ``error``, and one `Encoding` object per kind of
    image (so that comparing encodings is an identity test)."""

    def __init__(self) -> None:
        self._cache: dict = {}  # a message's encoding description → Encoding

    def images(self, messages: list, header: SeriesHeader, start: int = 0) -> ImageBatch:
        """The images of ``header``'s series in ``messages[start:]``, up to the first
        header or end message (a corrupt message ends the batch with ``error``)."""
        batch = ImageBatch([], [], None)
        try:
            return self._images(messages, header, start, batch)
        except InputError as exc:
            batch.error = exc
            return batch

    def _images(self, messages: list, header: SeriesHeader, start: int, batch: ImageBatch) -> ImageBatch:
        raise NotImplementedError  # pragma: no cover - each stream version

    def _remember(self, key, encoding: Encoding) -> Encoding:
        encoding = next((e for e in self._cache.values() if e == encoding), encoding)
        if len(self._cache) > 64:
            self._cache.clear()
        self._cache[key] = encoding
        return encoding


MAX_PIXELS = 1 << 26
"""Largest frame believed (64 Mpixel; an EIGER2 16M has 18 Mpixel): a damaged header must not allocate more."""


def checked_shape(rows, cols, what: str) -> tuple[int, int]:
    """``(rows, cols)`` as ints, or an `InputError` naming ``what`` if they are not a plausible frame."""
    try:
        shape = (int(rows), int(cols))
    except (TypeError, ValueError, OverflowError):
        raise InputError(f"{what} gives no frame size ({rows!r} × {cols!r}); the stream is corrupt") from None
    if min(shape) < 1 or shape[0] * shape[1] > MAX_PIXELS:
        raise InputError(f"{what} gives a frame of {shape[0]}×{shape[1]} pixels; the stream is corrupt")
    return shape


def config_frames(config: dict) -> int | None:
    """Frames a series will hold from its configuration (``nimages`` × ``ntrigger``)."""
    try:
        n = int(config.get("nimages") or 1) * int(config.get("ntrigger") or 1)
    except (TypeError, ValueError):
        return None
    return n if ("nimages" in config or "ntrigger" in config) and n > 0 else None


__all__ = ["MAX_PIXELS", "ImageBatch", "ImageParser", "SeriesHeader", "checked_shape", "config_frames"]
