"""DECTRIS stream V1/V2 decoding and the live source, against messages built independently
(`tests/dectris_wire.py`: bitshuffle, lz4 and cbor2 directly) and sent over loopback ZMQ."""
from __future__ import annotations

import threading
import warnings

import numpy as np
import pytest

pytest.importorskip("zmq")
pytest.importorskip("cbor2")
pytest.importorskip("dectris.compression")

from dectris_wire import (
    Pusher,
    bslz4,
    cbor_array,
    lz4_block,
    lz4_hdf5,
    v1_end,
    v1_header,
    v1_image,
    v2_end,
    v2_image,
    v2_start,
)
from ricom import api
from ricom.core.errors import InputError
from ricom.sources.dectris.codec import Encoding, decode_blobs
from ricom.sources.dectris.connection import StreamConnection
from ricom.sources.dectris.live import DectrisLiveSource, SeriesEndedEarly
from ricom.sources.dectris.stream_v1 import V1Protocol
from ricom.sources.dectris.stream_v2 import V2Protocol

SCAN, DET = (6, 6), (23, 21)  # odd sizes: a bitshuffle tail


def _frames(seed=0, dtype=np.uint16):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:DET[0], :DET[1]]
    disc = ((yy - 11.0) ** 2 + (xx - 10.0) ** 2 < 16).astype(float)
    out = np.empty((SCAN[0] * SCAN[1], *DET), dtype)
    for i in range(len(out)):
        shift = np.roll(disc, (i % 3) - 1, axis=1)
        out[i] = rng.poisson(3.0 * shift + 0.05)
    return out


def _mask():
    m = np.zeros(DET, np.uint32)
    m[:, 7] = 1          # a gap column
    m[3, 4] = 2          # dead
    m[5, 5] = 1 << 16    # a high bit only: not ignored
    return m


def _masked(frames, mask, saturation=65535):
    out = frames.copy()
    out[:, (mask & 0xFFFF) != 0] = 0
    out[out == saturation] = 0
    return out


@pytest.mark.parametrize("codec,dtype", [("bslz4", np.uint16), ("bslz4", np.uint32), ("bslz4", np.uint8),
                                         ("lz4-block", np.uint16), ("lz4", np.uint16), ("raw", np.uint16)])
def test_decode_blobs_equals_input(codec, dtype):
    frames = _frames(1, dtype)[:5]
    make = {"bslz4": bslz4, "lz4-block": lz4_block, "lz4": lz4_hdf5, "raw": lambda a: a.tobytes()}[codec]
    out = np.empty_like(frames)
    decode_blobs([make(f) for f in frames], Encoding(codec, np.dtype(dtype)), out)
    np.testing.assert_array_equal(out, frames)


def test_v1_encoding_names_and_errors():
    assert Encoding.from_v1("bs32-lz4<", "uint32").codec == "bslz4"
    assert Encoding.from_v1("<", "uint8") == Encoding("raw", np.dtype("u1"))
    assert Encoding.from_v1(">", "uint16").dtype == np.dtype(">u2")
    for bad in ("bs16-zstd<", "lz5<", "bs16-lz4"):
        with pytest.raises(InputError, match="unknown DECTRIS image encoding"):
            Encoding.from_v1(bad, "uint16")
    with pytest.raises(InputError, match="shuffles 16-bit values but the image type is uint32"):
        Encoding.from_v1("bs16-lz4<", "uint32")
    with pytest.raises(InputError, match="unknown DECTRIS compression 'bszstd'"):
        Encoding.from_v2("bszstd", np.dtype("u2"))


def test_blob_of_wrong_size_names_the_frame():
    frame = _frames()[0]
    out = np.empty((1, DET[0], DET[1] + 1), np.uint16)
    with pytest.raises(InputError, match=r"DECTRIS frame 7 decodes to .* bytes but its header describes 23×22"):
        decode_blobs([bslz4(frame)], Encoding("bslz4", np.dtype("u2")), out, first_frame=7)


def _config(n, bit_depth=True):
    c = {"nimages": 1, "ntrigger": n, "trigger_mode": "exte", "x_pixels_in_detector": DET[1],
         "y_pixels_in_detector": DET[0], "compression": "bslz4", "count_time": 1e-4, "frame_time": 1e-4}
    if bit_depth:
        c["bit_depth_image"] = 16
    return c


def _v1_series(series, frames, mask=None, compression="bslz4", split=False, bit_depth=True, end=True):
    msgs = v1_header(series, _config(len(frames), bit_depth), mask, split)
    msgs += [v1_image(series, i, f, compression) for i, f in enumerate(frames)]
    return msgs + ([v1_end(series)] if end else [])


def _v2_series(series, frames, mask=None, compression="bslz4", end=True):
    msgs = [v2_start(series, DET, len(frames), frames.dtype.name, mask)]
    msgs += [v2_image(series, i, f, compression) for i, f in enumerate(frames)]
    return msgs + ([v2_end(series)] if end else [])


def _receive(messages, protocol, **options):
    push = Pusher()
    conn = StreamConnection("127.0.0.1", push.port)
    try:
        push.send(messages)
        source = DectrisLiveSource(conn, protocol, header_timeout=5, timeout=2, **options)
        result, rec, _ = api.reconstruct_run(source, kernel_size=5, center_yx=(11.0, 10.0), chunk_size=8)
        return result, rec, source
    finally:
        conn.close()
        push.close()


def _offline(frames):
    return api.reconstruct(frames.reshape(*SCAN, *DET), kernel_size=5, center_yx=(11.0, 10.0))


@pytest.mark.parametrize("stream,compression", [("v1", "bslz4"), ("v1", "lz4"), ("v1", "none"),
                                                ("v2", "bslz4"), ("v2", "lz4"), ("v2", "none")])
def test_live_series_equals_offline_with_mask(stream, compression):
    frames, mask = _frames(), _mask()
    frames[:, (mask & 0xFFFF) != 0] = 65535  # as the detector sends masked pixels
    frames[4, 2, 3] = 65535                  # one reading flagged in one image only
    msgs = (_v1_series if stream == "v1" else _v2_series)(3, frames, mask, compression)
    protocol = V1Protocol() if stream == "v1" else V2Protocol()
    result, _rec, source = _receive(msgs, protocol, series=3)
    assert result.error is None and source.frames_received == 36 and source.frames_lost == 0
    ref = _offline(_masked(frames, mask))
    np.testing.assert_allclose(result.snapshot.ricom, ref.ricom, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(result.snapshot.com_x, ref.com_x, rtol=1e-9, atol=1e-12)
    assert source.mask.n_bad == DET[0] + 1 and source.mask.readings_removed == 1
    assert "24 masked pixels (gap 23, dead 1)" in source.summary()


def test_v1_header_split_without_bit_depth_and_stale_messages_of_another_series():
    frames = _frames(2)
    stale = [v1_image(1, i, f) for i, f in enumerate(frames[:3])] + [v1_end(1)]
    msgs = stale + _v1_series(2, frames, _mask(), split=True, bit_depth=False)
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        result, _, source = _receive(msgs, V1Protocol(), series=2)
    assert any("skipped 3 DECTRIS stream messages" in str(x.message) for x in w)
    assert source.header.bit_depth == 16 and source.mask.saturation == 65535  # from dimage_d's type
    np.testing.assert_allclose(result.snapshot.ricom, _offline(_masked(frames, _mask())).ricom, rtol=1e-9)


def test_passive_takes_the_next_header_of_any_series():
    frames = _frames(3)
    result, _, source = _receive(_v2_series(41, frames), V2Protocol())
    assert source.header.series == 41 and result.error is None


def test_series_that_ends_early_keeps_the_partial_result():
    frames = _frames(4)
    msgs = v1_header(5, _config(36)) + [v1_image(5, i, f) for i, f in enumerate(frames[:20])] + [v1_end(5)]
    result, rec, source = _receive(msgs, V1Protocol(), series=5)
    assert "ended after 20 of 36 frames" in result.error
    assert source.frames_received == 20 and int(rec.moments.hits.sum()) == 20


def test_lost_images_leave_holes_and_are_counted():
    frames = _frames(5)
    keep = [i for i in range(36) if i not in (7, 8, 30)]
    msgs = v1_header(6, _config(36)) + [v1_image(6, i, frames[i]) for i in keep] + [v1_end(6)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _result, rec, source = _receive(msgs, V1Protocol(), series=6)
    assert source.frames_lost == 3
    hits = rec.moments.hits.reshape(SCAN)
    assert hits.ravel()[[7, 8, 30]].tolist() == [0, 0, 0] and int(hits.sum()) == 33


def test_no_header_is_one_clear_error():
    push = Pusher()
    conn = StreamConnection("127.0.0.1", push.port)
    try:
        push.send([v1_image(1, 0, _frames()[0])])
        with pytest.raises(InputError, match=r"sent no header of series 9 within 0.3 s \(1 messages of other"):
            DectrisLiveSource(conn, V1Protocol(), series=9, header_timeout=0.3)
    finally:
        conn.close()
        push.close()


def test_blob_size_disagreeing_with_header_is_an_error():
    frames = _frames()
    bad = v1_image(7, 1, frames[1])
    bad[2] = bad[2][:-3]
    msgs = [*v1_header(7, _config(36)), v1_image(7, 0, frames[0]), bad]
    result, _rec, _source = _receive(msgs, V1Protocol(), series=7)
    assert "blob holds" in result.error and "its header says" in result.error


def test_stall_ends_with_the_frames_received():
    frames = _frames()
    msgs = v1_header(8, _config(36)) + [v1_image(8, i, f) for i, f in enumerate(frames[:10])]
    result, rec, _source = _receive(msgs, V1Protocol(), series=8)
    assert "sent nothing for 2 s after 10 of 36 frames" in result.error
    assert int(rec.moments.hits.sum()) == 10


def test_stop_request_keeps_what_arrived():
    frames = _frames()
    stop = threading.Event()
    push = Pusher()
    conn = StreamConnection("127.0.0.1", push.port, stop=stop)
    try:
        push.send(v1_header(9, _config(36)) + [v1_image(9, i, f) for i, f in enumerate(frames[:12])])
        source = DectrisLiveSource(conn, V1Protocol(), series=9, header_timeout=5)
        threading.Timer(0.5, stop.set).start()
        _result, rec, _ = api.reconstruct_run(source, kernel_size=5, center_yx=(11.0, 10.0), stop=stop)
        assert int(rec.moments.hits.sum()) == 12
    finally:
        conn.close()
        push.close()


def test_next_header_before_the_end_is_an_early_end():
    frames = _frames()
    msgs = v1_header(10, _config(36)) + [v1_image(10, i, f) for i, f in enumerate(frames[:5])]
    msgs += _v1_series(11, frames)
    result, rec, _source = _receive(msgs, V1Protocol(), series=10)
    assert "a new DECTRIS series started after 5 of 36 frames" in result.error
    assert int(rec.moments.hits.sum()) == 5


def test_early_end_is_a_series_ended_early_error():
    frames = _frames()
    push = Pusher()
    conn = StreamConnection("127.0.0.1", push.port)
    try:
        push.send([*v1_header(12, _config(36)), v1_image(12, 0, frames[0]), v1_end(12)])
        source = DectrisLiveSource(conn, V1Protocol(), series=12, header_timeout=5)
        with pytest.raises(SeriesEndedEarly, match="ended after 1 of 36 frames"):
            list(source.chunks(4))
    finally:
        conn.close()
        push.close()


def test_v2_message_on_a_v1_port_is_reported():
    push = Pusher()
    conn = StreamConnection("127.0.0.1", push.port)
    try:
        push.send([v2_start(1, DET, 36)])
        with pytest.raises(InputError, match="sent no header"):
            DectrisLiveSource(conn, V1Protocol(), header_timeout=0.3)
    finally:
        conn.close()
        push.close()


def test_open_source_by_url_v2():
    from ricom.sources import open_source

    frames = _frames(6)
    push = Pusher()
    try:  # a PUSH socket holds its messages until the source connects
        threading.Timer(0.2, push.send, (_v2_series(3, frames),)).start()
        with open_source(f"dectris://127.0.0.1:{push.port}/v2", header_timeout=5, timeout=2) as source:
            snap = api.reconstruct(source, kernel_size=5, center_yx=(11.0, 10.0))
            conn = source.connection
        assert conn.closed
        np.testing.assert_allclose(snap.ricom, _offline(frames).ricom, rtol=1e-9)
    finally:
        push.close()
    with pytest.raises(InputError, match="dectris://HOST"):
        open_source("dectris://a:b:c")


def test_recording_stores_the_blobs_as_received_and_the_mask(tmp_path):
    import h5py

    from ricom.io.attach import attach_recorder

    frames, mask = _frames(7), _mask()
    frames[:, (mask & 0xFFFF) != 0] = 65535
    push = Pusher()
    conn = StreamConnection("127.0.0.1", push.port)
    try:
        push.send(_v1_series(4, frames, mask))
        source = DectrisLiveSource(conn, V1Protocol(), series=4, header_timeout=5, timeout=2)
        recorders = []
        result, _rec, _ = api.reconstruct_run(
            source, kernel_size=5, center_yx=(11.0, 10.0), chunk_size=8,
            before_run=lambda r, s: recorders.append(attach_recorder(r, str(tmp_path / "rec.h5"), s)))
        counts = recorders[0].close()
    finally:
        conn.close()
        push.close()
    assert counts["n_recorded"] == 36 and recorders[0].n_direct == 36
    with h5py.File(tmp_path / "rec.h5") as f:
        np.testing.assert_array_equal(f["data"][...].reshape(36, *DET), frames)  # the detector's bytes
        assert f["data"].id.read_direct_chunk((0, 1, 0, 0))[1] == bslz4(frames[1])
        np.testing.assert_array_equal(f["pixel_mask"][...], mask)
    again = api.reconstruct(str(tmp_path / "rec.h5:/data"), kernel_size=5, center_yx=(11.0, 10.0))
    np.testing.assert_allclose(again.ricom, result.snapshot.ricom, rtol=1e-9)


def test_receives_from_libertem_dectris_simulator():
    """An independent server (LiberTEM's Rust simulator: split header, header_detail basic,
    512×512 bs16-lz4 frames whose 12-byte framing header is left zero)."""
    pytest.importorskip("libertem_dectris")
    from dectris_third_party import LiberTEMDectrisSim

    sim = LiberTEMDectrisSim(n_frames=16)
    conn = StreamConnection("127.0.0.1", sim.port)
    try:
        sim.send()
        source = DectrisLiveSource(conn, V1Protocol(), header_timeout=10, timeout=5, scan_shape=(4, 4))
        seen = []
        for chunk in source.chunks(5):
            seen.append(chunk.frames.copy())
        sim.wait()
    finally:
        conn.close()
    assert source.header.series == sim.series and source.detector_shape == sim.detector_shape
    np.testing.assert_array_equal(np.concatenate(seen), sim.expected_frames())


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.uint32])
def test_masked_copy_while_decoding_equals_decode_then_mask(dtype):
    from ricom.sources.dectris.mask import PixelMask

    rng = np.random.default_rng(11)
    top = np.iinfo(dtype).max
    frames = rng.integers(0, 4, (6, *DET)).astype(dtype)
    frames[rng.random(frames.shape) < 0.01] = top
    mask = np.zeros(DET, np.uint32)
    mask[rng.random(DET) < 0.05] = 4
    frames[:, mask != 0] = top
    blobs = [bslz4(f) for f in frames]
    enc = Encoding("bslz4", np.dtype(dtype))
    a, b = np.empty_like(frames), np.empty_like(frames)
    ma = PixelMask.from_detector_mask(mask, 8 * np.dtype(dtype).itemsize)
    mb = PixelMask.from_detector_mask(mask, 8 * np.dtype(dtype).itemsize)
    decode_blobs(blobs, enc, a, mask=ma)
    decode_blobs(blobs, enc, b)
    mb.apply(b)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a, _masked(frames, mask, top))
    assert ma.readings_removed == mb.readings_removed == int((frames[:, mask == 0] == top).sum())


def test_v2_fast_path_agrees_with_cbor2():
    import cbor2

    from ricom.sources.dectris.cbor_fast import image_parts

    frames = _frames(12)
    for compression in ("bslz4", "lz4"):
        for i in (0, 23, 300, 70000):
            msg = v2_image(9, i, frames[i % 36], compression)[0]
            series, image_id, key, data = image_parts(msg)
            m = cbor2.loads(msg)
            arr = m["data"]["threshold_1"]
            assert (series, image_id) == (9, i)
            assert key == (arr.value[1].tag, compression, *DET)
            assert bytes(data) == arr.value[1].value.value[2]
    assert image_parts(v2_image(9, 1, frames[1], "none")[0]) is None      # uncompressed: the general way
    assert image_parts(v2_start(9, DET, 36)[0]) is None
    two = cbor2.dumps(cbor2.CBORTag(55799, {"type": "image", "series_id": 1, "image_id": 2, "data": {
        "a": cbor_array(frames[0], "bslz4"), "b": cbor_array(frames[1], "bslz4")}}))
    assert image_parts(two) is None                                        # two channels: the general way
    assert image_parts(v2_image(9, 5, frames[5])[0][:-40]) is None         # cut short


def test_v2_fast_and_general_paths_give_the_same_batch():
    frames = _frames(13)
    msgs = [v2_image(2, i, f) for i, f in enumerate(frames)] + [v2_image(1, 99, frames[0])] + [v2_end(2)]
    header = V2Protocol().read_header(v2_start(2, DET, 36))
    fast = V2Protocol()
    fast.images(msgs[:1], header)  # fills its cache: the rest take the fast path
    a = fast.images(msgs[1:], header)
    b = V2Protocol().images(msgs[1:], header)
    assert a.frames == b.frames == list(range(1, 36)) and a.skipped == b.skipped == 1 and a.stop == b.stop == 36
    assert [bytes(x) for x in a.blobs] == [bytes(x) for x in b.blobs]


def test_live_series_in_a_listed_scan_order_equals_the_raster():
    frames = _frames(6)
    order = np.random.default_rng(8).permutation(len(frames))  # image k was taken at flat position order[k]
    result, _, source = _receive(_v2_series(7, frames[order], compression="none"), V2Protocol(), series=7,
                                 scan_shape=SCAN, scan_positions=order)
    assert result.error is None and source.scan_positions is not None
    ref = _offline(frames)
    np.testing.assert_allclose(result.snapshot.ricom, ref.ricom, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(result.snapshot.com_y, ref.com_y, rtol=1e-9, atol=1e-12)
