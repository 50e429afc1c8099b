"""Recording DECTRIS patterns still compressed (`ricom.io.recorder`, ``write_direct_chunk``).

The bitshuffle-LZ4 blobs are built here independently of ricom: ``bitshuffle.compress_lz4``
with the 12-byte HDF5 filter-32008 header prepended (u64 BE total bytes, u32 BE block size
in bytes), checked against DECTRIS's own decoder (``dectris.compression.decompress``).
The recording must read back, with plain h5py + hdf5plugin, as the frames the detector
sent (masked pixels at 2^bit_depth − 1), and through ricom as the frames the
reconstruction saw (masked pixels left out, from the ``/pixel_mask`` stored beside).

Cost, measured with ``python tests/test_dectris_recording.py 4096`` (`bench`: 192×192
uint16, a bright-field disc of radius 30 px at 2 counts/pixel and 0.02 elsewhere, ~6 300
electrons a frame; writer thread alone on this 2-core machine, two runs):

=====================  ==============  ================
per frame              stored as sent  compressed again
=====================  ==============  ================
bytes queued           4 215           73 728 (17.5×)
``process`` (caller)   1.0–1.5 µs      46–134 µs
until closed (writer)  11–15 µs        79–154 µs
file bytes             4 285           4 285
=====================  ==============  ================

96×96 frames (~1 600 electrons): 1 223 vs 18 432 bytes queued, 7.5 vs 28 µs until closed
(the writer keeps up with ~130 000 frames/s).  Queued bytes are exact; times vary.
"""
from __future__ import annotations

import os
import struct
import sys
import time

import bitshuffle
import h5py
import hdf5plugin  # noqa: F401 - the reading side of the filter
import numpy as np
import pytest
from dectris.compression import decompress

import ricom
from ricom import api
from ricom.core.chunks import EncodedFrames, FrameChunk
from ricom.engine.pipeline import run
from ricom.engine.reconstruction import Reconstruction
from ricom.engine.reducer import ReducedChunk
from ricom.io.attach import attach_recorder
from ricom.io.recorder import FrameRecorder
from ricom.sources.base import Source
from ricom.sources.dectris.mask import PixelMask
from ricom.sources.hdf5 import HDF5Source

SCAN, DET = (6, 7), (24, 20)
N = SCAN[0] * SCAN[1]
BAD = [(3, 4), (10, 11)]
SETTINGS = api.make_settings(kernel_size=3, center_yx=(11.5, 9.5))


def detector_frames(n: int = N, det=DET, seed: int = 1, dtype=np.uint16, disc: float = 7.0) -> np.ndarray:
    """A bright disc moving with the position; the masked pixels at 2^16 − 1, as sent."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:det[0], :det[1]]
    shift = rng.normal(0, 1.0, (n, 2))
    cy, cx = (det[0] - 1) / 2, (det[1] - 1) / 2
    r2 = (yy - cy - shift[:, :1, None]) ** 2 + (xx - cx - shift[:, 1:, None]) ** 2
    frames = rng.poisson(np.where(r2 < disc**2, 2.0, 0.02)).astype(dtype)
    for y, x in BAD if det == DET else []:
        frames[:, y, x] = np.iinfo(dtype).max
    return frames


def nxmx_mask() -> np.ndarray:
    mask = np.zeros(DET, np.uint32)
    for y, x in BAD:
        mask[y, x] = 2  # dead
    return mask


def bslz4_blob(frame: np.ndarray, block_elems: int = 2048) -> bytes:
    """One frame as the detector sends it: HDF5 filter-32008 framing of bitshuffle-LZ4."""
    body = bitshuffle.compress_lz4(np.ascontiguousarray(frame), block_elems).tobytes()
    return struct.pack(">QI", frame.nbytes, block_elems * frame.itemsize) + body


def blobs_of(frames: np.ndarray, block_elems: int = 2048) -> list[bytes]:
    blobs = [bslz4_blob(f, block_elems) for f in frames]
    for blob, f in zip(blobs, frames, strict=True):  # DECTRIS's decoder agrees
        assert decompress(blob, "bslz4", elem_size=f.itemsize) == f.tobytes()
    return blobs


def encoded(blobs, mask: PixelMask | None = None, dtype=np.uint16, det=DET) -> EncodedFrames:
    """What a live DECTRIS source hands the engine: blobs and a decoder that masks."""
    def decoder(items, out):
        for i, blob in enumerate(items):
            out[i] = np.frombuffer(decompress(bytes(blob), "bslz4", elem_size=out.itemsize), out.dtype).reshape(det)
        if mask is not None:
            mask.apply(out)
    return EncodedFrames(list(blobs), "bslz4", np.dtype(dtype), det, decoder, np.dtype(dtype).itemsize)


def reduced(positions, enc: EncodedFrames) -> ReducedChunk:
    k = len(positions)
    return ReducedChunk(np.asarray(positions, np.int64), np.zeros((k, 3)), np.ones(k, bool), frames=enc.unpack(),
                        encoded=enc)


class EncodedSource(Source):
    """A stand-in for the live DECTRIS source: chunks of `EncodedFrames` and its mask."""

    def __init__(self, frames, mask_bits):
        self.blobs, self.mask_bits = blobs_of(frames), mask_bits
        self.scan_shape, self.detector_shape, self.n_frames = SCAN, DET, len(frames)
        self.mask = PixelMask.from_detector_mask(mask_bits, 16, DET)

    def chunks(self, chunk_size=256):
        for a in range(0, self.n_frames, chunk_size):
            blobs = self.blobs[a:a + chunk_size]
            yield FrameChunk(encoded=encoded(blobs, self.mask), positions=np.arange(a, a + len(blobs)))

    @property
    def dtype(self):
        return np.dtype(np.uint16)

    def recording_datasets(self):
        return {"pixel_mask": (self.mask_bits, {"bit_depth": 16})}


@pytest.mark.parametrize("block_elems", [2048, 64, 0])
def test_blobs_become_hdf5_chunks_unchanged(tmp_path, block_elems):
    frames = detector_frames()
    if block_elems == 0:  # bitshuffle's automatic block: its header says 8192 bytes
        blobs = [struct.pack(">QI", f.nbytes, 8192) + bitshuffle.compress_lz4(f, 0).tobytes() for f in frames]
        assert all(decompress(b, "bslz4", elem_size=2) == f.tobytes() for b, f in zip(blobs, frames, strict=True))
    else:
        blobs = blobs_of(frames, block_elems)
    mask = PixelMask.from_detector_mask(nxmx_mask(), 16, DET)
    path = str(tmp_path / "rec.h5")
    order = np.r_[np.arange(N)[::-1][:20], -1, np.arange(N)[::-1][20:]]  # any order; −1 is skipped
    blobs_in = [blobs[p] if p >= 0 else blobs[0] for p in order]
    with FrameRecorder(path, SCAN, DET, np.uint16, datasets={"pixel_mask": (nxmx_mask(), {"bit_depth": 16})}) as rec:
        for a in range(0, len(order), 9):
            rec.process(reduced(order[a:a + 9], encoded(blobs_in[a:a + 9], mask)))
    counts = rec.get_results()
    assert counts["n_recorded"] == rec.n_direct == N and counts["n_skipped"] == 1
    with h5py.File(path) as f:
        np.testing.assert_array_equal(f["data"][()], frames.reshape(*SCAN, *DET))  # as the detector sent them
        assert f["data"].id.read_direct_chunk((2, 3, 0, 0))[1] == blobs[2 * SCAN[1] + 3]  # byte for byte
        assert f.attrs["n_stored_as_received"] == N and f.attrs["complete"]
        np.testing.assert_array_equal(f["pixel_mask"][()], nxmx_mask())
        assert f["pixel_mask"].attrs["bit_depth"] == 16
    src = ricom.sources.open_source(f"{path}:/data")  # ricom applies the stored mask
    assert isinstance(src, HDF5Source) and src.describe()["masked_pixels"].startswith("2 masked pixels")
    seen = frames.copy()
    mask.apply(seen)
    np.testing.assert_array_equal(np.concatenate([c.frames for c in src.chunks(10)]), seen)
    src.close()


def test_frames_are_compressed_again_when_blobs_do_not_fit(tmp_path):
    """Another filter, pixel type or a blob whose header disagrees: the decoded patterns
    (masked pixels left out) are recorded, compressed by the recorder."""
    frames = detector_frames()
    blobs = blobs_of(frames)
    mask = PixelMask.from_detector_mask(nxmx_mask(), 16, DET)
    seen = frames.copy()
    mask.apply(seen)
    bad = [blobs[0][:7] + bytes([blobs[0][7] ^ 1]) + blobs[0][8:], *blobs[1:]]  # total bytes off by one
    cases = (("zstd", "zstd", np.uint16, blobs), ("u32", "bitshuffle-lz4", np.uint32, blobs),
             ("hdr", "bitshuffle-lz4", np.uint16, bad))
    for name, compression, dtype, items in cases:
        path = str(tmp_path / f"{name}.h5")
        with FrameRecorder(path, SCAN, DET, dtype, compression=compression) as rec:
            enc = encoded(items, mask)
            rec.process(ReducedChunk(np.arange(len(enc)), np.zeros((len(enc), 3)), np.ones(len(enc), bool),
                                     frames=seen[:len(enc)], encoded=enc))
        assert rec.n_direct == 0 and rec.n_recorded == len(enc), name
        with h5py.File(path) as f:
            np.testing.assert_array_equal(f["data"][()].reshape(N, *DET)[:len(enc)], seen[:len(enc)])


def test_queue_bound_counts_blob_bytes(tmp_path):
    frames = detector_frames()
    blobs = blobs_of(frames)
    budget = sum(len(b) for b in blobs[:5])  # five blobs' worth: far fewer than five patterns' bytes
    assert budget < 5 * frames[0].nbytes
    path = str(tmp_path / "slow.h5")
    rec = FrameRecorder(path, SCAN, DET, np.uint16, max_queue_bytes=budget)
    rec.write_delay_s = 0.2
    rec.process(reduced(np.arange(N), encoded(blobs)))
    counts = rec.close()
    assert counts["n_recorded"] == 5 and counts["n_not_recorded"] == N - 5
    np.testing.assert_array_equal(np.sort(counts["not_recorded_positions"]), np.arange(5, N))
    with h5py.File(path) as f:
        np.testing.assert_array_equal(f["data"][0, :5], frames[:5])
        assert not f.attrs["complete"]


def test_live_recording_through_the_engine_replays_to_the_same_image(tmp_path):
    frames = detector_frames(seed=5)
    source = EncodedSource(frames, nxmx_mask())
    rec = Reconstruction(SCAN, DET, SETTINGS)
    path = str(tmp_path / "live.h5")
    with attach_recorder(rec, path, source) as recorder:
        result = run(source, rec, chunk_size=8)
    assert result.complete and recorder.n_recorded == recorder.n_direct == N
    with h5py.File(path) as f:
        np.testing.assert_array_equal(f["data"][()], frames.reshape(*SCAN, *DET))
        np.testing.assert_array_equal(f["pixel_mask"][()], nxmx_mask())
    replay = ricom.reconstruct(f"{path}:/data", settings=SETTINGS)
    np.testing.assert_array_equal(replay.ricom, result.snapshot.ricom)
    np.testing.assert_array_equal(replay.com_x, result.snapshot.com_x)
    seen = frames.copy()
    PixelMask.from_detector_mask(nxmx_mask(), 16, DET).apply(seen)
    direct = ricom.reconstruct(seen.reshape(*SCAN, *DET), settings=SETTINGS)
    np.testing.assert_allclose(result.snapshot.ricom, direct.ricom, rtol=1e-12, atol=1e-12)


def bench(n: int = 2048, det=(192, 192), folder: str | None = None) -> dict:
    """Bytes queued and time per frame, blobs stored as received vs the patterns compressed
    again: ``process`` (the reconstruction's side) and until the file is closed (the writer)."""
    import dataclasses
    import tempfile

    frames = detector_frames(n, det, seed=9, disc=30.0 * det[0] / 192)
    blobs = [bslz4_blob(f, 4096) for f in frames]
    enc = EncodedFrames(blobs, "bslz4", np.dtype(np.uint16), det, lambda b, o: None, 2)
    out = {"electrons_per_frame": float(frames.sum(axis=(1, 2)).mean()),
           "blob_bytes_per_frame": float(np.mean([len(b) for b in blobs])), "frame_bytes": frames[0].nbytes}
    with tempfile.TemporaryDirectory(dir=folder) as tmp:
        for mode in ("direct", "recompress"):
            rec = FrameRecorder(os.path.join(tmp, f"{mode}.h5"), (n // 64, 64), det, np.uint16)
            queued, t0 = 0, time.perf_counter()
            for a in range(0, n, 256):
                part = dataclasses.replace(enc, blobs=blobs[a:a + 256]) if mode == "direct" else None
                rec.process(ReducedChunk(np.arange(a, a + 256), np.zeros((256, 3)), np.ones(256, bool),
                                         frames=frames[a:a + 256], encoded=part))
                queued += sum(len(b) for b in blobs[a:a + 256]) if mode == "direct" else frames[a:a + 256].nbytes
            t_process = time.perf_counter() - t0
            rec.close()
            out[mode] = {"queued_bytes_per_frame": queued / n, "process_us_per_frame": t_process / n * 1e6,
                         "until_closed_us_per_frame": (time.perf_counter() - t0) / n * 1e6,
                         "file_bytes_per_frame": os.path.getsize(os.path.join(tmp, f"{mode}.h5")) / n,
                         "stored_as_received": rec.n_direct}
    return out


if __name__ == "__main__":
    import json

    print(json.dumps(bench(int(sys.argv[1]) if len(sys.argv) > 1 else 2048), indent=2))
