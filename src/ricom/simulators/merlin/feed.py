"""The frames the Merlin simulator serves, encoded as MIB frames and ``MPX`` wire messages.

A feed (`make_feed`) is one pass over the frames of a ``.mib`` file (served byte for
byte when depth and format are unchanged, else decoded and re-encoded), an integer
array, or the built-in specimen (`ricom.simulators.specimen`), encoded for a counter depth and
raw/processed format in blocks.  `wire_messages` turns those blocks into data-port
messages (``MPX`` prefix + MIB frame) and caches them when they are small;
`patch_sequence` writes the running sequence numbers into their headers.  The server
itself is `ricom.simulators.merlin.server.MerlinServer`.
"""
from __future__ import annotations

import os
from collections.abc import Iterator

import numpy as np

from ricom.simulators.specimen import SimulationParams, frame_stack, simulate_chunks
from ricom.sources.merlin.control import PREFIX_BYTES, mpx_prefix
from ricom.sources.merlin.encode import encode_frames
from ricom.sources.merlin.file import MerlinSource

BLOCK_BYTES = 16 << 20


class Feed:
    """Frames to serve, encoded for a (depth, raw) setting, one pass in blocks."""

    n_frames: int
    detector_shape: tuple[int, int]
    scan_shape: tuple[int, int] | None = None
    native: tuple[int, bool] = (12, False)
    quad = gap = False

    def counts(self) -> Iterator[np.ndarray]:
        raise NotImplementedError

    def encoded(self, depth: int, raw: bool, block: int) -> Iterator[np.ndarray]:
        """Blocks ``(k, frame_bytes)`` uint8 of real MIB frames (sequence numbers are patched later)."""

        top = 2**depth - 1
        for frames in self.counts():
            for s in range(0, len(frames), block):
                part = np.clip(frames[s:s + block], 0, top).astype(np.uint32 if depth == 24 else np.uint16)
                data = encode_frames(part, depth, raw, quad=self.quad, gap=self.gap)
                yield np.frombuffer(data, np.uint8).reshape(len(part), -1)


class _ArrayFeed(Feed):
    def __init__(self, frames: np.ndarray, scan_shape=None, depth: int = 12) -> None:
        frames, scan_shape = frame_stack(frames, scan_shape)
        self.frames, self.n_frames = frames, len(frames)
        self.detector_shape = tuple(int(v) for v in frames.shape[1:])
        self.scan_shape = tuple(int(v) for v in scan_shape) if scan_shape is not None else None
        self.native = (depth, False)

    def counts(self) -> Iterator[np.ndarray]:
        yield self.frames


class _DemoFeed(Feed):
    """The built-in specimen; without a dose, scaled so the first band's brightest pixel is full scale."""

    def __init__(self, params, depth: int = 12) -> None:
        self.params, self.native = params, (depth, False)
        self.n_frames = params.scan_shape[0] * params.scan_shape[1]
        self.detector_shape, self.scan_shape = params.detector_shape, params.scan_shape
        self._scale = None

    def counts(self) -> Iterator[np.ndarray]:

        top = 2 ** min(self.native[0], 16) - 1
        for frames, _ in simulate_chunks(self.params):
            if self.params.dose_e_per_probe is None:
                if self._scale is None:
                    self._scale = top / max(float(frames.max()), 1e-30)
                frames = np.rint(frames * self._scale)
            yield frames


class _FileFeed(Feed):
    def __init__(self, path: str, scan_shape=None) -> None:

        self.source = MerlinSource(path, scan_shape=scan_shape, pad=True, prefetch=False, split_files=False)
        h = self.source.header
        self.header, self.native = h, (h.counter_depth, h.raw)
        self.n_frames, self.detector_shape = self.source.frames_in_files, tuple(h.detector_shape)
        self.scan_shape = self.source.scan_shape
        self.quad, self.gap = h.n_chips == 4, h.gap > 0

    def counts(self) -> Iterator[np.ndarray]:
        for chunk in self.source.chunks(256):
            yield chunk.frames

    def encoded(self, depth: int, raw: bool, block: int) -> Iterator[np.ndarray]:
        if (depth, raw) != self.native:
            yield from super().encoded(depth, raw, block)
            return
        data = self.source.files[0].map()
        fb = self.header.frame_bytes
        for s in range(0, self.n_frames, block):
            k = min(block, self.n_frames - s)
            yield data[s * fb:(s + k) * fb].reshape(k, fb)


def make_feed(data, scan_shape=None, depth: int | None = None) -> Feed:
    """A feed from a ``.mib`` path, an integer array or a `SimulationParams`."""

    if isinstance(data, (str, os.PathLike)):
        return _FileFeed(os.fspath(data), scan_shape)
    if isinstance(data, SimulationParams):
        return _DemoFeed(data, depth or 12)
    return _ArrayFeed(data, scan_shape, depth or 12)


def wire_messages(feed: Feed, depth: int, raw: bool, cache: dict, cache_bytes: int) -> Iterator[np.ndarray]:
    """One pass over ``feed`` as wire messages ``(k, 15 + frame_bytes)``.

    The blocks of a pass are kept in ``cache`` under ``(depth, raw)`` when they add up
    to at most ``cache_bytes``; a cached pass is served from there.
    """
    key = (depth, raw)
    if key in cache:
        yield from cache[key]
        return
    blocks, size = [], 0
    dy, dx = feed.detector_shape
    for enc in feed.encoded(depth, raw, max(1, BLOCK_BYTES // (800 + 4 * dy * dx))):
        wire = np.empty((len(enc), PREFIX_BYTES + enc.shape[1]), np.uint8)
        wire[:, :PREFIX_BYTES] = np.frombuffer(mpx_prefix(enc.shape[1]), np.uint8)
        wire[:, PREFIX_BYTES:] = enc
        size += wire.nbytes
        if blocks is not None and size <= cache_bytes:
            blocks.append(wire)
        else:
            blocks = None
        yield wire
    if blocks is not None:
        cache[key] = blocks


def patch_sequence(wire: np.ndarray, first: int) -> None:
    """Write sequence numbers first, first+1, … into the 6-digit field of each MIB header."""
    at = PREFIX_BYTES + 4
    if len(wire) and wire[0, at + 6] == ord(","):
        seq = np.arange(first, first + len(wire), dtype=np.int64) % 1_000_000
        wire[:, at:at + 6] = (seq[:, None] // 10 ** np.arange(5, -1, -1)) % 10 + 48
