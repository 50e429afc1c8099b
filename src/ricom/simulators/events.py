"""Event files from count data: ``.tpx3``, ``.t3p`` and ricom's HDF5 event layout.

`write_events` turns 4D-STEM counts, delivered as bands of scan rows, into single-electron
events as a Timepix3 would record them: one event per count, arriving uniformly within
the dwell time of its position (at the 1.5625 ns ToA resolution), scan lines framed by
TDC1 rising/falling edges (``.tpx3``), the chips of a quad layout, and packets shuffled
within ``jitter_ns`` (hits arrive out of order).  ``ricom simulate events`` uses it on
the built-in specimen or on a count array; the readers are in `ricom.sources`.

All times are whole ticks of 3.125/12 ns, and dwell and line gap are rounded to whole
1.5625 ns steps, so every event falls strictly inside its position's time window.
"""
from __future__ import annotations

import json
import os
from collections.abc import Iterable

import numpy as np

from ricom.core.errors import InputError, SettingsError
from ricom.core.sidecar import sidecar_path
from ricom.io.outputs import atomic_path
from ricom.sources.events_h5 import EventsH5Writer
from ricom.sources.timepix.sync import TICK_NS
from ricom.sources.timepix.t3p import RECORD
from ricom.sources.timepix.tpx3 import layout_shape, parse_chip_layout

FORMATS = ("tpx3", "t3p", "h5")
_HIT_TICKS = 6  # 1.5625 ns


def counts_to_events(frames: np.ndarray, positions: np.ndarray):
    """One event per count: ``(position, row, column)`` arrays, in position order."""
    frames = np.asarray(frames)
    if frames.dtype.kind not in "ui":
        raise InputError(f"event generation needs integer counts, got {frames.dtype}; simulate with a dose")
    k, dy, dx = frames.shape
    flat = frames.reshape(k, dy * dx)
    idx, pix = np.nonzero(flat)
    n = flat[idx, pix].astype(np.int64)
    pos = np.repeat(np.asarray(positions, np.int64)[idx], n)
    y, x = np.divmod(np.repeat(pix, n), dx)
    return pos, y, x


def chip_lookup(layout: np.ndarray):
    """Per detector pixel: (chip, chip column, chip row); chip −1 where no chip is."""
    shape = layout_shape(layout)
    chip = np.full(shape, -1, np.int64)
    lx, ly = np.zeros(shape, np.int64), np.zeros(shape, np.int64)
    yy, xx = np.indices((256, 256))
    for c, (ox, oy, sx, sy, tr) in enumerate(layout):
        a, b = (yy, xx) if tr else (xx, yy)  # chip (x, y) before the optional swap
        gx, gy = ox + sx * a, oy + sy * b
        chip[gy, gx], lx[gy, gx], ly[gy, gx] = c, xx, yy
    return chip, lx, ly


def _pack(*fields) -> np.ndarray:
    """Words from ``(value, bit offset)`` pairs (values already masked to their width)."""
    out = np.zeros(np.broadcast(*(v for v, _ in fields)).shape, np.uint64)
    for value, shift in fields:
        out |= np.asarray(value).astype(np.uint64) << np.uint64(shift)
    return out.view(np.int64)


def hit_packets(t_ticks, lx, ly, tot) -> np.ndarray:
    """Timepix3 pixel-hit words (type 0xB) for times in ticks (multiples of 6)."""
    t = np.asarray(t_ticks, np.int64)
    coarse = -(-t // 96)
    ftoa = (coarse * 96 - t) // _HIT_TICKS
    coarse &= (1 << 30) - 1
    addr = ((lx >> 1) << 9) | ((ly >> 2) << 3) | ((lx & 1) << 2) | (ly & 3)
    return _pack((np.full(t.shape, 0xB), 60), (addr, 44), (coarse & 0x3FFF, 30), (np.asarray(tot) & 0x3FF, 20),
                 (ftoa, 16), (coarse >> 14, 0))


def tdc_packets(t_ticks, rising, counter) -> np.ndarray:
    """TDC1 rise (0x6F) / fall (0x6A) words."""
    t = np.asarray(t_ticks, np.int64)
    return _pack((np.full(t.shape, 6), 60), (np.where(rising, 0xF, 0xA), 56),
                 (np.asarray(counter, np.int64) & 0xFFF, 44), ((t // 12) & ((1 << 35) - 1), 9), (t % 12 + 1, 5))


def chunked(words: np.ndarray, chips: np.ndarray, per_chunk: int = 512) -> np.ndarray:
    """Wrap words (in stream order) in SERVAL chunks: per block of ``per_chunk`` words, one chunk per chip."""
    block = np.arange(words.shape[0]) // per_chunk
    order = np.lexsort((chips, block))
    words, chips, block = words[order], chips[order], block[order]
    new = np.ones(words.shape[0], bool)
    new[1:] = (block[1:] != block[:-1]) | (chips[1:] != chips[:-1])
    starts = np.flatnonzero(new)
    sizes = np.diff(np.append(starts, words.shape[0]))
    out = np.empty(words.shape[0] + starts.shape[0], np.int64)
    at = starts + np.arange(starts.shape[0])
    out[at] = 0x33585054 | (chips[starts] << 32) | ((sizes * 8) << 48)
    keep = np.ones(out.shape[0], bool)
    keep[at] = False
    out[keep] = words
    return out


class _EventWriter:
    """Turns bands of counts into timed events and hands them to a format."""

    def __init__(self, path, fmt, scan_shape, detector_shape, dwell_ns, line_gap_ns, start_ns, jitter_ns,
                 chip_layout, seed, attrs, sync="line"):
        self.fmt, self.scan_shape, self.path, self.sync = fmt, tuple(scan_shape), path, sync
        self.rng = np.random.default_rng(seed)
        self.dwell = max(1, round(dwell_ns / 1.5625)) * _HIT_TICKS
        self.gap = max(0, round(line_gap_ns / 1.5625)) * _HIT_TICKS if fmt == "tpx3" else 0
        self.t0 = round(start_ns / 1.5625) * _HIT_TICKS
        self.jitter = jitter_ns / TICK_NS
        self.offset = (0, 0)
        self.n_events = 0
        if fmt in ("tpx3", "t3p"):
            self.layout = parse_chip_layout(chip_layout or ("cheetah" if fmt == "tpx3" else "single"))
            full = layout_shape(self.layout)
            if detector_shape[0] > full[0] or detector_shape[1] > full[1]:
                raise SettingsError(f"patterns of {detector_shape[0]}×{detector_shape[1]} do not fit the "
                                    f"{full[0]}×{full[1]} detector of the chip layout")
            self.offset = ((full[0] - detector_shape[0]) // 2, (full[1] - detector_shape[1]) // 2)
            self.chip, self.lx, self.ly = chip_lookup(self.layout)
            self.fh = open(path, "wb")
        else:
            self.h5 = EventsH5Writer(path, scan_shape, detector_shape, self.dwell * 3.125 / 12, with_times=True,
                                     with_tot=True, attrs=attrs)

    def add(self, frames, positions) -> None:
        pos, y, x = counts_to_events(frames, positions)
        sx = self.scan_shape[1]
        row, col = np.divmod(pos, sx)
        line_t = sx * self.dwell + self.gap
        t_rel = self.rng.integers(0, self.dwell // _HIT_TICKS, pos.shape[0]) * _HIT_TICKS
        t = self.t0 + row * line_t + col * self.dwell + t_rel
        tot = self.rng.integers(5, 60, pos.shape[0])
        self.n_events += pos.shape[0]
        if self.fmt == "h5":
            self.h5.append(pos, x.astype(np.float32), y.astype(np.float32), (t_rel * TICK_NS).astype(np.float32),
                           tot.astype(np.uint16) * 25)
            return
        gy, gx = y + self.offset[0], x + self.offset[1]
        chip, lx, ly = self.chip[gy, gx], self.lx[gy, gx], self.ly[gy, gx]
        if self.fmt == "t3p":
            order = np.argsort(t + self.rng.uniform(0, self.jitter, t.shape[0]), kind="stable")
            coarse = -(-t // 96)
            rec = np.empty(t.shape[0], RECORD)
            rec["index"], rec["toa"], rec["overflow"] = ly * 256 + lx, coarse, chip
            rec["ftoa"], rec["tot"] = (coarse * 96 - t) // _HIT_TICKS, tot
            rec[order].tofile(self.fh)
            return
        if self.sync == "pixel":  # one rising edge per probe position
            p = np.asarray(positions, np.int64)
            edges = self.t0 + (p // sx) * line_t + (p % sx) * self.dwell
            is_rise, counter = np.ones(p.shape[0], bool), p
        else:  # TDC1 rises at the start of each line, falls at its end
            rows = np.unique(np.asarray(positions, np.int64) // sx)
            rise = self.t0 + rows * line_t
            edges = np.concatenate([rise, rise + sx * self.dwell])
            is_rise = np.repeat([True, False], rows.shape[0])
            counter = 2 * np.tile(rows, 2) + ~is_rise
        words = np.concatenate([hit_packets(t, lx, ly, tot), tdc_packets(edges, is_rise, counter)])
        chips = np.concatenate([chip, np.zeros(edges.shape[0], np.int64)])
        all_t = np.concatenate([t, edges]).astype(np.float64)
        order = np.argsort(all_t + self.rng.uniform(0, self.jitter, all_t.shape[0]), kind="stable")
        chunked(words[order], chips[order]).astype("<i8").tofile(self.fh)

    def close(self) -> None:
        if self.fmt == "h5":
            self.h5.close()
        else:
            self.fh.close()


def write_events(path: str, bands: Iterable, scan_shape, detector_shape, fmt: str | None = None, *,
                 dwell_ns: float = 1000.0, line_gap_ns: float = 2000.0, start_ns: float = 0.0,
                 jitter_ns: float = 500.0, chip_layout=None, seed: int = 0, calibration: dict | None = None,
                 extra: dict | None = None, sync: str = "line") -> dict:
    """Write counts as an event file (and, for ``.tpx3``/``.t3p``, a ``.ricom.json`` sidecar).

    Parameters
    ----------
    path : str
        Output file (written atomically).
    bands : iterable of (frames, positions)
        Integer counts ``(k, det_y, det_x)`` at flat positions, whole scan rows in scan order
        (as `ricom.simulators.specimen.simulate_chunks` yields them).
    scan_shape, detector_shape : (int, int)
        Of the counts.
    fmt : {"tpx3", "t3p", "h5"}, optional
        Default: from the extension of ``path``.
    dwell_ns, line_gap_ns, start_ns, jitter_ns : float
        Dwell per position; dead time between lines (``.tpx3``, where TDC1 frames each
        line); time of the first position (set it near 26.84 s to cross a ToA roll-over);
        maximum lateness of packets in the stream.
    sync : {"line", "pixel"}
        ``.tpx3`` triggers: TDC1 rises and falls framing each line, or one TDC1 rise per
        probe position (a pixel clock).
    chip_layout : optional
        ``.tpx3``: default ``"cheetah"`` (quad, 512×512); ``.t3p``: ``"single"``.  The
        patterns are centred on the detector.
    calibration : dict, optional
        ``step_A``, ``pixel_size_mrad``, ``energy_keV``, ``center_yx`` (pattern pixels).

    Returns
    -------
    dict
        The ``events`` section of the sidecar (scan shape, dwell, sync, offset, events).
    """
    fmt = (fmt or os.path.splitext(path)[1].lstrip(".")).lower()
    fmt = "h5" if fmt == "hdf5" else fmt
    if fmt not in FORMATS:
        raise SettingsError(f"event format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    if sync not in ("line", "pixel"):
        raise SettingsError(f"event file sync must be 'line' or 'pixel', got {sync!r}")
    cal = dict(calibration or {})
    with atomic_path(path) as tmp:
        attrs = {k: v for k, v in cal.items() if v is not None}
        if extra:
            attrs["metadata_json"] = json.dumps(extra, default=str)
        w = _EventWriter(tmp, fmt, scan_shape, detector_shape, dwell_ns, line_gap_ns, start_ns, jitter_ns,
                         chip_layout, seed, attrs, sync)
        try:
            for frames, positions in bands:
                w.add(frames, positions)
        finally:
            w.close()
    if cal.get("center_yx") is not None:
        cal["center_yx"] = [float(c) + o for c, o in zip(cal["center_yx"], w.offset, strict=True)]
    info = {"format": fmt, "scan_shape": list(w.scan_shape), "dwell_ns": w.dwell * 3.125 / 12,
            "line_gap_ns": w.gap * 3.125 / 12, "start_ns": w.t0 * 3.125 / 12, "jitter_ns": float(jitter_ns),
            "sync": sync if fmt == "tpx3" else "dwell", "detector_offset": list(w.offset),
            "n_events": int(w.n_events)}
    if fmt == "h5":  # the HDF5 layout carries scan shape, dwell and calibration itself
        return info
    info["chip_layout"] = w.layout.tolist()
    _write_sidecar(path, cal, info, extra)
    return info


def _write_sidecar(path: str, calibration: dict, info: dict, extra: dict | None) -> None:
    """The ``.ricom.json`` beside an event file: calibration, the ``events`` section, ``extra``."""
    side = sidecar_path(path)
    with atomic_path(side) as tmp, open(tmp, "w") as fh:
        json.dump({"calibration": calibration, "events": info, **(extra or {})}, fh, indent=1, default=str)
