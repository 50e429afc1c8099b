"""Offline SSB of any frame input in bounded memory: the detector pixels in groups, one pass each.

Owns `offline_plan` (how many binned pixels one pass holds within the memory limit, how
many passes, the bytes — known before the first pattern is read), `ssb_offline` (reads
the input once for the centre if it is not known, then once per pixel group: the group's
binned pixels of every pattern — or the events in them — into a real (scan, group) array, its 2D FFT over the
scan, the trotter integrals; `ricom.phase.ssb` describes the formulas) and `SsbResult`.
"""
from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

from ricom.core.chunks import FrameChunk
from ricom.core.errors import Param, SettingsError
from ricom.core.params import Calibration, DetectorGeometry
from ricom.phase._ssb_events import EventPatterns, full_map
from ricom.phase._ssb_geometry import (
    SsbOptics,
    SsbOptions,
    binned_shape,
    disc_pixel_bound,
    frames_2d,
    phase_image,
    pixel_frequencies,
    pixel_map,
    trotter_integrals,
)
from ricom.phase._ssb_kernels import bin_events, bin_pixels
from ricom.sources import open_input

DEFAULT_MEMORY_BYTES = 512 << 20
"""What `ssb_offline` plans for unless told otherwise."""


@dataclass(frozen=True)
class SsbOfflinePlan:
    """How an offline SSB reads its input and the memory it needs, worked out before it starts.

    Attributes
    ----------
    scan_shape, binned_shape : (int, int)
    n_pixels : int
        Binned pixels in the bright-field disc (an upper bound while the centre is unknown).
    pixels_per_pass, n_passes : int
        Pixels held per pass over the input, and the passes (plus one for the centre if
        ``centre_pass``).
    bytes_needed, limit_bytes : int
        The peak the plan needs for its arrays, and the limit it was made for.
    """

    scan_shape: tuple[int, int]
    binned_shape: tuple[int, int]
    n_pixels: int
    pixels_per_pass: int
    n_passes: int
    bytes_needed: int
    limit_bytes: int
    centre_pass: bool

    def describe(self) -> str:
        (sy, sx), (by, bx) = self.scan_shape, self.binned_shape
        extra = " + 1 for the centre" if self.centre_pass else ""
        return (f"SSB offline: {sy}×{sx} scan, {by}×{bx} binned patterns, {self.n_pixels} bright-field pixels in "
                f"{self.n_passes} pass{'es' if self.n_passes > 1 else ''}{extra} of ≤ {self.pixels_per_pass}; "
                f"needs {self.bytes_needed / 2**20:.0f} MiB (limit {self.limit_bytes / 2**20:.0f} MiB)")


@dataclass
class SsbResult:
    """An offline SSB: the phase image (rad, atoms bright), the plan it followed, the centre it used."""

    image: np.ndarray
    plan: SsbOfflinePlan
    center_yx: tuple[float, float]
    n_patterns: int
    seconds: float


def offline_plan(scan_shape, detector_shape, n_pixels: int, bin_factor: int, limit_bytes: int,
                 chunk_size: int = 256, centre_pass: bool = False) -> SsbOfflinePlan:
    """Pixels per pass within ``limit_bytes``; a one-line `SettingsError` if not even one fits.

    Per pixel of a pass: the real (scan) array, its half-plane transform, the 2D spectrum
    and the FFT's working copy (complex128); fixed: one chunk of patterns as float64 and
    the Q-plane sums.
    """
    sy, sx = scan_shape
    n = sy * sx
    per_pixel = 8 * n + 3 * 16 * sy * (sx // 2 + 1)
    fixed = 8 * chunk_size * (detector_shape[0] * detector_shape[1]) + 16 * 4 * n
    group = (int(limit_bytes) - fixed) // per_pixel
    by_bx = binned_shape(detector_shape, bin_factor)
    if group < 1:
        raise SettingsError(f"SSB offline of a {sy}×{sx} scan needs at least {(fixed + per_pixel) / 2**20:.0f} MiB, "
                            f"more than the {int(limit_bytes) / 2**20:.0f} MiB allowed; raise max_memory_bytes")
    group = min(group, max(1, n_pixels))
    passes = max(1, math.ceil(n_pixels / group))
    return SsbOfflinePlan((sy, sx), by_bx, int(n_pixels), int(group), passes, fixed + group * per_pixel,
                          int(limit_bytes), centre_pass)


def _chunks(source, scan_shape, detector_shape, chunk_size: int, acceptance_ns: float | None) -> Iterator[tuple]:
    """``(frames (k, ny·nx), positions with −1 for patterns left out)`` of a frame chunk, or
    ``(None, EventPatterns)`` of an event chunk."""
    for chunk in source.chunks(chunk_size):
        if not isinstance(chunk, FrameChunk):
            yield None, EventPatterns.of(chunk, scan_shape, detector_shape, acceptance_ns)
            continue
        frames = frames_2d(chunk.frames)
        positions = np.asarray(chunk.positions, np.int64)
        if frames.dtype.kind == "f":
            positions = np.where(np.isfinite(frames).all(axis=1), positions, -1)
        yield frames, positions


def _mean_com_centre(source, scan_shape, detector_shape, chunk_size: int, acceptance_ns) -> tuple[float, float]:
    """The auto centre of the engine: the mean over positions with counts of each position's COM."""
    n = scan_shape[0] * scan_shape[1]
    dy, dx = detector_shape
    sums = np.zeros((3, n))
    ys, xs = np.repeat(np.arange(dy, dtype=np.float64), dx), np.tile(np.arange(dx, dtype=np.float64), dy)
    for frames, part in _chunks(source, scan_shape, detector_shape, chunk_size, acceptance_ns):
        if frames is None:  # events: counts and coordinates
            ok = part.positions >= 0
            pos, terms = part.positions[ok], (None, part.x[ok], part.y[ok])
        else:
            ok = part >= 0
            f = frames[ok].astype(np.float64)
            pos, terms = part[ok], (f.sum(axis=1), f @ xs, f @ ys)
        for row, values in enumerate(terms):
            sums[row] += np.bincount(pos, values, minlength=n)
    t = sums[0]
    has = t > 0
    if not has.any():
        return (dy - 1) / 2, (dx - 1) / 2
    return float((sums[2, has] / t[has]).mean()), float((sums[1, has] / t[has]).mean())


def _groups(source, plan: SsbOfflinePlan, kept, ky, kx, detector_shape, bin_factor, chunk_size, acceptance_ns,
            counter):
    """The 2D spectrum of each group of pixels (one pass over the input each)."""
    sy, sx = plan.scan_shape
    for g0 in range(0, len(kept), plan.pixels_per_pass):
        group = kept[g0:g0 + plan.pixels_per_pass]
        mapping = pixel_map(detector_shape, bin_factor, group)
        by_pixel = full_map(*mapping, detector_shape[0] * detector_shape[1])
        data = np.zeros((sy * sx, len(group)))
        n_patterns, seen = 0, np.zeros(sy * sx, bool)
        for frames, part in _chunks(source, plan.scan_shape, detector_shape, chunk_size, acceptance_ns):
            if frames is None:
                bin_events(part.positions, part.pixels, by_pixel, data)
                n_patterns += part.new_patterns(seen)
            else:
                bin_pixels(frames, part, *mapping, data)
                n_patterns += int((part >= 0).sum())
        counter[0] = n_patterns
        spec = np.fft.rfft(data.reshape(sy, sx, len(group)), axis=1)
        del data
        spec = np.fft.fft(spec, axis=0)
        yield spec, ky[group], kx[group]
        del spec  # before the next pass fills its array


def ssb_offline(data, options: SsbOptions, calibration: Calibration | None = None,
                geometry: DetectorGeometry | None = None, scan_shape=None, max_memory_bytes: int | None = None,
                chunk_size: int = 256, on_plan: Callable[[SsbOfflinePlan], None] | None = None,
                acceptance_ns: float | None = None, **source_options) -> SsbResult:
    """SSB of a whole input (file path, array or `ricom.sources.base.Source` that can be read more than once).

    Parameters
    ----------
    data : str, ndarray or Source
        4D ``(scan_y, scan_x, det_y, det_x)`` patterns or single-electron events, in any
        format ricom reads.
    options : SsbOptions
        Convergence angle, aberrations (defocus), binning.
    calibration : Calibration, optional
        Scan step, detector pixel size, energy; what is missing is taken from the input.
    geometry : DetectorGeometry, optional
        Centre, rotation, flip; by default the input's (its centre, else the mean COM of
        all patterns, which costs one more pass).
    scan_shape : (int, int), optional
        Where the input does not carry it.
    max_memory_bytes : int, optional
        Memory the plan may use (512 MiB by default).
    on_plan : callable, optional
        Told the `SsbOfflinePlan` before the first pattern is read (to print it).
    acceptance_ns : float, optional
        Events only: those arriving later than this after the probe are left out (the
        dose lowered after the fact, as `ricom.engine.Reconstruction.set_acceptance`);
        the source must keep the arrival times.

    Returns
    -------
    SsbResult
    """
    t0 = time.perf_counter()
    if scan_shape is not None:
        source_options["scan_shape"] = tuple(scan_shape)
    source = open_input(data, **source_options)
    if source.scan_shape is None:
        raise SettingsError(f"{source.format_name()} does not carry its scan shape; give ",
                            Param("scan_shape", form=True))
    hints = source.hints()
    cal = (calibration or Calibration()).filled_from(hints)
    optics = SsbOptics.from_calibration(cal, options)
    if geometry is None:
        c = hints.get("center_yx")
        geometry = DetectorGeometry(tuple(c) if c is not None else None, float(hints.get("rotation_deg", 0.0)),
                                    bool(hints.get("flip", False)))
    scan, det, b = tuple(source.scan_shape), tuple(source.detector_shape), options.bin_factor
    limit = int(max_memory_bytes) if max_memory_bytes is not None else DEFAULT_MEMORY_BYTES
    centre = geometry.center_yx
    n_bound = disc_pixel_bound(det, options, optics, 0.0)
    if centre is None:
        plan = offline_plan(scan, det, n_bound, b, limit, chunk_size, centre_pass=True)
        if on_plan:
            on_plan(plan)
        centre = _mean_com_centre(source, scan, det, chunk_size, acceptance_ns)
    ky, kx = pixel_frequencies(det, b, centre, optics, geometry)
    kept = np.flatnonzero(ky * ky + kx * kx < optics.alpha_inv_A ** 2)
    if geometry.center_yx is not None:
        plan = offline_plan(scan, det, len(kept), b, limit, chunk_size)
        if on_plan:
            on_plan(plan)
    else:  # the passes the centre now known needs (never more than planned)
        plan = offline_plan(scan, det, len(kept), b, limit, chunk_size, centre_pass=True)
    counter = [0]
    groups = _groups(source, plan, kept, ky, kx, det, b, chunk_size, acceptance_ns, counter)
    sums = trotter_integrals(groups, scan, optics, options)
    image = phase_image(sums, counter[0], options.flat_transfer)
    return SsbResult(image, plan, (float(centre[0]), float(centre[1])), counter[0], time.perf_counter() - t0)
