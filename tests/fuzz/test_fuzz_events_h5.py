"""Fuzzing the HDF5 event-list reader (ricom's ``/events`` and stempy's ``/electron_events``
layouts): files whose attributes and datasets are damaged, end to end through the pipeline."""
from __future__ import annotations

import os

import h5py
import numpy as np
import pytest
from e2e import reconstruct
from fuzzkit import INTERESTING, bounded, fuzz
from hypothesis import example, given
from hypothesis import strategies as st

from ricom.sources.events_h5 import EventsH5Writer

SCAN, DET = (3, 4), (16, 16)

SMALL = st.sampled_from((-1, 0, 1, 2, 3, 4, 12, 16, 255, 65536, 1 << 31, 1 << 40)) | st.integers(-3, 20)


def _ricom_file(path: str) -> None:
    rng = np.random.default_rng(0)
    with EventsH5Writer(path, SCAN, DET, dwell_ns=1000.0, with_times=True) as w:
        for p in range(SCAN[0] * SCAN[1]):
            n = int(rng.integers(1, 6))
            w.append(np.full(n, p), rng.uniform(0, 15, n), rng.uniform(0, 15, n), rng.uniform(0, 900, n),
                     rng.integers(1, 50, n))


@st.composite
def damage(draw):
    """Edits of the ricom layout: attributes replaced or removed, datasets replaced or removed."""
    out = []
    for _ in range(draw(st.integers(1, 3))):
        what = draw(st.sampled_from(("scan_shape", "detector_shape", "dwell_ns", "format", "center_yx",
                                     "offsets", "x", "y", "t_ns", "tot")))
        how = draw(st.sampled_from(("remove", "scalar", "pair", "array", "text")))
        value = draw(SMALL)
        length = draw(st.integers(0, 20))
        out.append((what, how, value, length))
    return out


def _damage(path: str, edits) -> None:
    with h5py.File(path, "r+") as f:
        g = f["events"]
        for what, how, value, length in edits:
            attr = what in ("scan_shape", "detector_shape", "dwell_ns", "format", "center_yx")
            holder = g.attrs if attr else g
            if what in holder:
                del holder[what]
            if how == "remove":
                continue
            data = {"scalar": value, "pair": [value, abs(value) % 7], "text": "x" * (length % 5),
                    "array": np.arange(length, dtype=np.int64) * value}[how]
            if attr:
                holder[what] = data
            else:
                g.create_dataset(what, data=np.asarray(data, "S") if how == "text" else np.asarray(data))


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return tmp_path_factory.mktemp("events_h5")


def _check(out) -> None:
    if out.error is None:
        assert out.value.complete or out.value.flagged or out.flagged, "a partial result without an error or a warning"


def test_seed_file_is_complete(folder):
    path = str(folder / "seed.h5")
    _ricom_file(path)
    out = bounded(lambda: reconstruct(path), os.path.getsize(path))
    assert out.error is None and out.value.complete and not out.warnings


@fuzz(40)
@given(damage())
@example([("scan_shape", "remove", 0, 0)])  # KeyError
@example([("x", "remove", 0, 0)])  # KeyError while reading
@example([("y", "scalar", -1, 0)])  # ValueError from h5py while reading
@example([("offsets", "array", 1 << 40, 13)])  # offsets past the stored events
def test_ricom_layout(folder, edits):
    path = str(folder / "ricom.h5")
    _ricom_file(path)
    _damage(path, edits)
    _check(bounded(lambda: reconstruct(path), os.path.getsize(path)))


@fuzz(25)
@given(st.integers(0, 8), st.sampled_from(INTERESTING[:12]) | SMALL, SMALL, SMALL, st.booleans(), st.booleans())
@example(2, 1, 4, 3, True, True)  # 2 rows of a 3×4 scan: was a silent partial scan
@example(1, 1, 0, -1, True, True)  # a negative scan shape: ValueError in the engine
def test_stempy_layout(folder, rows, index, nx, ny, with_positions, with_dims):
    path = str(folder / "stempy.h5")
    rng = np.random.default_rng(rows)
    with h5py.File(path, "w") as f:
        g = f.create_group("electron_events")
        vlen = h5py.vlen_dtype(np.uint32)
        frames = g.create_dataset("frames", (rows,), dtype=vlen)
        for r in range(rows):
            frames[r] = (rng.integers(0, 256, int(rng.integers(0, 5))) * (index % (1 << 32) or 1)).astype(np.uint32)
        if with_dims:
            frames.attrs["Nx"], frames.attrs["Ny"] = nx, ny
        if with_positions:
            sp = g.create_dataset("scan_positions", data=(np.arange(rows) * max(1, abs(nx) % 5)).astype(np.int64))
            sp.attrs["Nx"], sp.attrs["Ny"] = nx, ny
    _check(bounded(lambda: reconstruct(path), os.path.getsize(path)))
