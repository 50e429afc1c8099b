"""Detector look-ups: the COM mask and the virtual-detector rings, built around a centre.

`DetectorLookups` is the named, frozen bundle that the per-pattern reduction of a chunk
depends on: the centre it was built around, the COM mask (pixels inside the annulus),
the ring of every pixel and its row runs, the ring boundaries and which rings make up
each virtual detector.  A new bundle is built (never one changed) when the settings ask
for other detectors, so a chunk reduced with one bundle can tell whether it is still
current by identity.  `build_lookups` makes one from the settings, a centre and the
bright-field radius (for detectors in multiples of it).
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from ricom.core.params import Settings
from ricom.engine import compiled as C
from ricom.engine.detector import radius_map, ring_runs


@dataclass(frozen=True, eq=False)
class DetectorLookups:
    """The look-ups a chunk's per-pattern moments depend on.

    Attributes
    ----------
    centre_yx_px : (float, float) or None
        Centre the mask and rings were built around; None when nothing was built.
    com_mask : ndarray of uint8 or None
        1 where a pixel enters the COM sums (the COM annulus), None: every pixel.
    ring_of_pixel : ndarray of int32 or None
        Ring index of every pixel, −1 outside every ring.
    ring_runs : ndarray or None
        Row runs ``(y, x0, x1, ring)`` of constant ring (`ricom.engine.detector.ring_runs`).
    ring_bounds_px : ndarray
        Ring boundaries (radii in pixels, ascending); ring ``k`` is
        ``ring_bounds_px[k] ≤ r < ring_bounds_px[k + 1]``.
    detector_rings : dict of str to ndarray
        The rings that make up each virtual detector.
    bf_radius_px : float or None
        Bright-field disc radius behind detectors given in its multiples.
    """

    centre_yx_px: tuple[float, float] | None = None
    com_mask: np.ndarray | None = None
    ring_of_pixel: np.ndarray | None = None
    ring_runs: np.ndarray | None = None
    ring_bounds_px: np.ndarray = field(default_factory=lambda: np.zeros(0))
    detector_rings: dict = field(default_factory=dict)
    bf_radius_px: float | None = None

    @property
    def n_rings(self) -> int:
        return max(0, len(self.ring_bounds_px) - 1) if self.ring_runs is not None else 0

    @property
    def n_rows(self) -> int:
        """Moment rows of a pattern: total, Σ I·x, Σ I·y and one per ring."""
        return C.FIRST_RING + self.n_rings

    def missing(self, settings: Settings) -> bool:
        """True when the settings ask for a mask or detectors these look-ups lack."""
        return (bool(settings.virtual_detectors) and self.ring_of_pixel is None) or \
            (settings.com_mask_px is not None and self.com_mask is None)

    def event_lookups(self, settings: Settings, integer_coordinates: bool, detector_shape) -> C.EventLookups:
        """What the compiled event loop needs (`ricom.engine.compiled.EventLookups`)."""
        n_rings = self.n_rings
        bounds = self.ring_bounds_px if n_rings and len(self.ring_bounds_px) - 1 == n_rings else np.zeros(0)
        use_mask = settings.com_mask_px is not None and self.com_mask is not None
        lo, hi = settings.com_mask_px if use_mask else (0.0, math.inf)
        cy, cx = self.centre_yx_px if self.centre_yx_px is not None else (0.0, 0.0)
        ring = self.ring_of_pixel if bounds.shape[0] and self.ring_of_pixel is not None else \
            np.broadcast_to(np.int32(-1), detector_shape)  # shape for the bounds check only
        mask = self.com_mask if use_mask else np.ones((1, 1), np.uint8)
        return C.EventLookups(ring, mask, bool(integer_coordinates), bounds * bounds, float(cy), float(cx),
                              float(lo * lo), float(hi * hi), use_mask)


NO_LOOKUPS = DetectorLookups()
"""Before any mask or detector is built (and for settings without them)."""


def build_lookups(settings: Settings, detector_shape: tuple[int, int], centre_yx_px: tuple[float, float],
                  bf_radius_px: Callable[[], float], keep: DetectorLookups = NO_LOOKUPS) -> DetectorLookups:
    """The COM mask and rings the settings ask for, around ``centre_yx_px``.

    ``bf_radius_px()`` is called only when a detector is in multiples of the bright-field
    radius and ``keep`` has none.  What ``keep`` already has (a mask, or rings) is kept.
    """
    need_rings = bool(settings.virtual_detectors) and keep.ring_of_pixel is None
    need_mask = settings.com_mask_px is not None and keep.com_mask is None
    r = radius_map(detector_shape, centre_yx_px)
    mask = keep.com_mask
    if need_mask:
        lo, hi = settings.com_mask_px
        mask = ((r >= lo) & (r < hi)).astype(np.uint8)
    parts = {"centre_yx_px": (float(centre_yx_px[0]), float(centre_yx_px[1])), "com_mask": mask}
    if not need_rings:
        return DetectorLookups(**{**_fields(keep), **parts})
    bf = keep.bf_radius_px
    if bf is None and any(vd.unit == "bf" for vd in settings.virtual_detectors):
        bf = bf_radius_px()
    radii = detector_radii_px(settings, bf)
    bounds = np.asarray(np.unique([b for pair in radii.values() for b in pair]), np.float64)
    ring = np.searchsorted(bounds, r, side="right") - 1
    ring[(ring < 0) | (ring >= len(bounds) - 1)] = -1
    ring = ring.astype(np.int32)
    rings = {name: np.flatnonzero((bounds[:-1] >= lo) & (bounds[1:] <= hi)) for name, (lo, hi) in radii.items()}
    return DetectorLookups(ring_of_pixel=ring, ring_runs=ring_runs(ring), ring_bounds_px=bounds,
                           detector_rings=rings, bf_radius_px=bf, **parts)


def detector_radii_px(settings: Settings, bf_radius_px: float | None) -> dict[str, tuple[float, float]]:
    """Inner and outer radius (px) of every virtual detector of the settings."""
    out = {}
    for vd in settings.virtual_detectors:
        if vd.unit == "bf":
            rb = bf_radius_px or 1.0
            out[vd.name] = (vd.inner * rb, vd.outer * rb if math.isfinite(vd.outer) else math.inf)
        else:
            out[vd.name] = vd.radii_px(settings.calibration)
    return out


def _fields(lookups: DetectorLookups) -> dict:
    return {name: getattr(lookups, name) for name in DetectorLookups.__dataclass_fields__}
