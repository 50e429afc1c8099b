"""Timepix3 readers validate their input and never allocate absurd sizes (issue 18, the Timepix3 items).

Every file here is written by the project's own writer (`ricom.simulators.events.write_events`
or ``ricom simulate events``) and then damaged as an attack did: cut at a record boundary,
chunk headers removed, one byte of one time field changed, a sidecar value of the wrong
kind.  The expected numbers (the line the events end in, the events kept) are computed from
the written records independently of the readers.
"""
from __future__ import annotations

import json
import time
import warnings

import numpy as np
import pytest

from ricom.api import reconstruct_run
from ricom.cli.main import main
from ricom.core.errors import InputError, SettingsError
from ricom.simulators.events import write_events
from ricom.sources import open_source
from ricom.sources.timepix import plausible
from ricom.sources.timepix.plausible import MAX_PASSES, screen_hits
from ricom.sources.timepix.sync import TICK_NS, SyncOptions
from ricom.sources.timepix.t3p import RECORD

SCAN, DET, DWELL = (8, 8), (16, 16), 1000.0
N = SCAN[0] * SCAN[1]
MAGIC = 0x33585054


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A .t3p and two .tpx3 (line triggers; none, for dwell sync) of an 8×8 scan, and their sidecars."""
    folder = tmp_path_factory.mktemp("tpx")
    counts = np.random.default_rng(0).poisson(0.6, (N, *DET)).astype(np.int64)
    out = {"folder": folder, "events": int(counts.sum())}
    for name, gap in (("scan.t3p", 2000.0), ("line.tpx3", 2000.0), ("dwell.tpx3", 0.0)):
        write_events(str(folder / name), [(counts, np.arange(N))], SCAN, DET, chip_layout="single",
                     jitter_ns=200.0, line_gap_ns=gap)
        out[name] = (folder / name).read_bytes()
    return out


def _place(files, name: str, data: bytes, new: str, sidecar=None) -> str:
    """``data`` written as ``new`` beside the sidecar of ``name`` (changed by ``sidecar(dict)``)."""
    folder = files["folder"]
    (folder / new).write_bytes(data)
    side = json.loads((folder / f"{name}.ricom.json").read_text())
    if sidecar is not None:
        sidecar(side)
    (folder / f"{new}.ricom.json").write_text(json.dumps(side))
    return str(folder / new)


def _run(path: str, **options):
    """(RunResult, source, warning texts) of a whole reconstruction, and it must be quick."""
    t0 = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result, _, source = reconstruct_run(path, kernel_size=5, source_options=options)
    assert time.perf_counter() - t0 < 30
    return result, source, " | ".join(str(w.message) for w in caught)


def _t3p_times_ns(data: bytes) -> np.ndarray:
    rec = np.frombuffer(data, RECORD)
    return 25.0 * rec["toa"].astype(np.float64) - 1.5625 * rec["ftoa"]


def _corrupt_t3p(files, record: int, byte: int, value: int) -> bytes:
    data = bytearray(files["scan.t3p"])
    data[16 * record + 4 + byte] = value  # the uint64 ToA of that record
    return bytes(data)


# ------------------------------------------------------------------ truncated files
def test_t3p_cut_at_a_record_boundary_is_partial_and_says_where(files):
    data = files["scan.t3p"]
    cut = data[: 16 * (len(data) // 16 * 5 // 8)]
    result, source, text = _run(_place(files, "scan.t3p", cut, "cut.t3p"))
    last_slot = int(_t3p_times_ns(cut).max() // DWELL)  # the dwell clock from 0 ns: slot = t // dwell
    done = last_slot + 1
    assert source.describe()["positions_done"] == done < N
    assert f"the events end at {100 * done / N:.0f} % of the scan (line {done // SCAN[1] + 1} of {SCAN[0]})" in text
    assert not result.complete and f"{N - done} of {N} scan positions received no pattern" in result.reason


def test_cli_truncated_t3p_from_ricom_simulate_exits_3(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["simulate", "events", "-o", "s.t3p", "--scan-shape", "8", "8", "--detector-shape", "16", "16",
                 "--dose", "50"]) == 0
    data = (tmp_path / "s.t3p").read_bytes()
    (tmp_path / "s.t3p").write_bytes(data[: 16 * (len(data) // 16 // 2)])
    capsys.readouterr()
    assert main(["reconstruct", "s.t3p", "-o", "r.h5", "--no-progress"]) == 3
    err = capsys.readouterr().err
    assert "the events end at" in err and "scan positions received no pattern" in err


def test_tpx3_cut_at_a_packet_boundary_is_partial(files):
    data = files["line.tpx3"]
    result, _, text = _run(_place(files, "line.tpx3", data[: 8 * (len(data) // 8 // 2)], "cut.tpx3"))
    assert not result.complete and "scan positions received no pattern" in result.reason
    assert "do not fit a scan of 8×8" in text


# ------------------------------------------------------------------ chunk headers
def test_tpx3_without_chunk_headers_is_an_error(files):
    words = np.frombuffer(files["line.tpx3"], "<u8")
    path = _place(files, "line.tpx3", words[(words & 0xFFFFFFFF) != MAGIC].tobytes(), "nohead.tpx3")
    n_hits = files["events"]  # one hit packet per event
    for layout in (None, "cheetah"):
        with pytest.raises(InputError, match=rf"{n_hits:,} pixel hits but no TPX3 chunk headers .* not a Serval raw "
                                             r"file, or its headers were lost"):
            open_source(path, chip_layout=layout)


def test_tpx3_hits_outside_any_chunk_are_warned(files):
    words = np.frombuffer(files["line.tpx3"], "<u8")
    heads = np.flatnonzero((words & 0xFFFFFFFF) == MAGIC)
    keep = np.ones(words.size, bool)
    keep[heads[1::2]] = False  # every second header lost: its packets lie outside any chunk
    path = _place(files, "line.tpx3", words[keep].tobytes(), "halfhead.tpx3")
    _, _, text = _run(path)
    assert "packets lay outside any chunk" in text


# ------------------------------------------------------------------ corrupt times
def _t3p_ticks(data: bytes) -> np.ndarray:
    """Record times in ticks of 3.125/12 ns as 64-bit integers (25 ns = 96 ticks; wrapping as the reader's)."""
    rec = np.frombuffer(data, RECORD)
    return rec["toa"].astype(np.int64) * 96 - rec["ftoa"].astype(np.int64) * 6


@pytest.mark.parametrize(("byte", "block"), [(b, 1 << 20) for b in range(8)] + [(2, 1000), (5, 3)])
def test_one_corrupt_byte_of_a_t3p_time_is_left_out_or_harmless(files, byte, block):
    n_rec = len(files["scan.t3p"]) // 16
    gap = 2e5 / TICK_NS  # the default order window (200 µs) in ticks
    for record in (0, n_rec // 2, n_rec - 1):
        data = _corrupt_t3p(files, record, byte, 0xFF)
        t = _t3p_ticks(data)
        others = np.delete(t, record)
        result, source, text = _run(_place(files, "scan.t3p", data, "bad.t3p"), block_records=block)
        d = source.describe()
        if t[record] > others.max() + gap:  # far after every other event: left out and reported
            assert "1 event with times far outside the scan was left out" in text
            assert d["positions_done"] == N and result.snapshot.n_patterns == N and result.complete
            assert d["events_kept"] == files["events"] - 1
        elif t[record] < 0:  # before the scan began: outside it (no position)
            assert d["positions_done"] == N and result.complete and d["events_kept"] == files["events"] - 1
        else:  # a time inside the scan: the event moves, nothing more
            assert d["positions_done"] <= N + SCAN[1] and d["events_kept"] >= files["events"] - 1


@pytest.mark.parametrize("block", [1 << 20, 997])  # one block; many (the decoders pre-check the clean ones)
def test_one_corrupt_hit_time_under_dwell_sync_makes_no_positions(files, block):
    words = np.frombuffer(files["dwell.tpx3"], "<u8").copy()
    hits = np.flatnonzero((words >> np.uint64(60)) == 0xB)
    words[hits[hits.size // 2]] ^= np.uint64(0x4000)  # bit 14 of its SPIDR time: 6.7 s later (6.7 M positions)
    result, source, text = _run(_place(files, "dwell.tpx3", words.tobytes(), "bad.tpx3"), sync="dwell",
                                dwell_ns=DWELL, block_packets=block)
    d = source.describe()
    assert "1 event with times far outside the scan was left out" in text
    assert result.snapshot.n_patterns == N and d["positions_done"] == N and result.complete
    assert d["events_kept"] == files["events"] - 1


def test_one_corrupt_hit_time_under_line_sync_loses_no_other_event(files):
    words = np.frombuffer(files["line.tpx3"], "<u8").copy()
    hits = np.flatnonzero((words >> np.uint64(60)) == 0xB)
    words[hits[hits.size // 3]] ^= np.uint64(0x4000)
    result, source, text = _run(_place(files, "line.tpx3", words.tobytes(), "badline.tpx3"))
    d = source.describe()
    assert "1 event with times far outside the scan was left out" in text and "late" not in text
    assert d["events_kept"] == files["events"] - 1 and result.complete


# ------------------------------------------------------------------ options and sizes
@pytest.mark.parametrize(("options", "match"), [
    ({"dwell_ns": 1e-3}, "dwell_ns must be at least 1.5625"),
    ({"dwell_ns": float("inf")}, "dwell_ns must be a finite number"),
    ({"dwell_ns": float("nan")}, "dwell_ns must be a finite number"),
    ({"dwell_ns": "1000"}, "dwell_ns must be a finite number"),
    ({"start_ns": float("nan")}, "start_ns must be a finite number"),
    ({"acceptance_ns": -5.0}, "acceptance_ns must be positive"),
    ({"order_window_ns": float("inf")}, "order_window_ns must be a finite number"),
])
def test_implausible_options_are_settings_errors(files, options, match):
    path = _place(files, "scan.t3p", files["scan.t3p"], "opt.t3p")
    with pytest.raises(SettingsError, match=match) as exc:
        reconstruct_run(path, kernel_size=5, source_options=options)
    assert exc.value.parameters == (next(iter(options)),)


@pytest.mark.parametrize(("field", "value"), [
    ("scan_shape", (0, 8)), ("scan_shape", (8.5, 8)), ("skip_frames", -1), ("flyback_frames", 1.5),
    ("skip_lines", True), ("keep_times", "yes"), ("mode", "clock")])
def test_sync_options_refuse_values_of_the_wrong_kind(field, value):
    options = {"scan_shape": SCAN, "mode": "dwell", "dwell_ns": DWELL, field: value}
    with pytest.raises(SettingsError):
        SyncOptions(**options)


def test_a_dwell_time_the_events_cannot_fill_is_an_input_error(files):
    path = _place(files, "scan.t3p", files["scan.t3p"], "short.t3p")
    span_ns = _t3p_times_ns(files["scan.t3p"]).max()
    dwell = 2.0  # 1.5625 ≤ dwell: allowed alone, but the events then span hundreds of passes
    assert span_ns / (N * dwell) > 10 and span_ns / dwell > files["events"]  # (what the check sees)
    with pytest.raises(InputError, match="fewer than one each") as exc:
        _run(path, dwell_ns=dwell)
    assert "dwell_ns" in exc.value.parameters


def test_events_far_after_start_ns_are_an_input_error_before_allocation(files):
    path = _place(files, "scan.t3p", files["scan.t3p"], "early.t3p")
    start = -2 * MAX_PASSES * N * DWELL  # the scan said to start long before the events
    with pytest.raises(InputError, match=f"more than {MAX_PASSES:,}") as exc:
        _run(path, start_ns=start)
    assert set(exc.value.parameters) == {"dwell_ns", "scan_shape"} and "start_ns" in str(exc.value)


def test_positions_beyond_the_memory_budget_are_refused(files, monkeypatch):
    path = _place(files, "scan.t3p", files["scan.t3p"], "mem.t3p")
    monkeypatch.setattr(plausible, "memory_budget_bytes", lambda: 10 * plausible.BYTES_PER_SLOT)
    with pytest.raises(InputError, match=r"would list .* scan positions at once"):
        _run(path)


# ------------------------------------------------------------------ sidecars
@pytest.mark.parametrize(("key", "value"), [("dwell_ns", "1000"), ("dwell_ns", 1e-3), ("scan_shape", "8x8"),
                                            ("scan_shape", [8, 0])])
def test_t3p_sidecar_values_of_the_wrong_kind_are_ignored_with_a_warning(files, key, value):
    path = _place(files, "scan.t3p", files["scan.t3p"], "side.t3p", lambda s: s["events"].update({key: value}))
    with pytest.warns(UserWarning, match=rf"events\.{key} must be .*; ignored"), \
            pytest.raises(SettingsError, match=rf"give .*{key}"):
        open_source(path)


@pytest.mark.parametrize(("key", "value"), [("chip_layout", 5), ("chip_layout", [[1, 2, "x", 1]]),
                                            ("sync", 3), ("dwell_ns", "1000")])
def test_tpx3_sidecar_values_of_the_wrong_kind_are_ignored_with_a_warning(files, key, value):
    path = _place(files, "line.tpx3", files["line.tpx3"], "side.tpx3", lambda s: s["events"].update({key: value}))
    with pytest.warns(UserWarning, match=rf"events\.{key} must be .*; ignored"):
        source = open_source(path)
    assert source.sync_options.mode == "line" and source.detector_shape == (256, 256)


# ------------------------------------------------------------------ the screening kernel
def _reference_screen(t, gap, k, ref=None):
    """The outlier rule written out with Python lists (see `screen_hits`)."""
    kept, out = [], 0
    for i, ti in enumerate(t):
        if ref is None or ti - ref > gap:
            after = t[i + 1:i + 1 + k]
            follow = sum(1 for v in after if v - ti >= -gap)
            if (not after and ref is not None) or (after and 2 * follow <= len(after)):
                out += 1
                continue
        ref = ti if ref is None else max(ref, ti)
        kept.append(i)
    return kept, out


def test_screen_hits_matches_the_rule_written_out():
    rng = np.random.default_rng(5)
    gap = 1000
    for trial in range(30):
        n = int(rng.integers(4, 400))
        t = np.sort(rng.integers(0, 50 * n, n)) + rng.integers(0, 300, n)  # out of order within 300 ticks
        bad = rng.choice(n, int(rng.integers(0, 4)), replace=False)
        t[bad] += rng.choice([10**6, 10**12, -(10**9)], bad.size)  # far ahead (and far behind: kept, late)
        if trial % 5 == 0:
            t[n // 2:] += 10**7  # a real pause: the hits after it follow
        x = np.arange(n, dtype=np.uint16)
        bufs = [t.astype(np.int64), x.copy(), x.copy(), x.copy()]
        state = np.zeros(2, np.int64)
        end, n_out = screen_hits(*bufs, 0, n, gap, 8, state)
        kept, out = _reference_screen(t.tolist(), gap, 8)
        assert n_out == out and end == len(kept)
        np.testing.assert_array_equal(bufs[1][:end], kept)
        np.testing.assert_array_equal(bufs[0][:end], t[kept])
        assert state[0] == t[kept].max() and state[1] == 1


def test_screen_hits_keeps_every_hit_of_a_clean_stream_in_any_block_split():
    rng = np.random.default_rng(6)
    t = (np.arange(5000) * 40 + rng.integers(0, int(2e5 / TICK_NS), 5000)).astype(np.int64)  # window-late
    state = np.zeros(2, np.int64)
    for a, b in ((0, 1), (1, 7), (7, 2500), (2500, 5000)):
        part = [t[a:b].copy(), *(np.zeros(b - a, np.uint16) for _ in range(3))]
        end, n_out = screen_hits(*part, 0, b - a, int(2e5 / TICK_NS), 8, state)
        assert n_out == 0 and end == b - a


def test_the_bench_file_is_screened_without_loss(tmp_path):
    """A sizeable stream (several blocks, a quad, ~40 events per position): nothing is left out."""
    rng = np.random.default_rng(7)
    counts = rng.poisson(0.15, (16 * 16, 32, 32)).astype(np.int64)
    path = str(tmp_path / "big.tpx3")
    write_events(path, [(counts, np.arange(256))], (16, 16), (32, 32))
    result, source, _ = _run(path, block_packets=4096)
    assert source.describe()["events_kept"] == counts.sum() and result.complete


@pytest.mark.parametrize("name", ["scan.t3p", "line.tpx3"])
def test_a_scan_shape_beyond_memory_is_refused_at_open(files, name):
    huge = [10**6, 10**6]
    path = _place(files, name, files[name], f"huge.{name.split('.')[1]}",
                  lambda s: s["events"].update({"scan_shape": huge}))
    with pytest.raises(InputError, match=r"scan shape 1000000×1000000 \(from the \.ricom\.json sidecar\)"):
        open_source(path)
    with pytest.raises(SettingsError, match=r"scan shape 1000000×1000000 \(given\)"):
        open_source(path, scan_shape=huge)
