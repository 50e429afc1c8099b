"""Timepix3 raw ``.tpx3`` files (SERVAL's raw output) as an event source.

The file is a stream of little-endian 64-bit words (``../shared/FORMATS.md`` §3): chunk
headers (``"TPX3"``, chip index, chunk size) followed by that chip's packets — pixel hits
(type 0xB, also 0xA), TDC trigger edges (0x6), global time (0x44/0x45) and control
packets (0x5, 0x7).  `Tpx3Decoder` turns blocks of words into hits (time, detector x, y,
ToT) and trigger edges in a compiled loop; its state carries over blocks, so the same
decoder serves files and the same bytes arriving over TCP.

Roll-over: ToA rolls over every 26.84 s, the TDC every 107.37 s.  Every timestamp is
unwrapped to the 26.84 s period nearest the latest time seen, which holds as long as hits
arrive less than 13 s late.  Chips are placed by a chip layout: for chip ``c`` a row
``(ox, oy, sx, sy, transpose)`` gives detector ``x = ox + sx·x_chip``,
``y = oy + sy·y_chip`` (after swapping x and y if ``transpose``).  ``"cheetah"`` (the
default for several chips) is an ASI CheeTah quad, ``"single"`` one 256×256 chip.

Scan synchronisation, dose control and out-of-order hits: `ricom.sources.timepix.sync`.
"""
from __future__ import annotations

import os
import warnings

import numba
import numpy as np

from ricom.core.errors import InputError, Message, Param, SettingsError
from ricom.core.scan_positions import scan_positions_from
from ricom.sources.base import Source
from ricom.sources.timepix.plausible import precheck_begin, precheck_end, precheck_hit
from ricom.sources.timepix.sidecar import read_event_sidecar, scan_shape_of
from ricom.sources.timepix.sync import DEFAULT_ORDER_WINDOW_NS, Synchroniser, SyncOptions

CHEETAH_LAYOUT = ((256, 0, 1, 1, 0), (511, 511, -1, -1, 0), (255, 511, -1, -1, 0), (0, 0, 1, 1, 0))
"""ASI CheeTah quad: chip 0 at (x+256, y), 1 at (511−x, 511−y), 2 at (255−x, 511−y), 3 at (x, y)."""
LAYOUTS = {"cheetah": CHEETAH_LAYOUT, "quad": CHEETAH_LAYOUT, "single": ((0, 0, 1, 1, 0),)}
TRIGGERS = {"tdc1": (0xF, 0xA), "tdc2": (0xE, 0xB)}
"""TDC packet kinds (rising, falling edge) of each trigger input."""
HIT_PERIOD_TICKS = 96 << 30
"""ToA roll-over (2^30 × 25 ns) in ticks of 3.125/12 ns."""
_MAGIC = 0x33585054  # "TPX3"


def parse_chip_layout(spec) -> np.ndarray:
    """Chip layout as an ``(n_chips, 5)`` int64 array from a name, rows, or a string.

    ``spec`` is ``"cheetah"``/``"quad"``, ``"single"``, a sequence of
    ``(ox, oy, sx, sy[, transpose])`` rows, or the same as text ``"256,0,1,1;511,511,-1,-1;…"``.
    """
    if isinstance(spec, str):
        if spec.lower() in LAYOUTS:
            spec = LAYOUTS[spec.lower()]
        else:
            try:
                spec = [[int(v) for v in row.split(",")] for row in spec.split(";") if row.strip()]
            except ValueError:
                raise SettingsError(f"chip layout {spec!r}: give 'cheetah', 'single' or rows "
                                    f"'ox,oy,sx,sy[,transpose];…'") from None
    rows = [list(r) + [0] * (5 - len(r)) for r in spec]
    if not rows or any(len(r) != 5 or r[2] not in (1, -1) or r[3] not in (1, -1) for r in rows):
        raise SettingsError("chip layout rows are (ox, oy, sx, sy[, transpose]) with sx, sy = ±1")
    layout = np.array(rows, np.int64)
    corners = np.array([[0, 0], [255, 255]])
    xs = layout[:, :1] + layout[:, 2:3] * corners[:, 0]
    ys = layout[:, 1:2] + layout[:, 3:4] * corners[:, 1]
    if xs.min() < 0 or ys.min() < 0:
        raise SettingsError("chip layout places pixels at negative detector coordinates")
    return layout


def layout_shape(layout: np.ndarray) -> tuple[int, int]:
    """Detector shape (rows, columns) covered by a chip layout."""
    ext = np.abs(layout[:, 2:4]) * 255
    return int((layout[:, 1] + np.where(layout[:, 3] > 0, ext[:, 1], 0)).max() + 1), \
        int((layout[:, 0] + np.where(layout[:, 2] > 0, ext[:, 0], 0)).max() + 1)


@numba.njit(nogil=True, cache=True, inline="always")
def _hit_raw(w):
    """A pixel hit's ToA in ticks (coarse 25 ns · 96 − fine 1.5625 ns · 6), before unwrapping."""
    return 96 * (((w & 0xFFFF) << 14) | ((w >> 30) & 0x3FFF)) - 6 * ((w >> 16) & 0xF)


@numba.njit(nogil=True, cache=True, inline="always")
def _unwrap(raw, base, latest, period):
    """``(time, base, latest)``: ``raw`` in the roll-over period nearest ``latest``; ``base``
    (a multiple of the period) follows the latest time (closed form: no per-hit loop)."""
    tt = base + raw
    if tt - latest > period // 2:
        tt -= period
    elif latest - tt > period // 2:
        tt += period
    latest = max(latest, tt)
    if latest >= base + period:
        base = (latest // period) * period
    return tt, base, latest


@numba.njit(nogil=True, cache=True, inline="always")
def _store_hit(w, tt, nh, ox, oy, sx, sy, tr, t, x, y, tot):
    """Write hit ``w`` at time ``tt`` as entry ``nh`` (unsigned: no negative-index check)."""
    a = (w >> 44) & 0xFFFF
    xl = ((a & 0xFE00) >> 8) + ((a & 7) >> 2)
    yl = ((a & 0x1F8) >> 1) + (a & 3)
    if tr:
        xl, yl = yl, xl
    k = np.uint64(nh)
    t[k] = tt
    x[k] = ox + sx * xl
    y[k] = oy + sy * yl
    tot[k] = (w >> 20) & 0x3FF


# Long on purpose: one compiled pass over the packets with the decoder state in locals (the hot loop).
@numba.njit(nogil=True, cache=True)
def _decode(words, layout, state, t, x, y, tot, off, tdc_t, tdc_kind, counters, screen):
    """Decode packets into hits at ``t/x/y/tot[off:]`` and TDC edges; returns (hits, tdcs).

    ``state`` = [chip, words left in chunk, latest time, have time, base, latest hit time,
    global time, 0]; ``counters`` += [hits, tdc, unknown, global time, control, outside a
    chunk, hits of unknown chips, chunk headers, chunks cut short].  Pixel hits inside a
    chunk of a placed chip (nearly every packet) take a short path first.  ``screen``: the
    synchroniser's time-outlier state, pre-checked on the way (`ricom.sources.timepix.plausible`).
    """
    period = np.int64(96) << 30
    gap = screen[3]
    sref, ahead = precheck_begin(screen)
    chip, left, latest, have, base, latest_hit, gtime = state[0], state[1], state[2], state[3], state[4], \
        state[5], state[6]
    nh = off
    nt = 0
    n_chips = layout.shape[0]
    c0 = chip if chip < n_chips else 0  # the chunk may go on from the previous block
    ox, oy, sx, sy, tr = layout[c0, 0], layout[c0, 1], layout[c0, 2], layout[c0, 3], layout[c0, 4]
    placed = chip < n_chips
    for i in range(words.shape[0]):
        w = words[i]
        typ = (w >> 60) & 0xF
        if left > 0 and (typ == 0xB or typ == 0xA) and placed and have != 0:
            left -= 1
            tt, base, latest = _unwrap(_hit_raw(w), base, latest, period)
            sref, ahead = precheck_hit(tt, sref, ahead, gap)  # (also the latest hit time: see the end)
            _store_hit(w, tt, nh, ox, oy, sx, sy, tr, t, x, y, tot)
            nh += 1
            continue
        if (w & 0xFFFFFFFF) == _MAGIC and (left == 0 or (typ != 0xB and typ != 0xA and typ != 6)):
            counters[8] += left > 0
            counters[7] += 1
            chip = (w >> 32) & 0xFF
            left = ((w >> 48) & 0xFFFF) // 8
            placed = chip < n_chips
            if placed:
                ox, oy, sx, sy, tr = layout[chip, 0], layout[chip, 1], layout[chip, 2], layout[chip, 3], \
                    layout[chip, 4]
            continue
        if left > 0:
            left -= 1
        else:
            counters[5] += 1
        if typ == 0xB or typ == 0xA or typ == 6:
            if typ == 6:
                raw = (12 * ((w >> 9) & 0x7FFFFFFFF) + max(((w >> 5) & 0xF) - 1, 0)) % period
            else:
                raw = _hit_raw(w)
            if have == 0:
                have, latest, latest_hit = 1, raw, raw
                base = (raw // period) * period
            tt, base, latest = _unwrap(raw, base, latest, period)
            if typ == 6:
                counters[1] += 1
                kind = (w >> 56) & 0xF
                if kind == 0xF or kind == 0xA or kind == 0xE or kind == 0xB:
                    tdc_t[nt] = tt
                    tdc_kind[nt] = kind
                    nt += 1
                else:
                    counters[2] += 1
            elif not placed:
                counters[6] += 1
            else:
                _store_hit(w, tt, nh, ox, oy, sx, sy, tr, t, x, y, tot)
                nh += 1
                sref, ahead = precheck_hit(tt, sref, ahead, gap)
        elif typ == 4 and ((w >> 56) & 0xF) == 4:
            gtime = (gtime & ~np.int64(0xFFFFFFFF)) | ((w >> 16) & 0xFFFFFFFF)
            counters[3] += 1
        elif typ == 4 and ((w >> 56) & 0xF) == 5:
            gtime = (gtime & 0xFFFFFFFF) | (((w >> 16) & 0xFFFF) << 32)
            counters[3] += 1
        elif typ == 5 or typ == 7:
            counters[4] += 1
        else:
            counters[2] += 1
    state[0], state[1], state[2], state[3], state[4], state[5], state[6] = chip, left, latest, have, base, \
        latest_hit, gtime
    counters[0] += nh - off
    if nh > off:  # the latest of the block's hits (and of the kept times before)
        state[5] = max(state[5], sref)
    precheck_end(screen, sref, ahead, nh - off)
    return nh - off, nt


@numba.njit(nogil=True, cache=True)
def _survey(words, chips, kinds):
    """Count chunk headers per chip and TDC packets per kind (to pick layout and sync); returns the
    number of pixel-hit packets."""
    left = hits = 0
    for i in range(words.shape[0]):
        w = words[i]
        if left == 0 and (w & 0xFFFFFFFF) == _MAGIC:
            chips[(w >> 32) & 0xFF] += 1
            left = ((w >> 48) & 0xFFFF) // 8
            continue
        left = max(left - 1, 0)
        typ = (w >> 60) & 0xF
        if typ == 6:
            kinds[(w >> 56) & 0xF] += 1
        hits += typ == 0xB or typ == 0xA
    return hits


class Tpx3Decoder:
    """Stateful decoder of raw Timepix3 words (file blocks or a TCP stream)."""

    def __init__(self, layout: np.ndarray, trigger: str = "tdc1") -> None:
        if trigger not in TRIGGERS:
            raise SettingsError(f"trigger must be one of {', '.join(TRIGGERS)}, got {trigger!r}")
        self.layout = layout
        self.rise, self.fall = TRIGGERS[trigger]
        self.state = np.zeros(8, np.int64)
        self.counters = np.zeros(9, np.int64)

    def decode(self, words: np.ndarray, sync):
        """Decode ``words`` (int64 view) into the synchroniser's buffers; see `TimedEventSource._blocks`."""
        bufs, off = sync.buffers(words.shape[0])
        tdc_t = np.empty(words.shape[0], np.int64)
        tdc_k = np.empty(words.shape[0], np.uint8)
        nh, nt = _decode(words, self.layout, self.state, *bufs, off, tdc_t, tdc_k, self.counters, sync.screen_state)
        k = tdc_k[:nt]
        edge = (k == self.rise) | (k == self.fall)
        max_hit = int(self.state[5]) if self.counters[0] else None
        return bufs, off + nh, tdc_t[:nt][edge], k[edge] == self.rise, max_hit

    def report(self) -> list[str]:
        """Warnings about the packets seen so far."""
        c, out = self.counters, []
        if c[2]:
            out.append(f"{c[2]} packets of unknown type were skipped (not Timepix3 raw data in places?)")
        if c[6]:
            out.append(f"{c[6]} hits came from chips the chip layout does not place; give chip_layout")
        if c[5] and c[7]:
            out.append(f"{c[5]} packets lay outside any chunk (corrupt chunk sizes?)")
        if c[8]:
            out.append(f"{c[8]} chunks were cut short by the next chunk header (lost packets)")
        return out


class TimedEventSource(Source):
    """Base of event files whose hits carry times (``.tpx3``, ``.t3p``).

    Subclasses set ``name``, ``scan_shape``, ``detector_shape``, ``n_frames`` (packets or
    records, for progress), ``sync_options`` and implement `_blocks`.
    """

    kind = "events"
    name = "events"
    sync_options: SyncOptions
    _sync: Synchroniser | None = None
    _received_s: float | None = None
    """When the bytes of the latest block arrived (`time.perf_counter`; live streams, for latency)."""

    def _blocks(self, sync: Synchroniser):
        """Yield ``(bufs, n_hits, edges_t, edges_rise, max_hit)`` per decoded block (``max_hit``, the
        decoder's latest hit time, is not used: the synchroniser takes it after screening the times)."""
        raise NotImplementedError

    def _extra_warnings(self) -> list[str]:
        return []

    @property
    def scan_positions(self):
        """The scan order (`ricom.core.scan_positions.ScanPositions`; None: a raster)."""
        return self.sync_options.scan_positions

    def _check_end(self) -> None:
        """After the last chunk: raise `InputError` if the data ended early (live streams)."""

    def chunks(self, chunk_size: int = 256):
        sync = self._sync = Synchroniser(self.sync_options)
        for bufs, n, et, er, _ in self._blocks(sync):
            chunk = sync.feed(bufs, n, et, er)
            if chunk.positions.size or chunk.positions_done.size:
                if self._received_s is not None:
                    chunk.received_s = self._received_s
                yield chunk
        bufs, n = sync.buffers(0)
        yield sync.feed(bufs, n, np.zeros(0, np.int64), np.zeros(0, bool), final=True)
        for msg in self._extra_warnings() + sync.warnings:
            warnings.warn(f"{self.name}: {msg}", stacklevel=2)
        if self.sync_options.acceptance_ns:
            d = self.describe()
            dwell = d["dwell_ns"] if d["dwell_ns"] is not None else float("nan")
            warnings.warn(f"{self.name}: acceptance {d['acceptance_ns']:g} ns of a {dwell:.6g} ns "
                          f"dwell kept {d['events_kept']} events: mean dose "
                          f"{d['mean_dose_e_per_position']:.4g} e/position", stacklevel=2)
        self._check_end()

    def describe(self) -> dict:
        out = {**super().describe(), "name": self.name, "sync": self.sync_options.mode,
               "acceptance_ns": self.sync_options.acceptance_ns}
        sync = self._sync
        if sync is None:
            return {**out, "dwell_ns": self.sync_options.dwell_ns}
        c = sync.counts
        out.update({"dwell_ns": sync.measured_dwell_ns(), "events_decoded": c["hits"],
                    "events_kept": c["kept"], "positions_done": c["positions_done"],
                    "mean_dose_e_per_position": c["kept"] / c["positions_done"] if c["positions_done"] else 0.0,
                    "dropped_outside_scan": c["outside"] + c["skipped"],
                    "dropped_by_acceptance": c["rejected"], "late_hits": c["late"],
                    "warnings": self._extra_warnings() + list(sync.warnings)})
        return out


class Tpx3Source(TimedEventSource):
    """Events from a raw ``.tpx3`` file.

    Not splittable (`read_range` raises): a hit's scan position depends on the line or
    pixel triggers and ToA roll-overs counted from the start of the file, and a chip's
    packets carry no chip index of their own (it is in the chunk header before them).

    Parameters
    ----------
    path : str
        The file.
    scan_shape : (int, int)
        (SY, SX); from ``<stem>.ricom.json`` if the file was made by ``ricom simulate events``.
    sync : {"auto", "line", "pixel", "dwell"}
        Scan synchronisation; ``auto`` picks ``line`` if the trigger input has rising and
        falling edges, ``pixel`` if only rising ones, else ``dwell`` (needs ``dwell_ns``).
    dwell_ns, acceptance_ns : float, optional
        Dwell time per position; keep only hits this soon after the probe arrived.
    trigger : {"tdc1", "tdc2"}
        The trigger input of the scan.
    chip_layout : str or sequence, optional
        See `parse_chip_layout`; ``"auto"``: one chip → ``single``, more → ``cheetah``.
    skip_lines, skip_frames, flyback_frames, start_ns, order_window_ns, keep_times
        See `ricom.sources.timepix.sync.SyncOptions`.
    scan_positions : ScanPositions, str or array, optional
        The scan order (`ricom.core.scan_positions`): the k-th pixel trigger (dwell slot; in
        line sync column k % SX of line k // SX) is at the k-th listed position.
    block_packets : int
        Packets decoded per block (memory ≈ 22 bytes per packet).
    """

    range_note = Message("the scan position of a hit depends on the triggers and ToA roll-overs counted from the "
                         "start of the file (sync state), so a part of it cannot be placed on its own; reconstruct "
                         "it on one machine (without ", Param("client"), ")")

    def __init__(self, path: str, scan_shape=None, sync: str = "auto", dwell_ns=None, acceptance_ns=None,
                 trigger: str = "tdc1", chip_layout=None, skip_lines: int = 0, skip_frames: int = 0,
                 flyback_frames: int = 0, start_ns: float = 0.0, order_window_ns: float = DEFAULT_ORDER_WINDOW_NS,
                 keep_times: bool = False, block_packets: int = 1 << 20, scan_positions=None, **_ignored) -> None:
        self.name = path
        size = os.path.getsize(path)
        self._tail = size % 8
        if size < 8:
            raise InputError(f"{path}: the file holds no Timepix3 packets ({size} bytes)")
        self._words = np.memmap(path, dtype="<i8", mode="r", shape=(size // 8,))
        self.n_frames = int(self._words.shape[0])
        side, self._hints = read_event_sidecar(path, "tpx3")
        chips, kinds = np.zeros(256, np.int64), np.zeros(16, np.int64)
        hits = _survey(np.asarray(self._words[: 1 << 22]), chips, kinds)
        if hits and not chips.any():  # every hit would land on chip 0, wherever it was
            raise InputError(f"{path}: {hits:,} pixel hits but no TPX3 chunk headers in its first "
                             f"{min(size // 8, 1 << 22):,} packets: not a Serval raw file, or its headers were lost")
        chip_layout = chip_layout or side.get("chip_layout") or "auto"
        if isinstance(chip_layout, str) and chip_layout == "auto":
            chip_layout = "single" if chips[1:].sum() == 0 else "cheetah"
        self.layout = parse_chip_layout(chip_layout)
        self.detector_shape = layout_shape(self.layout)
        self.trigger = trigger
        rise, fall = TRIGGERS.get(trigger, (0xF, 0xA))
        scan_shape = scan_shape_of(path, scan_shape, side)
        if scan_shape is None:
            raise SettingsError(f"{path}: a .tpx3 file does not store the scan shape; give ",
                                Param("scan_shape", form=True))
        self.scan_shape = scan_shape
        if sync == "auto":
            sync = side.get("sync") or ("line" if kinds[rise] and kinds[fall] else
                                        "pixel" if kinds[rise] else "dwell")
            if sync == "dwell" and not dwell_ns and not side.get("dwell_ns"):
                raise SettingsError(f"{path}: no {trigger.upper()} triggers in the first 32 MB; give ",
                                    Param("dwell_ns"), " for dwell-time synchronisation (or the trigger input)")
        if dwell_ns is None and sync == "dwell":
            dwell_ns = side.get("dwell_ns")
        self.sync_options = SyncOptions(self.scan_shape, sync, dwell_ns, acceptance_ns, skip_lines, skip_frames,
                                        flyback_frames, start_ns, order_window_ns, keep_times,
                                        scan_positions_from(scan_positions))
        self.block_packets = int(block_packets)
        self._decoder: Tpx3Decoder | None = None

    def _blocks(self, sync):
        self._decoder = dec = Tpx3Decoder(self.layout, self.trigger)
        for start in range(0, self._words.shape[0], self.block_packets):
            yield dec.decode(np.asarray(self._words[start:start + self.block_packets]), sync)

    def _extra_warnings(self) -> list[str]:
        out = self._decoder.report() if self._decoder is not None else []
        if self._decoder is not None and self._decoder.state[1] > 0:
            out.append(f"the last chunk is cut short ({self._decoder.state[1]} packets missing): the file "
                       f"is truncated; the events before are kept")
        if self._tail:
            out.append(f"the file ends in a partial packet ({self._tail} bytes ignored): truncated?")
        return out

    def describe(self) -> dict:
        out = {**super().describe(), "chip_layout": self.layout.tolist(), "trigger": self.trigger}
        if self._decoder is not None:
            keys = ("hits", "tdc", "unknown", "global_time", "control", "outside_chunks", "unplaced_hits",
                    "chunks", "cut_chunks")
            out["packets"] = dict(zip(keys, self._decoder.counters.tolist(), strict=True))
        return out

    def close(self) -> None:
        self._words = np.zeros(0, np.int64)


def open(spec: str, **options) -> Tpx3Source:
    """Open a ``.tpx3`` file; options as `Tpx3Source`."""
    if not os.path.exists(spec):
        raise InputError(f"input {spec!r} does not exist")
    return Tpx3Source(spec, **options)
