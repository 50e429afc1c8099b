"""The frame cases of ``ricom bench``: the fresh-process case, aged inputs, the HDF5 case and
the one-thread memory read beside multi-thread cases (tiny inputs)."""
import os

import numpy as np

from ricom.tools.bench_core import age_in_page_cache, memread_pair, settle_in_page_cache, synthetic_frames
from ricom.tools.bench_frames import bench_fresh, bench_h5, bench_mib, write_npy_scan


def test_aged_copy_has_the_same_bytes(tmp_path):
    src = tmp_path / "a.bin"
    src.write_bytes(np.arange(300_000, dtype=np.uint32).tobytes())
    aged = age_in_page_cache(str(src), str(tmp_path / "b.bin"))
    assert open(aged, "rb").read() == src.read_bytes()
    assert age_in_page_cache(str(src), aged) == aged  # made once


def test_memread_pair_gives_the_one_thread_rate_beside_two():
    buf = np.zeros(8 << 20, np.uint8)
    rate, note = memread_pair(buf, 1)
    assert rate > 0 and note == ""
    rate2, note2 = memread_pair(buf, 2)
    assert rate2 > 0 and "memread 1 thread" in note2 and "2 threads" in note2


def test_fresh_case_runs_the_command_line_in_a_new_process(tmp_path):
    rec = bench_fresh(str(tmp_path), (8, 8), (64, 64), depth=12, kernel=5, threads=1, repeat=1)
    assert rec.case == "fresh mib 12-bit" and rec.n_patterns == 64
    assert rec.patterns_per_s > 0 and rec.memread_ratio > 0 and "outside seconds_processing" in rec.note
    assert os.path.exists(tmp_path / "bench_64_12_aged.mib") and not os.path.exists(tmp_path / "bench_fresh.h5")


def test_h5_and_aged_mib_cases_reconstruct_every_pattern(tmp_path):
    h5 = bench_h5(str(tmp_path), (8, 8), (64, 64), kernel=5, threads=2)
    assert h5.case == "hdf5 uint16" and h5.n_patterns == 64 and "memread 1 thread" in h5.note
    mib = bench_mib(str(tmp_path), (8, 8), (64, 64), depth=12, raw=False, kernel=5, threads=1, aged=True)
    assert mib.case == "mib 12-bit aged" and mib.n_patterns == 64


def test_written_inputs_are_settled_with_their_bytes(tmp_path):
    """The `.npy` is written by ``write`` (not through a mapping), synced and read back: the
    same patterns as the synthetic set, repeated in scan order."""
    path = str(tmp_path / "a.npy")
    write_npy_scan(path, (20, 30), (16, 16))
    data = np.load(path, mmap_mode="r")
    assert data.shape == (20, 30, 16, 16) and data.dtype == np.uint16
    np.testing.assert_array_equal(data.reshape(-1, 16, 16), np.resize(synthetic_frames(256, (16, 16), 4095),
                                                                       (600, 16, 16)))
    other = tmp_path / "b.bin"
    other.write_bytes(b"abc" * 5000)
    assert settle_in_page_cache(str(other)) == str(other) and other.read_bytes() == b"abc" * 5000


def test_mib_case_with_the_command_lines_settings(tmp_path):
    rec = bench_mib(str(tmp_path), (8, 8), (64, 64), depth=12, raw=False, kernel=5, threads=1, aged=True, cli=True)
    assert rec.case == "mib 12-bit aged cli settings" and rec.n_patterns == 64 and rec.patterns_per_s > 0
