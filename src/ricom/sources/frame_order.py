"""The frame numbers of a live stream: where frames are missing, which arrive twice.

A detector numbers its frames (Merlin sequence numbers, DECTRIS image ids).  `FrameOrder`
follows them across chunks: frames that skip numbers leave holes (counted as lost until a
late frame fills its hole), and a frame whose number already arrived is a duplicate —
dropped (its position set to −1) and counted, so it is never added twice.  The messages
name the frame where a jump happened, not the start of the chunk it came in.
"""
from __future__ import annotations

import bisect

import numpy as np


class FrameOrder:
    """Frame numbers seen so far in one acquisition (0-based indices, in arrival order).

    Parameters
    ----------
    label : str
        What the numbers are called in messages (``"Merlin frame sequence numbers"``).
    number : str
        One of them (``"sequence number"``).
    wire_offset : int
        Added to an index to give the number on the wire (Merlin counts from 1, DECTRIS from 0).

    Examples
    --------
    >>> order = FrameOrder("sequence numbers", "sequence number", wire_offset=1)
    >>> keep, notes = order.accept(np.array([0, 1, 4, 4, 2]))
    >>> keep.tolist(), order.lost, order.duplicates
    ([True, True, True, False, True], 1, 1)
    >>> notes[0]
    'sequence numbers jump from 2 to 5 at frame 3 (2 frames lost, or out of order); missing positions stay empty'
    >>> notes[1]
    '1 frames arrived a second time (sequence number 5 first); each duplicate is dropped and counted, not added twice'
    """

    def __init__(self, label: str, number: str, wire_offset: int = 0) -> None:
        self.label, self.number, self.wire_offset = label, number, int(wire_offset)
        self.next = 0
        """One past the highest index accepted (the frames counted as received)."""
        self.lost = 0
        """Indices skipped that have not arrived (yet)."""
        self.duplicates = 0
        """Frames dropped because their number had already arrived."""
        self._holes: list[list[int]] = []  # [start, stop) of missing indices below `next`, sorted

    def accept(self, idx: np.ndarray) -> tuple[np.ndarray | None, list[str]]:
        """Take the indices of the next frames; returns which to keep (None: all, the usual
        case, checked without a per-frame loop) and the messages to warn with."""
        idx = np.asarray(idx, np.int64)
        if len(idx) and idx[0] == self.next and (len(idx) == 1 or bool((np.diff(idx) == 1).all())):
            self.next = int(idx[-1]) + 1
            return None, []
        keep = np.ones(len(idx), bool)
        jump, missing, dup_first = None, 0, None
        for k, x in enumerate(idx.tolist()):  # irregular chunks only
            if x >= self.next:
                if x > self.next:
                    jump = jump or (self.next - 1, x)
                    missing += x - self.next
                    self.lost += x - self.next
                    self._holes.append([self.next, x])
                self.next = x + 1
            elif x >= 0 and self._fill(x):
                self.lost -= 1
            else:
                keep[k] = False
                self.duplicates += 1
                dup_first = x if dup_first is None else dup_first
        notes = []
        if jump is not None:
            a, b = (v + self.wire_offset for v in jump)
            notes.append(f"{self.label} jump from {a} to {b} at frame {jump[0] + 2} ({missing} frames lost, "
                         f"or out of order); missing positions stay empty")
        if dup_first is not None:
            n = int((~keep).sum())
            notes.append(f"{n} frames arrived a second time ({self.number} {dup_first + self.wire_offset} first); "
                         f"each duplicate is dropped and counted, not added twice")
        return keep, notes

    def _fill(self, x: int) -> bool:
        """Take ``x`` out of the holes; False if it is in none (it arrived before)."""
        k = bisect.bisect_right(self._holes, [x, np.iinfo(np.int64).max]) - 1
        if k < 0 or not self._holes[k][0] <= x < self._holes[k][1]:
            return False
        a, b = self._holes[k]
        self._holes[k:k + 1] = [h for h in ([a, x], [x + 1, b]) if h[1] > h[0]]
        return True


__all__ = ["FrameOrder"]
