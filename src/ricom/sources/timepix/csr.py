"""CSR frames (ASI's sparse stream) into single-electron events, in one compiled pass.

`csr_events` turns the ``indptr`` / ``indices`` / ``values`` of CSR frames into per-event
scan positions and detector coordinates; `CsrBatch` gathers the frames of several
ArrayChunks that were already waiting in the receive buffer and converts them into one
`ricom.core.chunks.EventChunk` (fewer, larger chunks for the engine; the events are the
same, in the same order).
"""
from __future__ import annotations

import numba
import numpy as np

from ricom.core.chunks import EventChunk
from ricom.core.errors import InputError


@numba.njit(nogil=True, cache=True)
def _csr_count(indptr, indices, values, tot):
    """(events, largest pixel index or −1) of CSR frames: the sum of the counts, or one
    event per entry with ToT values; (−1, −1) if ``indptr`` does not rise from 0 to at most
    the entries given or a count is negative (the fill would then write past, or leave
    unwritten, its arrays)."""
    nnz = indptr[indptr.shape[0] - 1]
    if indptr[0] != 0 or nnz > min(indices.shape[0], values.shape[0]):
        return np.int64(-1), np.int64(-1)
    for f in range(indptr.shape[0] - 1):
        if indptr[f + 1] < indptr[f]:
            return np.int64(-1), np.int64(-1)
    n = np.int64(nnz) if tot else np.int64(0)
    top = np.int64(-1)
    for j in range(nnz):
        top = max(top, np.int64(indices[j]))
        if not tot:
            if values[j] < 0:
                return np.int64(-1), np.int64(-1)
            n += np.int64(values[j])
    return n, top


@numba.njit(nogil=True, cache=True)
def _csr_fill(indptr, indices, values, frames, width, tot, out_pos, out_x, out_y, out_tot, off):
    """Write the events of CSR frames at ``out_*[off:]``; returns the end."""
    k = off
    for f in range(indptr.shape[0] - 1):
        p = frames[f]
        for j in range(indptr[f], indptr[f + 1]):
            idx = np.int64(indices[j])
            yy = idx // width
            xx = idx - yy * width
            reps = np.int64(1) if tot else np.int64(values[j])
            for _ in range(reps):
                out_pos[k], out_x[k], out_y[k] = p, xx, yy
                if tot:
                    out_tot[k] = values[j]
                k += 1
    return k


def csr_events(indptr: np.ndarray, indices: np.ndarray, values: np.ndarray, positions: np.ndarray,
               width: int, tot: bool):
    """Events of CSR frames: ``(positions, x, y, tot)`` per event.

    Frame i (``indptr[i] … indptr[i+1]``) is at scan position ``positions[i]``; a count
    v gives v events at its pixel (``tot``: each entry is one event, the value its ToT).
    """
    batch = CsrBatch(width, tot)
    batch.add(indptr, indices, values, np.asarray(positions, np.int64))
    return batch.events()


class CsrBatch:
    """CSR frames of several ArrayChunks, turned into one block of events at the end.

    Parameters
    ----------
    width : int
        Detector columns (pixel index = y·width + x).
    tot : bool
        Values are ToT (one event per entry) instead of counts.
    """

    def __init__(self, width: int, tot: bool) -> None:
        self.width, self.tot = int(width), bool(tot)
        self.parts: list[tuple] = []
        self.n_events = 0

    def __len__(self) -> int:
        return len(self.parts)

    def add(self, indptr, indices, values, frames, n_pixels: int | None = None) -> int:
        """Keep one chunk's frames (the arrays, not copies) unless a pixel index reaches
        ``n_pixels``; returns the largest pixel index (−1: none)."""
        n, top = _csr_count(indptr, indices, values, self.tot)
        if n < 0:
            raise InputError(f"CSR frames whose indptr does not rise from 0 to at most their {len(indices)} "
                             "entries, or with a negative count; the stream is corrupt")
        if n_pixels is None or top < n_pixels:
            self.parts.append((indptr, indices, values, frames))
            self.n_events += int(n)
        return int(top)

    def events(self) -> tuple:
        """``(positions, x, y, tot or None)`` of every kept frame, in order; the batch is empty afterwards."""
        n = self.n_events
        pos, x, y = np.empty(n, np.int64), np.empty(n, np.uint16), np.empty(n, np.uint16)
        tot = np.empty(n if self.tot else 0, np.uint16)
        k = 0
        for indptr, indices, values, frames in self.parts:
            k = _csr_fill(indptr, indices, values, frames, self.width, self.tot, pos, x, y, tot, k)
        self.parts, self.n_events = [], 0
        return pos, x, y, (tot if self.tot else None)

    def chunk(self, positions_done: np.ndarray, received_s: float) -> EventChunk:
        """The kept frames as one `EventChunk` (see `events`)."""
        pos, x, y, tot = self.events()
        out = EventChunk(pos, x, y, None, tot, positions_done)
        out.received_s = received_s
        return out
