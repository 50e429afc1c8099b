"""The compiled Timepix3 / ASI event kernels against independent computations.

Pins what the speed work on the live paths must keep: the raw-packet decoder (any block
split, roll-over, packets before the first time reference), hit placement
(`assign_hits` against a brute-force placement), slot → position, the CSR → events
conversion and the ASI source's joining of ArrayChunks (same events, fewer chunks), and
the pre-encoded ASI simulator (the same bytes as message by message).
"""
from __future__ import annotations

import itertools
import socket
import time
from collections import deque

import numpy as np
import pytest

from ricom.simulators.events import chunked, hit_packets, tdc_packets
from ricom.simulators.timepix.asi import AsiServer
from ricom.sources.timepix.asi import AsiScanSource
from ricom.sources.timepix.assign import assign_hits, slot_position, slots_to_positions
from ricom.sources.timepix.csr import CsrBatch, csr_events
from ricom.sources.timepix.sync import Synchroniser, SyncOptions
from ricom.sources.timepix.tpx3 import HIT_PERIOD_TICKS, Tpx3Decoder, parse_chip_layout

# ---------------------------------------------------------------------------- decoder


def _packets(rng, n: int = 3000):
    """Hits on the 4 chips of a quad (times crossing a ToA roll-over) and TDC edges, in chunks."""
    t = HIT_PERIOD_TICKS - 40_000 * 6 + 6 * np.sort(rng.integers(0, 80_000, n))  # (multiples of 6)
    t = t + 6 * rng.integers(-30, 30, n)  # local reordering
    lx, ly, tot = rng.integers(0, 256, n), rng.integers(0, 256, n), rng.integers(0, 1024, n)
    chips = rng.integers(0, 4, n)
    tdc_t = HIT_PERIOD_TICKS - 30_000 * 6 + 12 * np.arange(0, 60_000, 5000)
    words = np.concatenate([hit_packets(t, lx, ly, tot), tdc_packets(tdc_t, np.arange(tdc_t.size) % 2 == 0,
                                                                      np.arange(tdc_t.size))])
    order = np.argsort(np.concatenate([t, tdc_t]), kind="stable")
    all_chips = np.concatenate([chips, np.zeros(tdc_t.size, np.int64)])[order]
    return chunked(words[order], all_chips, per_chunk=97), (t, lx, ly, tot, chips), tdc_t


def _decode_in_blocks(words, cuts):
    sync = Synchroniser(SyncOptions((4, 4), "dwell", dwell_ns=1e6))
    dec = Tpx3Decoder(parse_chip_layout("cheetah"))
    t, x, y, tot, edges = [], [], [], [], []
    for a, b in itertools.pairwise(cuts):
        bufs, n, et, _, _ = dec.decode(words[a:b], sync)
        for out, buf in zip((t, x, y, tot), bufs, strict=True):
            out.append(buf[:n].copy())
        edges.append(et)
    return [np.concatenate(v) for v in (t, x, y, tot, edges)], dec


def test_decoder_matches_the_encoded_hits_in_any_block_split():
    rng = np.random.default_rng(3)
    words, (t, lx, ly, tot, chips), tdc_t = _packets(rng)
    layout = parse_chip_layout("cheetah")
    ex = layout[chips, 0] + layout[chips, 2] * lx  # chip placement, written out independently
    ey = layout[chips, 1] + layout[chips, 3] * ly
    ref = np.lexsort((tot, ey, ex, t))
    for cuts in ([0, words.size], [0, 1, 2, 97, 98, 1000, words.size],
                 np.unique(np.r_[0, rng.integers(0, words.size, 40), words.size])):
        (dt, dx, dy, dtot, det), dec = _decode_in_blocks(words, list(cuts))
        got = np.lexsort((dtot, dy, dx, dt))
        np.testing.assert_array_equal(dt[got], t[ref])  # unwrapped past the roll-over: times keep growing
        np.testing.assert_array_equal(dx[got], ex[ref])
        np.testing.assert_array_equal(dy[got], ey[ref])
        np.testing.assert_array_equal(dtot[got], tot[ref])
        np.testing.assert_array_equal(np.sort(det), tdc_t)
        assert dec.counters[0] == t.size and dec.counters[1] == tdc_t.size and dec.counters[2:7].sum() == 0
    assert t.max() > HIT_PERIOD_TICKS > t.min()


def test_decoder_hits_before_a_chunk_header_and_of_unplaced_chips():
    rng = np.random.default_rng(4)
    n = 50
    t = 6 * np.sort(rng.integers(10, 10_000, n))
    hits = hit_packets(t, rng.integers(0, 256, n), rng.integers(0, 256, n), np.ones(n, np.int64))
    words = np.concatenate([hits[:5], chunked(hits[5:], np.where(np.arange(n - 5) < 20, 7, 3), 1000)])
    (dt, *_), dec = _decode_in_blocks(words, [0, 3, 6, words.size])
    c = dec.counters  # 5 outside any chunk (still placed: chip 0 of the layout), 20 of chip 7 (unplaced)
    assert c[5] == 5 and c[6] == 20 and c[0] == n - 20 and c[7] == 2
    np.testing.assert_array_equal(np.sort(dt), np.sort(np.r_[t[:5], t[25:]]))


# ---------------------------------------------------------------------------- placement


def _reference_assign(t, horizon, late_before, segs, scan, acceptance):
    """Brute force: each hit's segment by scanning, its column by trying every column."""
    carry, kept, counts = [], [], np.zeros(5, np.int64)
    start, end, dwell, ncols, slot0 = segs
    for i, ti in enumerate(t):
        if ti >= horizon:
            carry.append(i)
            continue
        late = ti < late_before
        counts[3] += late
        s = max((k for k in range(start.size) if start[k] <= ti), default=-1)
        rel = ti - start[s] if s >= 0 else 0
        cols = [c for c in range(ncols[s] + 2) if c * dwell[s] <= rel] if s >= 0 else []
        c = max(cols) if cols else -1
        if s < 0 or ti >= end[s] or c >= ncols[s]:
            counts[0] += 1
            counts[4] += late
            continue
        t_rel = rel - c * dwell[s]
        if t_rel >= acceptance:
            counts[1] += 1
            continue
        p = int(slots_to_positions(np.array([slot0[s] + c]), *scan[:2], scan[2:])[0])
        if p < 0:
            counts[2] += 1
            continue
        kept.append((p, i, t_rel))
    return carry, kept, counts


@pytest.mark.parametrize("acceptance, keep_times", [(np.inf, False), (np.inf, True), (1500.0, False),
                                                    (900.0, True)])
def test_assign_hits_matches_a_brute_force_placement(acceptance, keep_times):
    rng = np.random.default_rng(int(min(acceptance, 1e4)) % 97 + keep_times)
    n_seg = 12
    ncols = rng.integers(1, 6, n_seg)
    dwell = rng.uniform(300.0, 2000.0, n_seg)
    gaps = rng.integers(0, 2, n_seg) * rng.integers(1, 3000, n_seg)
    start = np.cumsum(np.r_[500, (np.ceil(ncols * dwell) + gaps)[:-1]]).astype(np.int64)
    end = start + np.ceil(ncols * dwell).astype(np.int64) - rng.integers(0, 2, n_seg) * 200
    slot0 = np.cumsum(np.r_[0, ncols[:-1]]) + 3
    scan = np.array([5, 7, 3, 5], np.int64)  # skip 5 slots, lines of 7 slots (2 flyback), 3×5 scan
    edges = (start[:, None] + np.ceil(np.arange(6) * dwell[:, None])).ravel().astype(np.int64)
    t = np.sort(np.concatenate([rng.integers(0, end[-1] + 4000, 3000), edges, edges - 1]))  # slot boundaries too
    t += rng.integers(-400, 400, t.size) * (rng.random(t.size) < 0.3)  # in time order, but locally reordered
    horizon, late_before = int(end[-4]), int(start[2])
    n = t.size
    bufs = [t.copy(), np.arange(n, dtype=np.uint16), (np.arange(n) * 7 % 251).astype(np.uint16),
            (np.arange(n) % 1000).astype(np.uint16)]
    out = [np.empty(n, np.int64), np.empty(n, np.uint16), np.empty(n, np.uint16),
           np.empty(n if keep_times else 0, np.float32), np.empty(n if keep_times else 0, np.uint16)]
    counters = np.zeros(5, np.int64)
    n_out, n_carry = assign_hits(*bufs, horizon, late_before, start, end, dwell, ncols, slot0, scan,
                                 np.zeros(0, np.int64), acceptance, 0.5, keep_times, *out, counters)
    carry, kept, counts = _reference_assign(t, horizon, late_before, (start, end, dwell, ncols, slot0), scan,
                                            acceptance)
    np.testing.assert_array_equal(counters, counts)
    assert n_carry == len(carry) and n_out == len(kept) > 0 and counts[0] > 0 and counts[2] > 0 and counts[3] > 0
    assert (counts[1] > 0) == (acceptance < np.inf)
    np.testing.assert_array_equal(bufs[0][:n_carry], t[carry])
    np.testing.assert_array_equal(bufs[1][:n_carry], np.array(carry, np.uint16))
    np.testing.assert_array_equal(out[0][:n_out], [k[0] for k in kept])
    np.testing.assert_array_equal(out[1][:n_out], [k[1] for k in kept])
    if keep_times:
        np.testing.assert_array_equal(out[3][:n_out], np.float32([0.5 * k[2] for k in kept]))
        np.testing.assert_array_equal(out[4][:n_out], [k[1] % 1000 for k in kept])


def test_slot_position_and_the_median_of_durations():
    slots = np.arange(-20, 400)
    for skip, line_len, sy, sx in ((0, 5, 3, 5), (7, 9, 4, 6), (13, 6, 1, 6)):
        ref = slots_to_positions(slots, skip, line_len, (sy, sx))
        assert [slot_position(s, skip, line_len, sy, sx, np.zeros(0, np.int64)) for s in slots] == ref.tolist()
        order = np.random.default_rng(skip).integers(-1, sy * sx, 2 * sy * sx + 3)  # any order, repeats, -1
        listed = slots_to_positions(slots, skip, sx, (sy, sx), order)
        k = slots - skip
        np.testing.assert_array_equal(listed, np.where(k >= 0, order[np.maximum(k, 0) % order.size], -1))
        assert [slot_position(s, skip, sx, sy, sx, order) for s in slots] == listed.tolist()
    sync = Synchroniser(SyncOptions((4, 4), "line"))
    rng = np.random.default_rng(0)
    for n in (1, 2, 7, 64):
        sync._durations = deque(rng.integers(1, 10**12, n).tolist(), maxlen=64)
        assert sync._median() == int(np.median(sync._durations))


# ---------------------------------------------------------------------------- ASI


@pytest.mark.parametrize("tot", [False, True])
def test_csr_events_against_repeat(tot):
    rng = np.random.default_rng(1 + tot)
    nnz_per = rng.integers(0, 9, 11)
    indptr = np.r_[0, np.cumsum(nnz_per)].astype(np.uint32)
    indices = rng.integers(0, 40 * 30, indptr[-1]).astype(np.uint16)
    values = rng.integers(1 if tot else 0, 5, indptr[-1]).astype(np.uint8)
    frames = rng.integers(-1, 100, 11)
    pos, x, y, t = csr_events(indptr, indices, values, frames, 40, tot)
    reps = np.ones_like(values, np.int64) if tot else values.astype(np.int64)
    idx = np.repeat(indices.astype(np.int64), reps)
    np.testing.assert_array_equal(pos, np.repeat(np.repeat(frames, nnz_per), reps))
    np.testing.assert_array_equal(x, idx % 40)
    np.testing.assert_array_equal(y, idx // 40)
    assert (t is None) == (not tot) and (not tot or np.array_equal(t, values))
    batch = CsrBatch(40, tot)  # two chunks in one batch: the events of both, in order
    assert batch.add(indptr, indices, values, frames) == indices.max()
    assert batch.add(indptr, indices, values, frames, n_pixels=int(indices.max())) == indices.max()  # refused
    batch.add(indptr[:4], indices, values, frames[:3])
    both = batch.events()
    n3 = int(reps[:indptr[3]].sum())
    np.testing.assert_array_equal(both[0], np.r_[pos, pos[:n3]])
    np.testing.assert_array_equal(both[1], np.r_[x, x[:n3]])


def test_asi_chunks_already_received_are_joined(monkeypatch):
    rng = np.random.default_rng(2)
    counts = rng.poisson(0.3, (6, 7, 16, 16)).astype(np.uint16)
    with AsiServer(counts, frames_per_chunk=2) as server:
        src = AsiScanSource(host="127.0.0.1", port=server.port)
        time.sleep(0.3)  # the whole scan is in the receive buffer before the first read
        chunks = list(src.chunks())
        src.close()
    assert len(chunks) < 21  # 21 ArrayChunks of 2 frames (one of them holding the last frame)
    pos = np.concatenate([c.positions for c in chunks])
    flat = np.concatenate([c.y.astype(np.int64) * 16 + c.x for c in chunks])
    dense = np.zeros((42, 256), np.int64)
    np.add.at(dense, (pos, flat), 1)
    np.testing.assert_array_equal(dense, counts.reshape(42, 256))
    np.testing.assert_array_equal(np.concatenate([c.positions_done for c in chunks]), np.arange(42))


def test_asi_pre_encoded_scan_is_the_message_by_message_stream():
    rng = np.random.default_rng(6)
    counts = rng.poisson(0.5, (3, 5, 8, 8)).astype(np.uint16)
    streams = []
    for piece in (None, 1 << 30):  # pre-encoded, and sent message by message (max_piece > any message)
        with AsiServer(counts, frames_per_chunk=4, max_piece=piece) as server:
            sock = socket.create_connection(("127.0.0.1", server.port))
            data = b""
            while chunk := sock.recv(1 << 16):
                data += chunk
            sock.close()
        streams.append(data)
    assert streams[0] == streams[1] and len(streams[0]) > 32 * 6


def test_csr_frames_with_a_falling_indptr_are_refused_not_written_past():
    """Found by `make fuzz` (ASI stream, seed 0): an indptr whose uint64 values wrap as int64
    passed the stream's check and the compiled fill wrote past its arrays (a segfault)."""
    from ricom.core.errors import InputError
    from ricom.sources.timepix.csr import CsrBatch, csr_events

    indptr = np.array([0, 109, 7460619488996622557, 14606849918833379720, 455, 663], np.uint64)
    indices, values = np.zeros(663, np.uint16), np.ones(663, np.uint16)
    with pytest.raises(InputError, match="indptr does not rise"):
        CsrBatch(4, tot=True).add(indptr, indices, values, np.arange(5, dtype=np.int64))
    with pytest.raises(InputError, match="negative count"):
        csr_events(np.array([0, 1], np.int64), np.zeros(1, np.int64), np.array([-3], np.int64), [0], 4, False)
    with pytest.raises(InputError):  # more entries claimed than given
        csr_events(np.array([0, 5], np.int64), np.zeros(3, np.int64), np.ones(3, np.int64), [0], 4, False)
    pos, x, y, _ = csr_events(np.array([0, 1, 3], np.int64), np.array([5, 0, 7]), np.array([2, 1, 1]), [4, 9], 4, False)
    assert pos.tolist() == [4, 4, 9, 9] and x.tolist() == [1, 1, 0, 3] and y.tolist() == [1, 1, 0, 1]
