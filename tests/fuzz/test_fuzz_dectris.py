"""Fuzzing the DECTRIS stream parsers: V1 (JSON parts and blobs) and V2 (CBOR, with the fast
path `ricom.sources.dectris.cbor_fast.image_parts`) series from a fake connection, end to end
through the pipeline; the image codecs (raw, LZ4 block, HDF5-framed LZ4 and bitshuffle-LZ4)
and the pixel mask on their own."""
from __future__ import annotations

import collections

import numpy as np
from e2e import run_source
from fuzzkit import INTERESTING, apply, bounded, edits, fuzz, mutants
from hypothesis import example, given
from hypothesis import strategies as st

from ricom.simulators.dectris import encode
from ricom.sources.dectris.cbor_fast import image_parts
from ricom.sources.dectris.codec import Encoding, decode_blobs
from ricom.sources.dectris.live import DectrisLiveSource
from ricom.sources.dectris.mask import PixelMask
from ricom.sources.dectris.stream_v1 import V1Protocol
from ricom.sources.dectris.stream_v2 import V2Protocol

SCAN, DET = (3, 3), (8, 8)
N = SCAN[0] * SCAN[1]


def _frames(dtype="<u2", seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 40, (N, *DET)).astype(dtype)


def _mask():
    m = np.zeros(DET, "<u4")
    m[1, 2], m[5, 5] = 1, 1 << 4
    return m


class FakeConnection:
    """The part of `ricom.sources.dectris.connection.StreamConnection` a source uses, over a
    list of messages; it has been silent for long when they run out."""

    host, port, where, stop, lost = "fuzz", 0, "fuzz:0", None, False

    def __init__(self, messages) -> None:
        self._pending = collections.deque(messages)

    def stopped(self) -> bool:
        return False

    def push_back(self, message) -> None:
        self._pending.appendleft(message)

    def recv(self, timeout):
        return self._pending.popleft() if self._pending else None

    def recv_batch(self, limit: int, timeout):
        out = []
        while self._pending and len(out) < limit:
            out.append(self._pending.popleft())
        return out

    def idle_s(self) -> float:
        return 1e9

    def close(self) -> None:
        pass


def _v1_series(compression: str, detail: str = "all", split: bool = False, series: int = 5) -> list:
    config = {"nimages": 1, "ntrigger": N, "bit_depth_image": 16, "trigger_mode": "exte",
              "x_pixels_in_detector": DET[1], "y_pixels_in_detector": DET[0]}
    msgs = [b"garbage"] if split else []
    msgs = [[m] for m in msgs] + encode.v1_header(series, detail, config, _mask(), split)
    for i, frame in enumerate(_frames()):
        blob, d = encode.v1_blob(frame, compression)
        msgs.append(encode.v1_image_parts(series, i, blob, d, encode.md5_hex(blob), 1000 * i, 900))
    return [*msgs, encode.v1_end(series)]


def _v2_series(compression: str, dtype="<u2", with_mask: bool = True, series: int = 3) -> list:
    frames = _frames(dtype)
    fields = {"series_id": series, "series_unique_id": "fuzz", "image_dtype": np.dtype(dtype).name,
              "image_size_x": DET[1], "image_size_y": DET[0], "number_of_images": N,
              "saturation_value": int(np.iinfo(dtype).max), "pixel_mask_enabled": True, "count_time": 0.001}
    if with_mask:
        fields["pixel_mask"] = {encode.CHANNEL: encode.v2_array(_mask(), compression)}
    images = encode.V2Images(series, "fuzz", "2024-01-01T00:00:00Z")
    msgs = [encode.v2_start(fields)]
    msgs += [images.message(i, encode.v2_data(f, compression), 1000 * i, 900) for i, f in enumerate(frames)]
    return [[m] for m in [*msgs, encode.v2_end(series, "fuzz")]]


V1 = [_v1_series("bslz4"), _v1_series("lz4", "basic"), _v1_series("none", "none"), _v1_series("bslz4", split=True)]
V2 = [_v2_series("bslz4"), _v2_series("lz4", "<u1"), _v2_series("none", "<u4", with_mask=False)]


@st.composite
def series_mutants(draw, seeds):
    msgs = [list(m) for m in draw(st.sampled_from(seeds))]
    for _ in range(draw(st.integers(0, 3))):
        op = draw(st.sampled_from(("edit", "edit", "edit", "drop", "dup", "swap", "cut")))
        i = draw(st.integers(0, len(msgs) - 1)) if msgs else 0
        if not msgs:
            break
        if op == "edit":
            j = draw(st.integers(0, len(msgs[i]) - 1))
            part = bytes(msgs[i][j])
            msgs[i][j] = apply(part, draw(edits(len(part), 3)))
        elif op == "drop":
            del msgs[i]
        elif op == "dup":
            msgs.insert(i, list(msgs[i]))
        elif op == "swap":
            k = draw(st.integers(0, len(msgs) - 1))
            msgs[i], msgs[k] = msgs[k], msgs[i]
        else:
            del msgs[i:]
    return msgs


def _live(messages, protocol):
    source = DectrisLiveSource(FakeConnection(messages), protocol, header_timeout=0.01, timeout=0.01,
                               max_latency=0.0, scan_shape=SCAN)
    return run_source(source)


def _size(messages) -> int:
    return sum(len(p) for m in messages for p in m)


def _check(out) -> None:
    if out.error is None:
        assert out.value.complete or out.value.flagged or out.flagged, "a partial result without an error or a warning"


def test_seed_series_are_complete():
    """The fuzz tests start from series that reconstruct completely, without a warning."""
    for seeds, protocol in ((V1, V1Protocol), (V2, V2Protocol)):
        for seed in seeds:
            out = bounded(lambda s=seed, p=protocol: _live([list(m) for m in s], p()), _size(seed))
            assert out.error is None and out.value.complete and len(out.value.covered) == N
            assert out.warnings == [] or "skipped 1 DECTRIS stream messages" in out.warnings[0]


@fuzz(120)
@given(series_mutants(V1))
@example([*V1[2][:-2], V1[2][-1]])  # no frame count in the header, the end after 8 of 9 frames: was silent
@example([[V1[0][0][0], V1[0][0][1].replace(b"ntrigger", b"otrigger"), *V1[0][0][2:]], *V1[0][1:]])  # 1 frame
def test_stream_v1_series(messages):
    _check(bounded(lambda: _live(messages, V1Protocol()), _size(messages)))


@fuzz(80)
@given(series_mutants(V2))
@example([[V2[0][0][0].replace(b"limage_size_x", b"l\0mage_size_x")], *V2[0][1:]])  # no size: TypeError
@example([[V2[0][0][0].replace(b"fuint16", b"f\0int16")], *V2[0][1:]])  # a damaged dtype: TypeError
@example([V2[0][0], [V2[0][1][0].replace(b"series_id\x03", b"series_id\x04")]])  # then silence: a busy hang
@example([V2[0][0], [V2[0][1][0].replace(b"himage_id", b"himage_iX")]])  # no image_id: TypeError
@example([[V2[0][0][0].replace(b"series_id\x03", b"series_id\x03@\0\0\0\0\0")], *V2[0][1:]])  # bytes key: TypeError
def test_stream_v2_series(messages):
    _check(bounded(lambda: _live(messages, V2Protocol()), _size(messages)))


V2_IMAGES = [m[0] for seed in V2 for m in seed[1:3]]


@fuzz(250)
@given(mutants(V2_IMAGES, max_edits=4))
def test_cbor_fast_path(message):
    def parse():
        got = image_parts(message)
        if got is not None:
            series, image_id, (_tag, algorithm, _rows, _cols), data = got
            assert isinstance(series, int) and isinstance(image_id, int) and algorithm in ("bslz4", "lz4")
            assert 0 <= len(data) <= len(message)
        return got
    bounded(parse, len(message))


def _blobs():
    frame = _frames()[0]
    out = []
    for compression, v1 in (("bslz4", "bs16-lz4<"), ("lz4", "lz4<"), ("none", "<")):
        blob, _ = encode.v1_blob(frame, compression)
        out.append((Encoding.from_v1(v1, "uint16"), blob))
    out.append((Encoding.from_v2("lz4", np.dtype("<u2")), encode.lz4_hdf5(frame.tobytes())))
    out.append((Encoding.from_v2("bslz4", np.dtype("<u2")), encode.bslz4(frame)))
    return out


BLOBS = _blobs()


@fuzz(200)
@given(st.integers(0, len(BLOBS) - 1), edits(4096, 4))
@example(0, [("flip", 3, 0)])  # bitshuffle-LZ4 declaring 4 GiB: the decompressor allocated them
def test_image_codecs(k, todo):
    encoding, blob = BLOBS[k]
    blob = apply(blob, todo)
    out = np.zeros((1, *DET), encoding.dtype.newbyteorder("="))
    bounded(lambda: decode_blobs([blob], encoding, out), len(blob))


@fuzz(150)
@given(st.sampled_from(("u1", "u2", "u4", "i4", "u8", "f4")), st.integers(0, 9), st.integers(0, 9),
       st.sampled_from(INTERESTING), st.sampled_from((None, 1, 8, 16, 32, 64)),
       st.sampled_from((None, DET, (4, 4), (16, 16))))
def test_pixel_mask(dtype, rows, cols, value, bit_depth, frame_shape):
    mask = np.full((rows, cols), value % (1 << 32)).astype(dtype)
    frames = np.arange(2 * 8 * 8, dtype=np.uint16).reshape(2, 8, 8)

    def build():
        m = PixelMask.from_detector_mask(mask, bit_depth, frame_shape)
        m.apply(frames)
        return m
    bounded(build, mask.nbytes)
