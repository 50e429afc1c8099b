"""The faults the DECTRIS simulator can play: what a live DECTRIS client must survive.

`DectrisFaults` holds them (FORMATS.md §5 and §7): image messages of the previous
series before a header (``leftover_images``), a series that ends early with its end
message (``end_after``), a stream that stops with the socket open and no end message
(``stall_after``), masked pixels (``masked_pixels``: dead and noisy pixels in the pixel
mask, read as 2^bit_depth − 1), single readings at the saturation value
(``hot_readings``), a V1 detector-config JSON without ``bit_depth_image`` (as real EIGER
firmware 1.6.6 sends it: ``omit_bit_depth``), and no series header at all
(``no_header``).  `ricom.simulators.dectris.server.DectrisSimulator` plays them.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from ricom.core.errors import SettingsError

DEAD_BIT, NOISY_BIT = 1 << 1, 1 << 4  # NeXus NXmx pixel-mask bits


@dataclasses.dataclass(frozen=True)
class DectrisFaults:
    """Fault options of the DECTRIS simulator (all off by default).

    Parameters
    ----------
    leftover_images : int
        Before every series header, this many image messages that still carry the
        previous series id (frames 0…K−1 of the data), as a stopped series leaves behind.
    end_after : int, optional
        Each series ends after this many frames, with its end message.
    stall_after : int, optional
        Each series sends this many frames, then nothing more (no end message) while the
        socket stays open; the detector reads ``acquire`` until disarmed.
    masked_pixels : int
        This many random pixels are marked dead or noisy in the pixel mask (so they read
        2^bit_depth − 1 in every frame).
    hot_readings : int
        This many single readings (random frame and pixel of the data) read the
        saturation value.
    omit_bit_depth : bool
        The V1 detector-config JSON has no ``bit_depth_image`` key.
    no_header : bool
        Never send the series header (V1 ``dheader``, V2 ``start``).
    seed : int
        Seed of the random pixels and readings.
    """

    leftover_images: int = 0
    end_after: int | None = None
    stall_after: int | None = None
    masked_pixels: int = 0
    hot_readings: int = 0
    omit_bit_depth: bool = False
    no_header: bool = False
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("leftover_images", "masked_pixels", "hot_readings", "end_after", "stall_after"):
            value = getattr(self, name)
            if value is None and name in ("end_after", "stall_after"):
                continue
            if isinstance(value, bool) or int(value) != value or value < 0:
                raise SettingsError(f"fault {name} must be an integer ≥ 0, got {value!r}")
            object.__setattr__(self, name, int(value))

    def frame_limit(self, frames: int) -> int:
        """Frames sent in a series of ``frames`` frames: the fewest of it, ``end_after`` and ``stall_after``."""
        return min([frames] + [v for v in (self.end_after, self.stall_after) if v is not None])

    def stalls(self, frames: int) -> bool:
        """Whether a series of ``frames`` frames stalls (no end message) after its last frame sent."""
        s = self.stall_after
        return s is not None and s < frames and (self.end_after is None or s < self.end_after)

    def mask_bits(self, shape: tuple[int, int]) -> np.ndarray:
        """The fault part of the pixel mask: ``masked_pixels`` random dead or noisy pixels."""
        mask = np.zeros(shape, np.uint32)
        n = min(self.masked_pixels, shape[0] * shape[1])
        if n:
            rng = np.random.default_rng(self.seed)
            flat = rng.choice(shape[0] * shape[1], n, replace=False)
            mask.reshape(-1)[flat] = np.where(rng.random(n) < 0.5, DEAD_BIT, NOISY_BIT)
        return mask

    def hot(self, n_frames: int, shape: tuple[int, int]) -> dict[int, np.ndarray]:
        """``hot_readings`` random readings: frame index → flat pixel indices."""
        out: dict[int, list] = {}
        if self.hot_readings and n_frames:
            rng = np.random.default_rng(self.seed + 1)
            frames = rng.integers(0, n_frames, self.hot_readings)
            pixels = rng.integers(0, shape[0] * shape[1], self.hot_readings)
            for f, p in zip(frames.tolist(), pixels.tolist(), strict=True):
                out.setdefault(f, []).append(p)
        return {f: np.asarray(p, np.int64) for f, p in out.items()}
