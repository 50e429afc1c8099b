"""ADVACAM PIXet ``.t3p`` event lists as an event source.

No header; 16-byte little-endian records (``../shared/FORMATS.md`` §3): uint32 pixel
index (x = i % 256, y = i // 256 on the chip), uint64 ToA (25 ns), uint8 overflow (the
chip index on multi-chip devices, placed by the chip layout of `ricom.sources.timepix.tpx3`),
uint8 FToA (1.5625 ns, subtracted), uint16 ToT.  Time = 25·ToA − 1.5625·FToA.

There is no trigger information: the probe's slot is (time − ``start_ns``) // dwell (a
raster, or the k-th point of a listed scan order, ``scan_positions``), so ``dwell_ns``
and the scan shape must be given (or come from the ``.ricom.json`` written by ``ricom
simulate events``).  Records need not be in time order within ``order_window_ns``.
"""
from __future__ import annotations

import os

import numba
import numpy as np

from ricom.core.errors import InputError, Message, Param, SettingsError
from ricom.core.scan_positions import scan_positions_from
from ricom.sources.timepix.plausible import precheck_begin, precheck_end, precheck_hit
from ricom.sources.timepix.sidecar import read_event_sidecar, scan_shape_of
from ricom.sources.timepix.sync import DEFAULT_ORDER_WINDOW_NS, SyncOptions
from ricom.sources.timepix.tpx3 import TimedEventSource, layout_shape, parse_chip_layout

RECORD = np.dtype([("index", "<u4"), ("toa", "<u8"), ("overflow", "u1"), ("ftoa", "u1"), ("tot", "<u2")])
"""One ``.t3p`` record (16 bytes)."""


@numba.njit(nogil=True, cache=True)
def _decode(index, toa, chip, ftoa, tot_in, layout, t, x, y, tot, off, counters, screen):
    """Records → hits at ``t/x/y/tot[off:]``; returns (hits written, latest hit time so far).

    ``counters`` += [hits, hits of chips the layout does not place, bad pixel indices];
    ``screen``: the synchroniser's time-outlier state, pre-checked on the way
    (`ricom.sources.timepix.plausible`).
    """
    gap = screen[3]
    sref, ahead = precheck_begin(screen)
    n = off
    n_chips = layout.shape[0]
    for i in range(index.shape[0]):
        c = np.int64(chip[i])
        k = np.int64(index[i])
        if c >= n_chips:
            counters[1] += 1
            continue
        if k >= 65536:
            counters[2] += 1
            continue
        xl = k & 255
        yl = k >> 8
        if layout[c, 4]:
            xl, yl = yl, xl
        tt = 96 * np.int64(toa[i]) - 6 * np.int64(ftoa[i])
        t[n] = tt
        x[n] = layout[c, 0] + layout[c, 2] * xl
        y[n] = layout[c, 1] + layout[c, 3] * yl
        tot[n] = tot_in[i]
        sref, ahead = precheck_hit(tt, sref, ahead, gap)  # (also the latest hit time)
        n += 1
    counters[0] += n - off
    precheck_end(screen, sref, ahead, n - off)
    return n - off, sref


class T3pSource(TimedEventSource):
    """Events from a PIXet ``.t3p`` file.

    Not splittable (`read_range` raises): the dwell clock counts positions, and which
    positions are complete, from the first record on.

    Parameters
    ----------
    path : str
        The file.
    scan_shape : (int, int)
        (SY, SX).
    dwell_ns : float
        Time per probe position.
    acceptance_ns : float, optional
        Keep only hits this soon after the probe reached their position.
    chip_layout : optional
        ``"auto"`` (default): the overflow byte is the chip index if any record has a
        non-zero one (then ``cheetah``), else ``single``; see `parse_chip_layout`.
    skip_frames, flyback_frames, start_ns, order_window_ns, keep_times
        See `ricom.sources.timepix.sync.SyncOptions` (``skip_frames`` counts positions).
    scan_positions : ScanPositions, str or array, optional
        The scan order (`ricom.core.scan_positions`): the k-th dwell slot is at the k-th
        listed position.
    block_records : int
        Records decoded per block.
    """

    range_note = Message("its dwell clock counts scan positions from the first record, so a part of it cannot be "
                         "placed on its own; reconstruct it on one machine (without ", Param("client"), ")")

    def __init__(self, path: str, scan_shape=None, dwell_ns=None, acceptance_ns=None, chip_layout=None,
                 skip_frames: int = 0, flyback_frames: int = 0, start_ns: float = 0.0,
                 order_window_ns: float = DEFAULT_ORDER_WINDOW_NS, keep_times: bool = False,
                 block_records: int = 1 << 20, scan_positions=None, **_ignored) -> None:
        self.name = path
        size = os.path.getsize(path)
        self._tail = size % RECORD.itemsize
        if size < RECORD.itemsize:
            raise InputError(f"{path}: the file holds no .t3p records ({size} bytes)")
        self._rec = np.memmap(path, dtype=RECORD, mode="r", shape=(size // RECORD.itemsize,))
        self.n_frames = int(self._rec.shape[0])
        side, self._hints = read_event_sidecar(path, "t3p")
        chip_layout = chip_layout or side.get("chip_layout") or "auto"
        if isinstance(chip_layout, str) and chip_layout == "auto":
            chip_layout = "cheetah" if self._rec["overflow"][: 1 << 20].any() else "single"
        self.layout = parse_chip_layout(chip_layout)
        self.detector_shape = layout_shape(self.layout)
        scan_shape = scan_shape_of(path, scan_shape, side)
        dwell_ns = dwell_ns or side.get("dwell_ns")
        if scan_shape is None or not dwell_ns:
            raise SettingsError(f"{path}: a .t3p file stores neither scan shape nor dwell time; give ",
                                Param("scan_shape", form=True), " and ", Param("dwell_ns", form=True))
        self.scan_shape = scan_shape
        self.sync_options = SyncOptions(self.scan_shape, "dwell", dwell_ns, acceptance_ns, 0, skip_frames,
                                        flyback_frames, start_ns, order_window_ns, keep_times,
                                        scan_positions_from(scan_positions))
        self.block_records = int(block_records)
        self._counters = np.zeros(3, np.int64)

    def _blocks(self, sync):
        no_edges = np.zeros(0, np.int64), np.zeros(0, bool)
        latest = None
        for start in range(0, self._rec.shape[0], self.block_records):
            block = np.asarray(self._rec[start:start + self.block_records])
            bufs, off = sync.buffers(block.shape[0])
            n, last = _decode(block["index"], block["toa"], block["overflow"], block["ftoa"], block["tot"],
                              self.layout, *bufs, off, self._counters, sync.screen_state)
            if n:
                latest = last if latest is None else max(latest, int(last))
            yield bufs, off + n, *no_edges, latest

    def _extra_warnings(self) -> list[str]:
        out = []
        if self._counters[1]:
            out.append(f"{self._counters[1]} records came from chips the chip layout does not place")
        if self._counters[2]:
            out.append(f"{self._counters[2]} records had a pixel index beyond 65535 (not a .t3p file?)")
        if self._tail:
            out.append(f"the file ends in a partial record ({self._tail} bytes ignored): truncated?")
        return out

    def describe(self) -> dict:
        return {**super().describe(), "chip_layout": self.layout.tolist(), "records": self.n_frames}

    def close(self) -> None:
        self._rec = np.zeros(0, RECORD)


def open(spec: str, **options) -> T3pSource:
    """Open a ``.t3p`` file; options as `T3pSource`."""
    if not os.path.exists(spec):
        raise InputError(f"input {spec!r} does not exist")
    return T3pSource(spec, **options)
