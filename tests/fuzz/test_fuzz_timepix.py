"""Fuzzing the Timepix3 parsers: raw ``.tpx3`` packets and chunks and PIXet ``.t3p``
records (files end to end), the raw packet stream's chunk scanning (from a fake socket),
and the ASI sparse stream's headers and CSR chunks."""
from __future__ import annotations

import json
import os
import shutil
import struct

import numpy as np
import pytest
from e2e import reconstruct
from fuzzkit import INTERESTING, FakeSocket, apply, bounded, edits, fuzz, reads
from hypothesis import example, given
from hypothesis import strategies as st

from ricom.simulators.events import write_events
from ricom.simulators.timepix.asi import (
    acquisition_end,
    acquisition_start,
    array_chunk,
    dense_to_csr,
    scan_end,
    scan_start,
)
from ricom.sources.merlin.stream import StreamBuffer
from ricom.sources.timepix.asi import MAX_COUNT, AsiConnection, AsiScanSource
from ricom.sources.timepix.stream import Tpx3StreamSource

SCAN, DET = (4, 4), (16, 16)
MAGIC = 0x33585054


def _counts(seed=0):
    rng = np.random.default_rng(seed)
    return rng.poisson(0.6, (SCAN[0] * SCAN[1], *DET)).astype(np.int64)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Seed files written by the project's event writer, and their sidecars."""
    folder = tmp_path_factory.mktemp("events")
    frames, positions = _counts(), np.arange(SCAN[0] * SCAN[1])
    out = {}
    for name, fmt, sync in (("line.tpx3", "tpx3", "line"), ("pixel.tpx3", "tpx3", "pixel"), ("a.t3p", "t3p", "line")):
        path = str(folder / name)
        write_events(path, [(frames, positions)], SCAN, DET, fmt, chip_layout="single", sync=sync, jitter_ns=200.0)
        with open(path, "rb") as fh:
            out[name] = fh.read()
        with open(path + ".ricom.json") as fh:  # the sidecar is named after the whole file name
            out[name + ".json"] = json.load(fh)
    out["folder"] = folder
    return out


def _word(kind: str, value: int, chip: int) -> int:
    """A packet of ``kind`` with fields from ``value`` (a chunk header of any size, a TDC edge
    of any kind and time, a hit anywhere, a global-time or unknown packet)."""
    if kind == "chunk":
        return MAGIC | (chip & 0xFF) << 32 | (value & 0xFFFF) << 48
    if kind == "tdc":
        return 0x6 << 60 | (value & ((1 << 60) - 1))
    if kind == "hit":
        return 0xB << 60 | (value & ((1 << 60) - 1))
    if kind == "global":
        return 0x4 << 60 | (value & ((1 << 60) - 1))
    return value


@st.composite
def word_edits(draw, n_words: int):
    out = []
    for _ in range(draw(st.integers(0, 3))):
        kind = draw(st.sampled_from(("chunk", "tdc", "hit", "global", "any")))
        value = draw(st.sampled_from(INTERESTING) | st.integers(0, (1 << 64) - 1))
        out.append((draw(st.integers(0, max(0, n_words - 1))), _word(kind, value, draw(st.integers(0, 4)))))
    return out


def _mutated_words(data: bytes, todo, byte_todo) -> bytes:
    words = np.frombuffer(data, "<u8").copy()
    for i, w in todo:
        if words.size:
            words[i % words.size] = np.uint64(w % (1 << 64))
    return apply(words.tobytes(), byte_todo)


@st.composite
def tpx3_bytes(draw, seeds):
    name = draw(st.sampled_from(seeds))
    return name, draw(word_edits(5000)), draw(edits(40000, 2))


def _tpx3_input(files, name, todo, byte_todo) -> bytes:
    return _mutated_words(files[name], todo, byte_todo)


def _place(files, name: str, data: bytes) -> str:
    folder = files["folder"]
    ext = os.path.splitext(name)[1]
    path = str(folder / f"fuzz{ext}")
    with open(path, "wb") as fh:
        fh.write(data)
    shutil.copyfile(str(folder / (name + ".ricom.json")), path + ".ricom.json")
    return path


def test_seed_inputs_are_complete(files):
    """The fuzz tests start from inputs that reconstruct completely, without a warning."""
    n = SCAN[0] * SCAN[1]
    for name in ("line.tpx3", "pixel.tpx3", "a.t3p"):
        out = bounded(lambda nm=name: reconstruct(_place(files, nm, files[nm])), len(files[name]))
        assert out.error is None and out.value.complete and len(out.value.covered) == n and not out.warnings
    for name in ("line.tpx3", "pixel.tpx3"):
        out = bounded(lambda nm=name: _stream(files[nm], [1 << 16], files[nm + ".json"]), len(files[name]))
        assert out.error is None and out.value == n and not out.warnings
    for data in ASI[:3]:
        out = bounded(lambda d=data: _asi(d, [1 << 16]), len(data))
        assert out.error is None and out.value > 0 and not out.warnings


@fuzz(60)
@given(tpx3_bytes(("line.tpx3", "pixel.tpx3")))
def test_tpx3_files_end_to_end(files, case):
    name, todo, byte_todo = case
    data = _tpx3_input(files, name, todo, byte_todo)
    path = _place(files, name, data)
    out = bounded(lambda: reconstruct(path), len(data))
    if out.error is None:
        assert out.value.complete or out.value.flagged or out.flagged, "a partial result without an error or a warning"


@st.composite
def record_edits(draw, n_records: int):
    out = []
    for _ in range(draw(st.integers(0, 3))):
        field = draw(st.sampled_from(((0, 4), (4, 8), (12, 1), (13, 1), (14, 2))))
        value = draw(st.sampled_from(INTERESTING) | st.integers(0, (1 << 64) - 1))
        out.append((draw(st.integers(0, max(0, n_records - 1))), field, value))
    return out


@fuzz(60)
@given(record_edits(2000), edits(30000, 2))
@example([(0, (4, 8), (1 << 31) - 1)], [])  # a ToA 53 s late opened 13 million dwell lines (5 GB)
@example([(0, (4, 8), (1 << 63) - 1)], [])  # … or 10^15 of them
@example([], [("truncate", 16, None)])  # one record of 16 positions: was silently partial
def test_t3p_files_end_to_end(files, todo, byte_todo):
    rec = bytearray(files["a.t3p"])
    n = len(rec) // 16
    for i, (off, width), value in todo:
        at = 16 * (i % n) + off
        rec[at:at + width] = (value % (1 << (8 * width))).to_bytes(width, "little")
    data = apply(bytes(rec), byte_todo)
    path = _place(files, "a.t3p", data)
    out = bounded(lambda: reconstruct(path), len(data))
    if out.error is None:
        assert out.value.complete or out.value.flagged or out.flagged, "a partial result without an error or a warning"


def _stream(data: bytes, sizes, side: dict) -> int:
    source = Tpx3StreamSource(FakeSocket(data, sizes), tuple(side["events"]["scan_shape"]),
                              sync=side["events"]["sync"], chip_layout="single", block_bytes=1 << 16,
                              dwell_ns=side["events"]["dwell_ns"])
    done = set()
    for chunk in source.chunks():
        if chunk.positions_done is not None:
            done.update(np.asarray(chunk.positions_done).tolist())
    assert len(done) >= source.n_frames, f"{len(done)} of {source.n_frames} positions without an error"
    return len(done)


@fuzz(60)
@given(tpx3_bytes(("line.tpx3", "pixel.tpx3")), st.binary(max_size=24), reads())
def test_tpx3_stream_chunk_scanning(files, case, lead, sizes):
    name, todo, byte_todo = case
    data = lead + _tpx3_input(files, name, todo, byte_todo)
    bounded(lambda: _stream(data, sizes, files[name + ".json"]), len(data))


# ---------------------------------------------------------------------------- ASI sparse stream
def _asi_seed(fmt: int = 0, codes=(4, 4, 2), offsets: bool = True, cancel: bool = False) -> bytes:
    frames = _counts(1)
    ip_code, ix_code, v_code = codes
    dt = {2: "<u1", 3: "<u2", 4: "<u4", 5: "<u8"}
    out = [acquisition_start(SCAN, DET, ip_code, ix_code, fmt=fmt), scan_start(1)]
    for first in range(0, len(frames), 6):
        indptr, indices, values = dense_to_csr(frames[first:first + 6])
        ip, ix, v = (a.astype(dt[c]).tobytes() for a, c in ((indptr, ip_code), (indices, ix_code), (values, v_code)))
        io, vo = (len(ip), len(ip) + len(ix)) if offsets else (0, 0)
        out += [array_chunk(v_code, len(indptr) - 1, len(indices), io, vo), ip, ix, v]
        if cancel:
            out.append(acquisition_end(1))
    out += [scan_end(1), acquisition_end(1)]
    return b"".join(out)


def _asi_single_count(value: int) -> bytes:
    """A scan of one ArrayChunk whose one pixel counted ``value`` (U64 values)."""
    payload = np.array([0, 1, 3], "<u4").tobytes() + np.array([value], "<u8").tobytes()
    return (acquisition_start(SCAN, DET, 4, 4) + scan_start(1) + array_chunk(5, 1, 1, 0, 0) + payload + scan_end(1)
            + acquisition_end(1))


ASI = [_asi_seed(), _asi_seed(1, (5, 3, 3)), _asi_seed(offsets=False), _asi_seed(cancel=True)]


def _asi(data: bytes, sizes) -> int:
    conn = AsiConnection.__new__(AsiConnection)
    conn.host, conn.port, conn.sock = "fuzz", 0, None
    conn.stream = StreamBuffer(FakeSocket(data, sizes), None, None)
    conn.acquisition, conn.scan_sequence, conn.lost, conn.scans = None, None, False, 0
    conn.wait_for_scan()
    source = AsiScanSource(conn)
    events = 0
    for chunk in source.chunks():
        events += len(chunk.positions)
    assert source.frames_received >= source.n_frames, \
        f"{source.frames_received} of {source.n_frames} frames without an error"
    return events


ASI_PER_BYTE = 40 * MAX_COUNT // 3
"""A count of up to MAX_COUNT in 3 bytes (U8 index, U16 value) gives as many events of ~40 bytes."""


@st.composite
def asi_bytes(draw):
    seed = draw(st.sampled_from(ASI))
    header = draw(st.lists(st.tuples(st.integers(0, len(seed) // 32), st.integers(1, 28),
                                     st.sampled_from(INTERESTING) | st.integers(0, (1 << 32) - 1),
                                     st.sampled_from((1, 2, 4))), max_size=2))
    b = bytearray(seed)
    for k, off, value, width in header:  # a header field (if the 32 bytes at k·32 are a header)
        at = min(32 * k + off, len(b) - width)
        b[at:at + width] = (value % (1 << (8 * width))).to_bytes(width, "little")
    return apply(bytes(b), draw(edits(len(seed), 2)))


@fuzz(120)
@given(asi_bytes(), reads())
@example(acquisition_start(SCAN, DET, 4, 4) + struct.pack("<BIQ", 1, 1, 1 << 48).ljust(32, b"\0"), [1 << 16])
@example(_asi_single_count((1 << 64) - 1), [1 << 16])
@example(_asi_single_count(5), [1 << 16])  # a ScanEnd after 1 of 16 frames
def test_asi_sparse_stream(data, sizes):
    bounded(lambda: _asi(data, sizes), len(data), per_byte=ASI_PER_BYTE)
