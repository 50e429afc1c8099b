"""The reducer contract: what consumes the chunk stream after the per-pattern reduction.

Modelled on LiberTEM's UDF interface: a reducer takes each reduced chunk in order
(`Reducer.process`), can combine with a partial result made elsewhere — another thread,
a Dask worker, another split of the same data (`Reducer.merge`) — and hands out its
results as plain NumPy arrays (`Reducer.get_results`).

A chunk goes through the per-pattern reduction once (`ricom.engine.frame_input`): the
`ReducedChunk` then carries the chunk's patterns (for reducers that need them, such as a
pattern sum, a recorder, tcBF or SSB), their scan positions and their moments (total,
Σ I·x, Σ I·y, ring sums).  The moments reducer (`ricom.engine.moments.Moments`) is the
first reducer of every reconstruction; the riCOM image is assembled from it by
`ricom.engine.ricom_update.RicomImage`.  Further reducers run beside it on the same
chunks: `ricom.engine.Reconstruction.add_reducer`.  Chunks of single-electron events
reach the reducers as received (`Reducer.process_event_chunk`: an event recorder).

A reducer may add images to every snapshot of its reconstruction (`Reducer.snapshot_part`:
the phase-contrast methods' ``tcbf`` and ``ssb``, and their fitted aberrations): the
engine carries them without knowing what they are.
"""
from __future__ import annotations

import abc
from dataclasses import dataclass

import numpy as np


@dataclass
class ReducedChunk:
    """One chunk after the per-pattern reduction.

    Attributes
    ----------
    positions : ndarray of int64
        Flat scan position of every pattern, −1 for patterns outside the scan.
    moments : ndarray of float64, shape (rows, k)
        Per-pattern total, Σ I·x, Σ I·y and ring sums (see `ricom.engine.compiled`).
    valid : ndarray of bool
        False for patterns with non-finite values (they are counted, not added).
    scan_pass : int or ndarray or None
        Scan pass of each pattern (repeated scans).
    frames : ndarray or PackedFrames or None
        The patterns themselves, ``(k, det_y, det_x)``; None for event data or moments
        computed elsewhere.
    encoded : EncodedFrames or None
        The same patterns as the detector compressed them, when they arrived so (a
        recorder stores them without compressing again).
    """

    positions: np.ndarray
    moments: np.ndarray
    valid: np.ndarray
    scan_pass: object = None
    frames: object = None
    encoded: object = None


@dataclass
class SnapshotPart:
    """What a further reducer adds to a snapshot.

    Attributes
    ----------
    images : dict of str to ndarray
        Scan images by signal name (``tcbf``, ``ssb``).
    units : dict of str to str
        The unit of each image.
    attrs : dict of str to object
        Flat scalars and strings worth saving beside the images (a fit, its errors, the
        options used), by name.
    """

    images: dict[str, np.ndarray]
    units: dict[str, str]
    attrs: dict[str, object]


class Reducer(abc.ABC):
    """A result built up from reduced chunks, mergeable with a partial result of its kind."""

    @abc.abstractmethod
    def process(self, chunk: ReducedChunk) -> None:
        """Take one reduced chunk into the result."""

    def process_event_chunk(self, chunk) -> None:
        """Take one chunk of single-electron events (`ricom.core.chunks.EventChunk`) as the
        source delivered it, before any acceptance filter (a recorder keeps them all).
        Events have no per-pattern reduction; reducers that work on patterns ignore them
        (the default)."""
        return

    @abc.abstractmethod
    def merge(self, other) -> None:
        """Add a partial result of the same kind (made from other chunks) into this one."""

    @abc.abstractmethod
    def get_results(self) -> dict[str, np.ndarray]:
        """Copies of the results as plain NumPy arrays, by name."""

    def snapshot_part(self, fresh: bool = True) -> SnapshotPart | None:
        """Images this reducer adds to its reconstruction's snapshots (None: none, the default).

        ``fresh`` False lets a reducer whose images are costly hand out the ones it made
        last (a display refreshing many times a second); True asks for everything seen.
        """
        return None


class PatternSum(Reducer):
    """Sum and count of the patterns at scan positions (non-finite patterns left out).

    The mean pattern (`mean`) is what calibration fits the bright-field disc to.

    Examples
    --------
    >>> s = PatternSum((2, 2))
    >>> s.process(ReducedChunk(np.array([0, -1]), np.zeros((3, 2)), np.array([True, True]),
    ...                        frames=np.ones((2, 2, 2))))
    >>> s.get_results()["n"], s.mean().tolist()
    (1, [[1.0, 1.0], [1.0, 1.0]])
    """

    def __init__(self, detector_shape: tuple[int, int]) -> None:
        self.total = np.zeros(detector_shape)
        self.n = 0

    def process(self, chunk: ReducedChunk) -> None:
        if chunk.frames is None:
            return
        frames = np.asarray(chunk.frames if isinstance(chunk.frames, np.ndarray) else chunk.frames[:])
        keep = (np.asarray(chunk.positions) >= 0) & np.asarray(chunk.valid)
        self.total += frames.reshape(-1, *self.total.shape)[keep].sum(axis=0, dtype=np.float64)
        self.n += int(keep.sum())

    def merge(self, other: PatternSum) -> None:
        self.total += other.total
        self.n += other.n

    def get_results(self) -> dict:
        return {"total": self.total.copy(), "n": self.n}

    def mean(self) -> np.ndarray | None:
        """The mean pattern, or None before any pattern."""
        return self.total / self.n if self.n else None
