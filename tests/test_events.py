"""Event data (issue 5): Timepix3 .tpx3, PIXet .t3p and HDF5 event lists through the engine.

The .tpx3 files here come from an independent writer in this file (plain NumPy bit
packing from FORMATS.md §3, not `ricom.simulators.events`): TDC1 line triggers, hits out of order,
an ASI CheeTah quad layout.
"""
from __future__ import annotations

import h5py
import numpy as np
import pytest

import ricom
from ricom.api import make_settings
from ricom.core.chunks import EventChunk
from ricom.core.errors import InputError, SettingsError
from ricom.engine.reconstruction import Reconstruction
from ricom.simulators.events import write_events
from ricom.sources import open_source
from ricom.sources.events_h5 import EventsH5Source, EventsH5Writer, is_event_file
from ricom.sources.timepix.tpx3 import Tpx3Source

SY, SX, DY, DX = 12, 10, 32, 32
ROLLOVER_NS = 4 * 2**30 * 25.0  # ToA (×4) and TDC roll over together here


# ---------------------------------------------------------------- independent .tpx3 writer
def _to_chip(gx, gy):
    """CheeTah: chip 0 at (x+256, y), 1 at (511−x, 511−y), 2 at (255−x, 511−y), 3 at (x, y)."""
    chip = np.where(gy < 256, np.where(gx >= 256, 0, 3), np.where(gx >= 256, 1, 2))
    lx = np.choose(chip, [gx - 256, 511 - gx, 255 - gx, gx])
    ly = np.choose(chip, [gy, 511 - gy, 511 - gy, gy])
    return chip, lx, ly


def _u(v, shift):
    return np.asarray(v).astype(np.uint64) << np.uint64(shift)


def _hit_words(lx, ly, t_ns, tot):
    coarse = np.ceil(t_ns / 25.0).astype(np.int64)
    ftoa = np.rint((coarse * 25.0 - t_ns) / 1.5625).astype(np.int64)
    coarse &= 2**30 - 1
    addr = ((lx >> 1) << 9) | ((ly >> 2) << 3) | ((lx & 1) << 2) | (ly & 3)
    return _u(np.full(lx.shape, 0xB), 60) | _u(addr, 44) | _u(coarse & 0x3FFF, 30) | _u(tot, 20) | \
        _u(ftoa, 16) | _u(coarse >> 14, 0)


def _tdc_words(t_ns, rising):
    coarse = np.floor(t_ns / 3.125).astype(np.int64)
    fine = np.rint((t_ns - coarse * 3.125) / (3.125 / 12)).astype(np.int64) + 1
    kind = np.where(rising, 0xF, 0xA)
    return _u(np.full(kind.shape, 6), 60) | _u(kind, 56) | _u(np.arange(kind.size) & 0xFFF, 44) | \
        _u(coarse & (2**35 - 1), 9) | _u(fine, 5)


def write_tpx3(path, counts, *, trigger="line", dwell=1000.0, gap=3000.0, t0=500.0, late=400.0,
               offset=(240, 240), drop_falls=(), junk=0, seed=0, per_chunk=200):
    """Counts (SY, SX, DY, DX) → a SERVAL-like raw file; returns the number of hits."""
    rng = np.random.default_rng(seed)
    sy, sx, dy, dx = counts.shape
    flat = counts.reshape(sy * sx, dy * dx)
    pos, pix = np.nonzero(flat)
    n = flat[pos, pix]
    pos, pix = np.repeat(pos, n), np.repeat(pix, n)
    line_t = sx * dwell + gap
    t = t0 + (pos // sx) * line_t + (pos % sx) * dwell + rng.integers(0, round(dwell / 1.5625), pos.size) * 1.5625
    chip, lx, ly = _to_chip(pix % dx + offset[1], pix // dx + offset[0])
    words, times, chips = [_hit_words(lx, ly, t, rng.integers(1, 200, t.size))], [t], [chip]
    if trigger in ("line", "pixel"):
        starts = t0 + np.arange(sy) * line_t
        if trigger == "pixel":
            starts = (starts[:, None] + np.arange(sx) * dwell).ravel()
        ends = starts + (sx * dwell if trigger == "line" else 100.0)
        keep_end = ~np.isin(np.arange(ends.size), drop_falls)
        edges = np.concatenate([starts, ends[keep_end]])
        rising = np.concatenate([np.ones(starts.size, bool), np.zeros(keep_end.sum(), bool)])
        words.append(_tdc_words(edges, rising))
        times.append(edges)
        chips.append(np.zeros(edges.size, np.int64))
    if junk:
        words.append(_u(np.full(junk, 3), 60) | _u(np.arange(junk), 0))
        times.append(rng.uniform(t0, t.max(), junk))
        chips.append(np.zeros(junk, np.int64))
    words, times, chips = np.concatenate(words), np.concatenate(times), np.concatenate(chips)
    order = np.argsort(times + rng.uniform(0, late, times.size))  # hits arrive up to `late` ns late
    words, chips = words[order], chips[order]
    out = []
    for b in range(0, words.size, per_chunk):
        for c in range(4):
            sel = words[b:b + per_chunk][chips[b:b + per_chunk] == c]
            if sel.size:
                head = np.uint64(0x33585054) | _u(c, 32) | _u(sel.size * 8, 48)
                out.append(np.concatenate([[head], sel]))
    np.concatenate(out).astype("<u8").tofile(path)
    return int(pos.size)


@pytest.fixture(scope="module")
def counts():
    rng = np.random.default_rng(5)
    yy, xx = np.indices((DY, DX))
    iy, ix = np.indices((SY, SX))
    cy = 15.5 + 1.5 * np.sin(ix / 2.0)[..., None, None]
    cx = 15.5 + 1.5 * np.cos(iy / 3.0)[..., None, None]
    lam = 3.0 * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 30.0) + 0.05
    return rng.poisson(lam).astype(np.uint16)


def _r(a, b):
    return np.corrcoef(a.ravel(), b.ravel())[0, 1]


def _frames(counts, **kw):
    return ricom.reconstruct(counts, kernel_size=7, **kw)


# ---------------------------------------------------------------- .tpx3
def test_tpx3_line_trigger_matches_frame_path(tmp_path, counts):
    path = tmp_path / "scan.tpx3"
    n = write_tpx3(path, counts)
    ev = ricom.reconstruct(str(path), scan_shape=(SY, SX), kernel_size=7)
    fr = _frames(counts)
    assert _r(fr.ricom, ev.ricom) >= 0.9999
    assert ev.n_patterns == SY * SX and ev.counts.sum() == n
    np.testing.assert_array_equal(ev.counts, fr.counts)
    vd = {"virtual_detector": (4.0, 9.0)}  # the same rings around the same centre
    ev = ricom.reconstruct(str(path), scan_shape=(SY, SX), kernel_size=7, center_yx=(255.4, 255.6), **vd)
    fr = _frames(counts, center_yx=(15.4, 15.6), **vd)
    for name in ("vbf", "vabf", "vadf"):
        np.testing.assert_array_equal(ev.virtual[name], fr.virtual[name])


def test_tpx3_rollover_small_blocks_tight_window(tmp_path, counts):
    path = tmp_path / "roll.tpx3"
    write_tpx3(path, counts, t0=ROLLOVER_NS - 30_000.0, per_chunk=37)
    src = Tpx3Source(str(path), scan_shape=(SY, SX), block_packets=997, order_window_ns=2000)
    ev = ricom.reconstruct(src, kernel_size=7)
    np.testing.assert_array_equal(ev.counts, counts.sum(axis=(2, 3)))
    assert src.describe()["packets"]["chunks"] > 100 and _r(_frames(counts).ricom, ev.ricom) >= 0.9999


@pytest.mark.parametrize("trigger", ["pixel", "none"])
def test_pixel_trigger_and_dwell_time_sync(tmp_path, counts, trigger):
    path = tmp_path / f"{trigger}.tpx3"
    write_tpx3(path, counts, trigger=trigger)
    opts = {"sync": "pixel"} if trigger == "pixel" else {"dwell_ns": 1000.0, "start_ns": 500.0, "flyback_frames": 3}
    src = open_source(str(path), scan_shape=(SY, SX), **opts)
    assert src.sync_options.mode == ("pixel" if trigger == "pixel" else "dwell")
    ev = ricom.reconstruct(src, kernel_size=7)
    np.testing.assert_array_equal(ev.counts, counts.sum(axis=(2, 3)))
    assert ev.n_patterns == SY * SX


def test_acceptance_time_keeps_expected_dose(tmp_path, counts):
    path = tmp_path / "dose.tpx3"
    n = write_tpx3(path, counts)
    src = open_source(str(path), scan_shape=(SY, SX), acceptance_ns=300.0)
    with pytest.warns(UserWarning, match="mean dose"):
        ev = ricom.reconstruct(src, kernel_size=7)
    frac, p = ev.counts.sum() / n, 0.3  # arrivals uniform over the 1000 ns dwell
    assert abs(frac - p) < 4 * np.sqrt(p * (1 - p) / n)
    d = src.describe()
    assert d["mean_dose_e_per_position"] == pytest.approx(ev.counts.sum() / (SY * SX))
    assert d["dropped_by_acceptance"] == n - ev.counts.sum()
    with pytest.warns(UserWarning, match="mean dose"):
        chunks = list(open_source(str(path), scan_shape=(SY, SX), acceptance_ns=300.0, keep_times=True).chunks())
    t = np.concatenate([c.t_ns for c in chunks])
    assert t.size == ev.counts.sum() and 0 <= t.min() and t.max() < 300.0
    assert np.concatenate([c.tot for c in chunks]).min() >= 1


def test_event_com_is_subpixel_and_exact(tmp_path, counts):
    path = tmp_path / "com.tpx3"
    write_tpx3(path, counts, offset=(0, 0))  # chip 3 only: detector coordinates = pattern pixels
    src = open_source(str(path), scan_shape=(SY, SX), chip_layout="cheetah")
    settings = make_settings(kernel_size=7, center_yx=(15.5, 15.5))
    rec_e = Reconstruction((SY, SX), src.detector_shape, settings)
    ricom.engine.pipeline.run(src, rec_e)
    rec_f = Reconstruction((SY, SX), (DY, DX), settings)
    rec_f.process_frames(counts.reshape(-1, DY, DX))
    cy_e, cx_e, _ = rec_e.uncentred_com()
    cy_f, cx_f, _ = rec_f.uncentred_com()
    np.testing.assert_allclose(cx_e, cx_f, rtol=0, atol=1e-12)
    np.testing.assert_allclose(cy_e, cy_f, rtol=0, atol=1e-12)
    assert np.mean(cx_e != np.round(cx_e)) > 0.9  # not truncated to whole pixels
    # sub-pixel event coordinates stay sub-pixel
    x = np.array([1.25, 2.5, 3.0, 7.75])
    rec = Reconstruction((1, 2), (8, 8), make_settings(kernel_size=3, center_yx=(3.5, 3.5)))
    rec.process_events(EventChunk(np.array([0, 0, 1, 1]), x, x[::-1].copy(), positions_done=np.array([0, 1])))
    rec.finalize()  # few events are held back for the virtual-detector look-ups until the end
    _, cx, t = rec.uncentred_com()
    np.testing.assert_allclose(cx[0], [1.875, 5.375])
    assert rec.n_patterns == 2 and t.sum() == 4


# ---------------------------------------------------------------- .t3p and HDF5
@pytest.mark.parametrize("fmt", ["t3p", "h5", "tpx3"])
def test_generator_round_trips(tmp_path, counts, fmt):
    path = str(tmp_path / f"gen.{fmt}")
    bands = ((counts[r:r + 5].reshape(-1, DY, DX), np.arange(r * SX, min(SY, r + 5) * SX)) for r in range(0, SY, 5))
    info = write_events(path, bands, (SY, SX), (DY, DX), start_ns=ROLLOVER_NS - 20_000.0 if fmt == "tpx3" else 0.0)
    assert info["n_events"] == counts.sum()
    src = open_source(path)  # scan shape and dwell from the .ricom.json sidecar
    ev = ricom.reconstruct(src, kernel_size=7)
    np.testing.assert_array_equal(ev.counts, counts.sum(axis=(2, 3)))
    assert _r(_frames(counts).ricom, ev.ricom) >= 0.9999 and ev.n_patterns == SY * SX


def test_h5_event_layout_subpixel_and_acceptance(tmp_path):
    path = str(tmp_path / "ev.h5")
    with EventsH5Writer(path, (1, 2), (8, 8), dwell_ns=100.0, with_times=True) as w:
        w.append([0, 0, 1], [1.25, 2.5, 6.0], [3.0, 4.0, 4.5], t_ns=[10.0, 90.0, 20.0])
    assert is_event_file(path) and isinstance(open_source(path), EventsH5Source)
    rec = Reconstruction((1, 2), (8, 8), make_settings(kernel_size=3, center_yx=(3.5, 3.5)))
    with pytest.warns(UserWarning, match="mean dose 1 e/position"):
        ricom.engine.pipeline.run(open_source(path, acceptance_ns=50.0), rec)
    _, cx, t = rec.uncentred_com()
    np.testing.assert_allclose(cx, [[1.25, 6.0]])
    assert t.sum() == 2 and rec.n_patterns == 2


def test_stempy_electron_events(tmp_path, counts):
    path = str(tmp_path / "stempy.h5")
    flat = counts.reshape(SY * SX, DY * DX)
    frames = np.empty(SY * SX, object)
    for i, row in enumerate(flat):
        frames[i] = np.repeat(np.arange(DY * DX, dtype=np.uint32), row)
    with h5py.File(path, "w") as f:
        g = f.create_group("electron_events")
        sp = g.create_dataset("scan_positions", data=np.arange(SY * SX, dtype=np.int32))
        sp.attrs["Nx"], sp.attrs["Ny"] = SX, SY
        ds = g.create_dataset("frames", (SY * SX,), dtype=h5py.vlen_dtype(np.uint32))
        ds[...] = frames
        ds.attrs["Nx"], ds.attrs["Ny"] = DX, DY
    ev = ricom.reconstruct(path, kernel_size=7)
    np.testing.assert_array_equal(ev.counts, counts.sum(axis=(2, 3)))
    assert _r(_frames(counts).ricom, ev.ricom) >= 0.9999


# ---------------------------------------------------------------- bad input
def test_truncated_file_keeps_partial_result(tmp_path, counts):
    path = tmp_path / "cut.tpx3"
    write_tpx3(path, counts)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2 + 3])
    src = open_source(str(path), scan_shape=(SY, SX))
    with pytest.warns(UserWarning) as rec:
        ev = ricom.reconstruct(src, kernel_size=7, strict=False)
    text = " ".join(str(w.message) for w in rec)
    assert "partial packet" in text and "last chunk is cut short" in text and "do not fit" in text
    assert 0 < ev.n_patterns < SY * SX and 0 < ev.counts.sum() < counts.sum() and not ev.complete


def test_missing_end_trigger_is_repaired(tmp_path, counts):
    path = tmp_path / "nofall.tpx3"
    write_tpx3(path, counts, drop_falls=(3, 7))
    with pytest.warns(UserWarning, match="2 lines had no end trigger"):
        ev = ricom.reconstruct(str(path), scan_shape=(SY, SX), kernel_size=7)
    np.testing.assert_array_equal(ev.counts, counts.sum(axis=(2, 3)))


def test_trigger_count_mismatch_and_unknown_packets(tmp_path, counts):
    path = tmp_path / "junk.tpx3"
    write_tpx3(path, counts, junk=50)
    with pytest.warns(UserWarning) as rec:
        ev = ricom.reconstruct(str(path), scan_shape=(SY + 1, SX), kernel_size=7, strict=False)
    text = " ".join(str(w.message) for w in rec)
    assert "50 packets of unknown type" in text and "12 line triggers do not fit a scan of 13×10" in text
    assert ev.counts.sum() == counts.sum() and "10 of 130 scan positions" in ev.reason


def test_late_hits_are_reported(tmp_path, counts):
    path = tmp_path / "late.tpx3"
    write_tpx3(path, counts, late=5000.0)
    src = Tpx3Source(str(path), scan_shape=(SY, SX), order_window_ns=100.0, block_packets=500)
    with pytest.warns(UserWarning, match="late"):
        ev = ricom.reconstruct(src, kernel_size=7)
    assert ev.counts.sum() > 0.95 * counts.sum()  # late hits still count where their line is known


def test_missing_triggers_and_bad_files(tmp_path, counts):
    path = tmp_path / "notrig.tpx3"
    write_tpx3(path, counts, trigger="none")
    with pytest.raises(SettingsError, match="dwell"):
        open_source(str(path), scan_shape=(SY, SX))
    with pytest.raises(InputError, match="no line triggers"):
        ricom.reconstruct(open_source(str(path), scan_shape=(SY, SX), sync="line"))
    with pytest.raises(SettingsError, match="scan shape"):
        open_source(str(path))
    empty = tmp_path / "empty.t3p"
    empty.write_bytes(b"abc")
    with pytest.raises(InputError, match=r"no \.t3p records"):
        open_source(str(empty), scan_shape=(2, 2), dwell_ns=10)
    (tmp_path / "one.t3p").write_bytes(bytes(16))
    with pytest.raises(SettingsError, match="dwell"):
        open_source(str(tmp_path / "one.t3p"), scan_shape=(2, 2))


# ---------------------------------------------------------------- engine and CLI
def test_engine_events_visits_and_com_mask(counts):
    settings = make_settings(kernel_size=5, com_mask_px=(2.0, 9.0), center_yx=(15.3, 15.6), virtual_detector=(4, 9))
    fr = Reconstruction((SY, SX), (DY, DX), settings)
    fr.process_frames(counts.reshape(-1, DY, DX))
    fr.finalize()
    flat = counts.reshape(SY * SX, -1)
    p, pix = np.nonzero(flat)
    rep = flat[p, pix]
    p, pix = np.repeat(p, rep), np.repeat(pix, rep)
    for dtype in (np.uint16, np.float64):  # look-up path and radius path
        ev = Reconstruction((SY, SX), (DY, DX), settings)
        ev.process_events(EventChunk(np.append(p, -1), np.append(pix % DX, 0).astype(dtype),
                                     np.append(pix // DX, 0).astype(dtype)))
        ev.finalize()
        a, b = fr.snapshot(), ev.snapshot()
        assert b.n_patterns == SY * SX  # no positions_done: first visits count
        np.testing.assert_allclose(b.ricom, a.ricom, atol=1e-12 * np.abs(a.ricom).max())
        np.testing.assert_array_equal(b.virtual["vadf"], a.virtual["vadf"])


def test_engine_events_without_virtual_detectors():
    rec = Reconstruction((2, 2), (8, 8), ricom.Settings(kernel=ricom.KernelSettings(3)))
    xy = np.array([1, 2, 3, 4], np.uint16)
    rec.process_events(EventChunk(np.arange(4), xy, xy, positions_done=np.arange(4)))
    np.testing.assert_array_equal(rec.uncentred_com()[1], [[1, 2], [3, 4]])  # not held back: nothing to estimate
    assert rec.n_patterns == 4 and rec.n_events == 4


def test_cli_simulate_events_and_reconstruct(tmp_path):
    from ricom.cli.main import main

    for fmt in ("tpx3", "t3p"):
        path = str(tmp_path / f"sim.{fmt}")
        assert main(["simulate", "events", "-o", path, "--scan-shape", "6", "6", "--detector-shape", "16", "16",
                     "--dose", "40"]) == 0
        assert main(["reconstruct", path, "-o", str(tmp_path / f"sim_{fmt}.h5"), "--no-progress",
                     "--kernel-size", "5"]) == 0
        with h5py.File(tmp_path / f"sim_{fmt}.h5") as f:
            assert f.attrs["n_patterns"] == 36 and np.isfinite(f["ricom"][:]).all()
