"""Scan bookkeeping of a live acquisition: what was expected, what came, what is empty.

A live result must not be silently wrong.  `count_scan` compares three things — the
scan shape in use (given, or from the acquisition header), the header's own scan shape
and frame count, and the frames actually received — and says in one line what does not
add up (`ScanCount.problem`); frames that arrived twice were dropped by the source and
are counted (`ScanCount.n_duplicates`, `ScanCount.note`).  The frontends warn about a disagreement at the start
(`shape_problem`) and end with a non-zero exit status when the count is inconsistent,
unless the user asked to pad (fewer frames than positions: the rest stay empty) or to
crop (frames beyond one pass are ignored).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class ScanCount:
    """What a live acquisition delivered against what its scan needs.

    Attributes
    ----------
    scan_shape : (int, int)
        The scan shape the frames were placed on.
    header_scan_shape : (int, int) or None
        The scan shape of the acquisition header (None: it gives none).
    n_expected : int or None
        Frames the acquisition announced (None: continuous).
    n_needed : int
        Frames one pass of the scan takes (with skipped and flyback frames).
    n_received : int
        Frames received.
    n_missing : int
        Frames announced (or needed) but not received.
    empty_positions : ndarray of int
        Flat scan positions without any pattern (that the scan order visits).
    problem : str or None
        Why the count does not add up (None: it does).
    n_duplicates : int
        Frames that arrived a second time with the same frame number; the source dropped
        them (a duplicate is never added twice at its position, whatever ``repeats``).
    n_unvisited : int
        Scan positions a listed scan order (``scan_positions``) never visits; they stay
        empty by design and are not among ``empty_positions``.
    """

    scan_shape: tuple[int, int]
    header_scan_shape: tuple[int, int] | None
    n_expected: int | None
    n_needed: int
    n_received: int
    n_missing: int
    empty_positions: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    problem: str | None = None
    n_duplicates: int = 0
    n_unvisited: int = 0

    @property
    def consistent(self) -> bool:
        return self.problem is None

    @property
    def note(self) -> str | None:
        """What was received but not used (duplicates), in one line; None if nothing."""
        if not self.n_duplicates:
            return None
        return f"{self.n_duplicates} frames arrived a second time and were dropped (not added twice)"

    def as_attrs(self) -> dict:
        """The counts as result-file attributes."""
        return {"n_expected": -1 if self.n_expected is None else self.n_expected, "n_needed": self.n_needed,
                "n_received": self.n_received, "n_missing": self.n_missing,
                "n_empty_positions": int(self.empty_positions.size), "empty_positions": self.empty_positions,
                "n_duplicates": self.n_duplicates, "n_unvisited_positions": self.n_unvisited,
                "scan_consistent": self.consistent,
                "scan_problem": self.problem or ""}


def shape_problem(scan_shape, header_scan_shape, n_expected: int | None, n_needed: int, *, pad: bool = False,
                  crop: bool = False) -> str | None:
    """Why the scan shape in use does not fit the acquisition header (None: it fits).

    Examples
    --------
    >>> shape_problem((256, 256), (64, 64), 4096, 65536)
    'the scan shape 256×256 disagrees with the acquisition header (64×64, 4096 frames)'
    >>> shape_problem((256, 256), (64, 64), 4096, 65536, pad=True) is None
    True
    """
    sy, sx = scan_shape
    header = f" ({header_scan_shape[0]}×{header_scan_shape[1]}, " if header_scan_shape else " ("
    if header_scan_shape is not None and tuple(header_scan_shape) != tuple(scan_shape):
        if not ((pad and (n_expected or 0) <= n_needed) or (crop and (n_expected or 0) >= n_needed)):
            return f"the scan shape {sy}×{sx} disagrees with the acquisition header{header}{n_expected} frames)"
    if n_expected is None or n_expected == n_needed:
        return None
    if n_expected < n_needed and not pad:
        return (f"the acquisition has {n_expected} frames but a {sy}×{sx} scan needs {n_needed}; "
                f"the last positions stay empty")
    if n_expected > n_needed and not crop and n_expected % n_needed:
        return (f"the acquisition has {n_expected} frames, more than the {n_needed} of a {sy}×{sx} scan "
                f"and not a whole number of passes")
    return None


def source_shape_problem(source, *, pad: bool = False) -> str | None:
    """`shape_problem` of a live source: its scan shape and layout against its header."""
    layout = source.layout
    return shape_problem(source.scan_shape, getattr(source, "header_scan_shape", None), source.n_frames,
                         layout.skip_frames + layout.frames_per_pass, pad=pad, crop=getattr(source, "crop", False))


def count_scan(reconstruction, source, *, pad: bool = False) -> ScanCount:
    """The bookkeeping of one received acquisition (see `ScanCount`)."""
    layout = source.layout
    n_needed = layout.skip_frames + layout.frames_per_pass
    n_expected = source.n_frames
    received = int(source.frames_received)
    target = n_expected if n_expected is not None else n_needed
    hits = reconstruction.moments.hits
    visited = layout.visited() if getattr(layout, "order", None) is not None else np.ones(hits.size, bool)
    empty = np.flatnonzero((hits == 0) & visited).astype(np.int64)
    problem = source_shape_problem(source, pad=pad)
    if problem is None and received < target:
        problem = f"{target - received} of {target} frames did not arrive"
    return ScanCount(tuple(source.scan_shape), getattr(source, "header_scan_shape", None), n_expected, n_needed,
                     received, max(0, target - received), empty, problem,
                     int(getattr(source, "frames_duplicated", 0)), int(np.count_nonzero(~visited)))
