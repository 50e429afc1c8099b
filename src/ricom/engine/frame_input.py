"""Frame chunks into the engine: checks, scan positions and the per-pattern reduction.

Plain functions used by `ricom.engine.Reconstruction`: `checked_frames` brings a chunk
into a form the compiled kernels take (or keeps packed file frames packed),
`checked_positions` turns ``positions``/``start`` into flat scan indices, and
`reduce_frames` runs the per-pattern reduction — total, Σ I·x, Σ I·y, ring sums with the
chunk's `ricom.engine.lookups.DetectorLookups` — once per chunk, optionally shared over
the pipeline's workers.
"""
from __future__ import annotations

import numpy as np

from ricom.core.chunks import EncodedFrames, PackedFrames
from ricom.core.errors import InputError
from ricom.engine.detector import frame_moments, mean_pattern, pattern_centre_of_mass
from ricom.engine.lookups import DetectorLookups
from ricom.engine.reducer import ReducedChunk
from ricom.engine.workers import Workers


def checked_frames(frames, detector_shape: tuple[int, int], unpack_packed: bool):
    """Frames as (k, ny, nx) in a dtype the compiled kernels take, or packed frames.

    Packed file frames stay packed (read in place) unless ``unpack_packed`` (a COM mask
    needs plain pixels) or their depth has no packed kernel.  Encoded frames are decoded
    here (on the calling worker thread).
    """
    if isinstance(frames, EncodedFrames):
        if tuple(frames.frame_shape) != tuple(detector_shape):
            raise InputError(f"patterns of shape {frames.frame_shape} do not match the detector "
                             f"shape {detector_shape}")
        frames = frames.unpack()
    if isinstance(frames, PackedFrames):
        if frames.frame_shape != detector_shape:
            raise InputError(f"patterns of shape {frames.frame_shape} do not match the detector "
                             f"shape {detector_shape}")
        if not unpack_packed and (frames.bits == 1 or frames.dtype.itemsize <= 2):
            return frames
        frames = frames.unpack()
    frames = np.asarray(frames)
    if frames.ndim < 2 or frames.shape[-2:] != detector_shape:
        raise InputError(f"patterns of shape {frames.shape[-2:]} do not match the detector shape {detector_shape}")
    frames = frames.reshape((-1, *detector_shape))
    if frames.dtype.kind not in "uif":
        raise InputError(f"pattern dtype {frames.dtype} is not a number type")
    if frames.dtype.kind == "u" and frames.dtype.itemsize == 8:
        return frames.astype(np.int64)
    if not frames.dtype.isnative and not (frames.dtype.kind == "u" and frames.dtype.itemsize <= 2):
        return frames.astype(frames.dtype.newbyteorder("="))
    return frames


def checked_positions(positions, start: int | None, k: int, scan_shape: tuple[int, int]) -> np.ndarray:
    """Flat scan index per pattern: ``positions`` as given, or consecutive from ``start``
    (``-1`` beyond the scan)."""
    n_pos = scan_shape[0] * scan_shape[1]
    if positions is None:
        first = 0 if start is None else int(start)
        positions = np.arange(first, first + k, dtype=np.int64)
        positions[positions >= n_pos] = -1
    positions = np.ascontiguousarray(positions, dtype=np.int64).ravel()
    if positions.shape[0] != k:
        raise InputError(f"{positions.shape[0]} positions for {k} patterns")
    if positions.size and positions.max() >= n_pos:
        raise InputError(f"scan position {positions.max()} is outside the {scan_shape[0]}×{scan_shape[1]} scan")
    return positions


def reduce_frames(frames, positions: np.ndarray, scan_pass, lookups: DetectorLookups,
                  workers: Workers | None = None) -> ReducedChunk:
    """The per-pattern reduction of one chunk (``workers``: shared over their threads)."""
    moments = np.zeros((lookups.n_rows, frames.shape[0]))
    if workers is None:
        frame_moments(frames, lookups, moments)
    else:
        workers.reduce_split(frames, lookups, moments)
    return ReducedChunk(positions, moments, np.isfinite(moments).all(axis=0), scan_pass, frames)


def estimate_centre(frames, detector_shape: tuple[int, int]) -> tuple[float, float]:
    """Centre of mass of the chunk's mean pattern (the detector centre if it has no counts)."""
    centre = pattern_centre_of_mass(mean_pattern(frames))
    return centre if centre is not None else ((detector_shape[0] - 1) / 2, (detector_shape[1] - 1) / 2)
