"""The detector half of the engine: per-pattern sums of frame chunks and the look-ups they use.

`FrameReduction` is mixed into `ricom.engine.reconstruction.Reconstruction`.  It picks up the COM mask
and the virtual-detector rings (built once a centre, and for bright-field-relative rings
the bright-field radius, is known) and reduces chunks of frames to per-pattern moments
with `ricom.engine.detector.frame_moments`, over several threads on request.  Kept apart only to
keep the engine file short: it works on the engine's own state.
"""
from __future__ import annotations

import itertools
import math

import numpy as np

from ricom.core.params import VirtualDetector
from ricom.engine import compiled as C
from ricom.engine.detector import (
    bright_field_radius,
    frame_moments,
    mean_pattern,
    pattern_centre_of_mass,
    radius_map,
    ring_runs,
    take_frames,
)


class FrameReduction:
    """Frame reduction of `ricom.engine.reconstruction.Reconstruction` (see the module docstring)."""

    def _detector_luts(self) -> tuple:
        """The look-ups a chunk's moments depend on (taken under the lock, used outside it)."""
        runs = self._ring_runs
        n_rings = len(self._ring_bounds) - 1 if runs is not None else 0
        return self._com_mask, runs, n_rings, self._state.shape[0]

    def _frame_moments(self, frames, luts, split: bool) -> np.ndarray:
        """Totals, first moments and ring sums of a chunk (``split``: over `threads` workers)."""
        k = frames.shape[0]
        moments = np.zeros((luts[3], k))
        if not split or self.threads == 1 or k < 2 * self.threads:
            frame_moments(frames, luts, moments)
            return moments
        if self._pool is None:
            from concurrent.futures import ThreadPoolExecutor
            self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="ricom-moments")
        cuts = np.linspace(0, k, self.threads + 1).astype(int)
        jobs = [self._pool.submit(frame_moments, take_frames(frames, a, b), luts, moments[:, a:b])
                for a, b in itertools.pairwise(cuts)]
        for job in jobs:
            job.result()
        return moments

    def _ensure_detector_luts(self, frames: np.ndarray) -> None:
        """Build the COM mask and ring look-up once a centre (and BF radius) is known."""
        if not self._luts_needed():
            return
        centre = self.center_yx() or self._estimate_centre(frames)
        self._build_luts(centre, lambda: bright_field_radius(frames))

    def _luts_needed(self) -> bool:
        s = self._settings
        return (bool(s.virtual_detectors) and self._ring_of_pixel is None) or \
            (s.com_mask_px is not None and self._com_mask is None)

    def _build_luts(self, centre, bf_radius) -> None:
        """COM mask and rings around ``centre``; ``bf_radius()`` gives the BF-disc radius."""
        s = self._settings
        need_rings = bool(s.virtual_detectors) and self._ring_of_pixel is None
        need_mask = s.com_mask_px is not None and self._com_mask is None
        r = radius_map(self.detector_shape, centre)
        self._rings_centre = (float(centre[0]), float(centre[1]))
        if need_mask:
            lo, hi = s.com_mask_px
            self._com_mask = ((r >= lo) & (r < hi)).astype(np.uint8)
        if need_rings:
            if any(vd.unit == "bf" for vd in s.virtual_detectors) and self._bf_radius_px is None:
                self._bf_radius_px = bf_radius()
            self._build_rings(r)

    def _estimate_centre(self, frames: np.ndarray) -> tuple[float, float]:
        centre = pattern_centre_of_mass(mean_pattern(frames))
        return centre if centre is not None else ((self.detector_shape[0] - 1) / 2, (self.detector_shape[1] - 1) / 2)

    def _build_rings(self, r: np.ndarray) -> None:
        radii = {vd.name: self._radii_px(vd) for vd in self._settings.virtual_detectors}
        bounds = np.unique([b for pair in radii.values() for b in pair])
        self._ring_bounds = np.asarray(bounds, np.float64)
        ring = np.searchsorted(bounds, r, side="right") - 1
        ring[(ring < 0) | (ring >= len(bounds) - 1)] = -1
        self._ring_of_pixel = ring.astype(np.int32)
        self._ring_runs = ring_runs(self._ring_of_pixel)
        self._vd_rings = {name: np.flatnonzero((bounds[:-1] >= lo) & (bounds[1:] <= hi))
                          for name, (lo, hi) in radii.items()}
        n_rings = len(bounds) - 1
        extra = np.zeros((n_rings, self._state.shape[1]))
        self._state = np.ascontiguousarray(np.vstack([self._state[:C.FIRST_RING], extra]))

    def _radii_px(self, vd: VirtualDetector) -> tuple[float, float]:
        if vd.unit == "bf":
            rb = self._bf_radius_px or 1.0
            return vd.inner * rb, (vd.outer * rb if math.isfinite(vd.outer) else math.inf)
        lo, hi = vd.radii_px(self._settings.calibration)
        return lo, hi

    def ring_boundaries_px(self) -> dict[str, tuple[float, float]]:
        """Radii (px) of each virtual detector as used (after BF-radius estimation)."""
        return {vd.name: self._radii_px(vd) for vd in self._settings.virtual_detectors}
