"""DECTRIS pixel masks: which pixels to leave out, and leaving them out of frames.

A DECTRIS detector marks defective pixels in its ``pixel_mask`` (uint32, NeXus NXmx bits:
0 gap, 1 dead, 2 under-responding, 3 over-responding, 4 noisy, 6 cluster, 8 user mask,
31 virtual pixel; ``../shared/FORMATS.md`` §5).  A pixel is ignored when any of the low
16 bits is set.  With the mask applied (the detector's default) such pixels read
2^bit_depth − 1 in every image; a pixel can also read that value in one image only.
`PixelMask.apply` zeroes both kinds in place, in compiled code over whole chunks, so they
count in no COM, virtual detector or total; it counts the readings it removed.
"""
from __future__ import annotations

import numba
import numpy as np

from ricom.core.errors import InputError

MASK_BITS = {0: "gap", 1: "dead", 2: "under-responding", 3: "over-responding", 4: "noisy", 6: "cluster",
             8: "user", 31: "virtual"}
"""Names of the NXmx pixel-mask bits."""

IGNORE_BITS = 0xFFFF
"""A pixel with any of these mask bits set is left out."""


@numba.njit(nogil=True, cache=True)
def _zero_masked(frames, bad_index, saturation):  # pragma: no cover - compiled
    """Zero ``bad_index`` pixels and readings equal to ``saturation`` (< 0: none) in
    ``frames[n, npix]``; return how many readings equal to ``saturation`` were not static."""
    n, npix = frames.shape
    extra = 0
    for i in range(n):
        row = frames[i]
        for k in range(bad_index.shape[0]):  # the static mask first, so that it is not counted below
            row[bad_index[k]] = 0
        if saturation >= 0:
            for j in range(npix):
                if row[j] == saturation:
                    row[j] = 0
                    extra += 1
    return extra


@numba.njit(nogil=True, cache=True)
def _copy_masked(src, dst, bad_index, saturation):  # pragma: no cover - compiled
    """``dst[:] = src`` with ``bad_index`` pixels and readings equal to ``saturation`` (< 0:
    none) zeroed; returns how many readings equal to ``saturation`` were not static."""
    n = src.shape[0]
    extra = 0
    if saturation >= 0:
        for j in range(n):
            v = src[j]
            hit = v == saturation
            dst[j] = 0 if hit else v
            extra += hit
    else:
        for j in range(n):
            dst[j] = src[j]
    for k in range(bad_index.shape[0]):
        j = bad_index[k]
        if saturation >= 0 and src[j] == saturation:
            extra -= 1
        dst[j] = 0
    return extra


class PixelMask:
    """The pixels of one detector configuration to leave out.

    Parameters
    ----------
    bad : bool ndarray (rows, cols)
        True where a pixel is left out of every frame.
    saturation : int, optional
        A reading with this value is left out too (2^bit_depth − 1: the detector's marker
        for a masked or defective pixel); None checks no value.
    bits : dict, optional
        How many pixels each mask bit marks (for the report).

    Examples
    --------
    >>> m = PixelMask.from_detector_mask(np.array([[0, 1], [0, 0x10000]], np.uint32), bit_depth=8)
    >>> frames = np.array([[[3, 4], [255, 6]]], np.uint8)
    >>> m.apply(frames), frames.tolist()
    (1, [[[3, 0], [0, 6]]])
    >>> m.summary()
    '1 masked pixel (gap 1); readings of 255 also left out'
    """

    def __init__(self, bad: np.ndarray, saturation: int | None = None, bits: dict | None = None) -> None:
        self.bad = np.ascontiguousarray(bad, dtype=bool)
        self.bad_index = np.flatnonzero(self.bad).astype(np.int64)
        self.saturation = None if saturation is None else int(saturation)
        self.bits = dict(bits or {})
        self.readings_removed = 0
        """Readings equal to ``saturation`` left out so far, besides the static mask."""

    @classmethod
    def from_detector_mask(cls, mask: np.ndarray | None, bit_depth: int | None = None,
                           frame_shape: tuple[int, int] | None = None) -> PixelMask:
        """The mask a detector reports (uint32 NXmx bits; None: no static mask).

        ``bit_depth`` gives the marker value 2^bit_depth − 1.  A mask twice the size of
        ``frame_shape`` (ARINA ``merge2x2``) is reduced: a binned pixel is left out when any
        of its four pixels is.  Any other disagreement is an `InputError`.
        """
        saturation = None if not bit_depth else (1 << int(bit_depth)) - 1
        if mask is None:
            return cls(np.zeros(frame_shape or (0, 0), bool), saturation)
        mask = np.asarray(mask)
        if mask.ndim != 2 or mask.dtype.kind not in "ui":
            raise InputError(f"a DECTRIS pixel mask must be a 2D integer array, got {mask.dtype} {mask.shape}")
        low = mask.astype(np.uint32) & IGNORE_BITS
        bits = {MASK_BITS.get(b, f"bit {b}"): int(np.count_nonzero(mask.astype(np.uint32) & (1 << b)))
                for b in sorted(MASK_BITS) if b < 16}
        bad = low != 0
        if frame_shape is not None and tuple(bad.shape) != tuple(frame_shape):
            fy, fx = frame_shape
            if bad.shape == (2 * fy, 2 * fx):
                bad = bad.reshape(fy, 2, fx, 2).any(axis=(1, 3))
            else:
                raise InputError(f"the DECTRIS pixel mask is {bad.shape[0]}×{bad.shape[1]} but the frames are "
                                 f"{fy}×{fx}; the detector's ROI changed after the mask was read")
        return cls(bad, saturation, {k: v for k, v in bits.items() if v})

    @property
    def n_bad(self) -> int:
        return int(self.bad_index.size)

    def apply(self, frames: np.ndarray) -> int:
        """Zero the left-out pixels of ``frames`` (n, rows, cols) in place; return the readings
        equal to the saturation marker found outside the static mask (added to
        ``readings_removed``)."""
        if frames.size == 0 or (not self.n_bad and self.saturation is None):
            return 0
        if self.bad.size and frames.shape[1:] != self.bad.shape:
            raise InputError(f"frames of {frames.shape[1]}×{frames.shape[2]} pixels do not match the "
                             f"{self.bad.shape[0]}×{self.bad.shape[1]} pixel mask")
        flat = frames.reshape(frames.shape[0], -1)
        saturation = -1 if self.saturation is None else self.saturation
        if saturation > np.iinfo(flat.dtype).max if flat.dtype.kind in "ui" else False:
            saturation = -1
        extra = int(_zero_masked(flat, self.bad_index, saturation))
        self.readings_removed += extra
        return extra

    def copier(self, dtype: np.dtype):
        """``copy(src, dst) -> int``: copy one frame's pixels (1D, native ``dtype``) leaving out
        the masked ones, in compiled code that lets other threads run; returns the readings
        at the saturation marker outside the static mask.  None if ``dtype`` cannot take it."""
        dtype = np.dtype(dtype)
        if not dtype.isnative or dtype.kind not in "ui":
            return None
        saturation = -1 if self.saturation is None or self.saturation > np.iinfo(dtype).max else self.saturation
        bad = self.bad_index

        def copy(src, dst):
            return _copy_masked(src, dst, bad, saturation)

        return copy

    @staticmethod
    def warm_up(dtype) -> None:
        """Compile (or load from the cache) the copy for ``dtype`` now, not with the first frames."""
        dtype = np.dtype(dtype)
        if dtype.isnative and dtype.kind in "ui":
            src = np.frombuffer(bytes(8 * dtype.itemsize), dtype)  # read-only, as decompressed data are
            _copy_masked(src, np.zeros(8, dtype), np.zeros(0, np.int64), -1)

    def summary(self) -> str:
        """One line: how many pixels are left out and why."""
        n = self.n_bad
        why = ", ".join(f"{k} {v}" for k, v in self.bits.items())
        text = f"{n} masked pixel{'s' if n != 1 else ''}" + (f" ({why})" if why and n else "")
        if self.saturation is not None:
            text += f"; readings of {self.saturation} also left out"
        return text

    def describe(self) -> dict:
        return {"masked_pixels": self.n_bad, "mask_bits": self.bits, "saturation_value": self.saturation,
                "readings_removed": self.readings_removed}


__all__ = ["IGNORE_BITS", "MASK_BITS", "PixelMask"]
