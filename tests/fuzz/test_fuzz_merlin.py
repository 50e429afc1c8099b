"""Fuzzing the Merlin parsers: MIB frame headers and decoding, ``.mib``/``.hdr`` files end
to end, and the live ``MPX`` framing of the data port (from a fake socket)."""
from __future__ import annotations

import datetime as dt
import os
import types
import zipfile

import numpy as np
import pytest
from e2e import reconstruct
from fuzzkit import FakeSocket, bounded, fuzz, mutants, reads
from hypothesis import given
from hypothesis import strategies as st

from ricom.sources.merlin.control import mpx_prefix
from ricom.sources.merlin.encode import encode_frames
from ricom.sources.merlin.hdr import acquisition_scan_shape, make_acquisition_header, parse_acquisition_header
from ricom.sources.merlin.live import MerlinLiveSource
from ricom.sources.merlin.mib import check_frames, decode_frames, parse_frame_header
from ricom.sources.merlin.stream import StreamBuffer

WHEN = dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc)
SCAN = (2, 3)


def _frames(shape, depth, n=SCAN[0] * SCAN[1], seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, min(2 ** depth, 50), (n, *shape)).astype(np.uint32)


def _mib(shape, depth, raw, quad=False, n=SCAN[0] * SCAN[1], gap=False):
    return encode_frames(_frames(shape, depth, n), depth, raw, quad, timestamp=WHEN, gap=gap)


SEED_DEPTHS = [6, 12, 24, 1, 6, 12, 24]
"""Counter depth of each seed (its ``.hdr`` must say the same, or the reader rightly warns)."""
SEEDS = [_mib((8, 8), 6, False), _mib((8, 8), 12, False), _mib((4, 8), 24, False), _mib((8, 8), 1, True),
         _mib((8, 8), 6, True), _mib((8, 8), 12, True), _mib((8, 8), 24, True)]
QUAD = [_mib((512, 512), 1, True, quad=True, n=2), _mib((514, 514), 1, False, quad=True, n=1, gap=True)]


def _real(archive: str, member: str) -> list[bytes]:
    """A real Merlin file from ``../shared/data/merlin_real`` (none when the data are absent)."""
    path = os.path.join(SHARED_MERLIN, archive)
    if not os.path.exists(path):
        return []
    with zipfile.ZipFile(path) as z:
        return [z.read(member)]


SHARED_MERLIN = os.path.join(os.path.dirname(__file__), "..", "..", "..", "shared", "data", "merlin_real")
REAL = (_real("Merlin_Single_Quad.zip", "Single_1_Frame_CounterDepth_1_Rows_256RAW.mib")
        + _real("Merlin_Single_Quad.zip", "Quad_1_Frame_CounterDepth_1_Rows_256RAW.mib")
        + _real("Merlin_navigation4x2_signalNx256_ROI.zip",
                "003_merlin_test_roi_sig256x64_nav4x2_hot_pixel_52x_39y.mib"))
"""Real frames (raw single and quad chips, a row-ROI processed scan) as seeds besides the encoder's."""
HDR = make_acquisition_header(SCAN[0] * SCAN[1], SCAN, depth=6, timestamp=WHEN.replace(tzinfo=None)).encode()


def _decode_all(buf: bytes):
    header = parse_frame_header(buf)
    n = min(len(buf) // header.frame_bytes, 8)
    check_frames(buf, header, n)
    return decode_frames(buf, header, n)


@fuzz(200)
@given(mutants(SEEDS + QUAD + REAL, max_edits=3))
def test_frame_headers_and_decoding(buf):
    bounded(lambda: _decode_all(buf), len(buf))


@fuzz(120)
@given(mutants([HDR], max_edits=4), st.integers(0, 1 << 20), st.integers(0, 3))
def test_acquisition_header(text, n_frames, flyback):
    def parse():
        fields = parse_acquisition_header(text)
        return acquisition_scan_shape(fields, n_frames, flyback)
    bounded(parse, len(text))


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return tmp_path_factory.mktemp("mib")


def _write(folder, name: str, data: bytes) -> str:
    path = os.path.join(folder, name)
    with open(path, "wb") as fh:
        fh.write(data)
    return path


def test_seed_files_and_streams_are_complete(folder):
    """The fuzz tests start from inputs that reconstruct completely, without a warning."""
    for mib, depth in zip(SEEDS, SEED_DEPTHS, strict=True):
        _write(folder, "scan.hdr", make_acquisition_header(SCAN[0] * SCAN[1], SCAN, depth=depth,
                                                           timestamp=WHEN.replace(tzinfo=None)).encode())
        out = bounded(lambda m=mib: reconstruct(_write(folder, "scan.mib", m)), len(mib))
        assert out.error is None and out.value.complete and not out.warnings
        assert len(out.value.covered) == SCAN[0] * SCAN[1]
    for data in STREAMS:
        out = bounded(lambda d=data: _live(d, [1 << 16]), len(data))
        assert out.error is None and out.value in (6, 2)


@fuzz(80)
@given(mutants(SEEDS[:1] + SEEDS[3:5], max_edits=3), mutants([HDR], max_edits=2), st.booleans())
def test_mib_files_end_to_end(folder, mib, hdr, with_hdr):
    path = _write(folder, "scan.mib", mib)
    hdr_path = os.path.join(folder, "scan.hdr")
    if with_hdr:
        _write(folder, "scan.hdr", hdr)
    elif os.path.exists(hdr_path):
        os.remove(hdr_path)
    options = {} if with_hdr else {"scan_shape": SCAN}
    out = bounded(lambda: reconstruct(path, **options), len(mib) + len(hdr))
    if out.error is None:
        assert out.value.complete or out.value.flagged or out.flagged, "a partial result without an error or a warning"


def _stream(frames_bytes: bytes, hdr: bytes = HDR, stale: bytes = b"") -> bytes:
    header = parse_frame_header(frames_bytes)
    fb = header.frame_bytes
    msgs = [stale, mpx_prefix(len(hdr)), hdr]
    for i in range(len(frames_bytes) // fb):
        msgs += [mpx_prefix(fb), frames_bytes[i * fb:(i + 1) * fb]]
    return b"".join(msgs)


STREAMS = [_stream(SEEDS[0]), _stream(SEEDS[3]), _stream(SEEDS[1], stale=b"MPX,00000"),
           _stream(QUAD[0], hdr=make_acquisition_header(2, (1, 2), depth=1, quad=True).encode())]


def _live(data: bytes, sizes) -> int:
    stream = StreamBuffer(FakeSocket(data, sizes), None, None)
    conn = types.SimpleNamespace(stream=stream, host="fuzz", port=0, lost=False, close=lambda: None)
    source = MerlinLiveSource(connection=conn, max_latency=0.0)
    try:
        n = 0
        for chunk in source.chunks(4):
            n += len(chunk.positions)
        assert source.n_frames is None or source.frames_received >= source.n_frames, \
            f"{source.frames_received} of {source.n_frames} frames without an error"
        return n
    finally:
        source.close()


@fuzz(100)
@given(mutants(STREAMS, max_edits=3), reads())
def test_live_framing(data, sizes):
    bounded(lambda: _live(data, sizes), len(data))


def test_damaged_header_bytes_give_a_one_line_error():
    """Found by ``make fuzz`` (example ~44 600 of 10⁵): control bytes in the first frame's header
    (here a newline in the chip-layout field) came back verbatim in the error message."""
    buf = bytearray(SEEDS[0])
    at = bytes(buf).index(b"1x1") - 3  # the first frame's layout field; the later frames then differ from it
    buf[at:at + 3] = b"\x01\n "
    out = bounded(lambda: _decode_all(bytes(buf)), len(buf))
    assert out.error is not None and "\n" not in str(out.error)
