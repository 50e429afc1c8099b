"""HDF5 datasets as sources: ``file.h5:/path/to/dataset``, or ``file.h5`` alone.

Without a dataset path the file's single 3D or 4D dataset is used; DECTRIS-style master
files whose frames are split over ``data_000001, data_000002, …`` (in one group, often
external links) are joined in order.  Data is read a block of frames (whole scan rows
for 4D data, whole HDF5 chunks where possible) at a time, never whole.  Compressed data
needs its filter: gzip/lzf come with h5py; bitshuffle-LZ4 (DECTRIS ARINA) and others
need ``hdf5plugin``, which is used when installed.  A ``pixel_mask`` dataset beside the
frames (a recording of a DECTRIS detector, `ricom.io.recorder`) is applied to every chunk
(`ricom.sources.dectris.mask`).

EMD 1.0 files (py4DSTEM, emdfile: ``.emd`` or ``.h5``) hold each array as a group with
attribute ``emd_group_type`` 1, a ``data`` dataset and ``dim1 … dimN`` axis vectors
(``units`` attribute).  A datacube is found by its group name (``file.emd:datacube``,
anywhere in the tree) or, without a name, as the file's one 3D/4D EMD array; a scan step
in Å or nm along ``dim1`` becomes the step hint.
"""
from __future__ import annotations

import contextlib
import os
import posixpath
import re

import h5py
import numpy as np

from ricom.core.errors import InputError
from ricom.sources.dectris.mask import PixelMask
from ricom.sources.raw import LazyArraySource

with contextlib.suppress(ImportError):
    import hdf5plugin  # noqa: F401 - registers bitshuffle/LZ4 and other filters

H5_EXTENSIONS = (".h5", ".hdf5", ".hdf", ".nxs", ".emd", ".h5ebsd")
_CHUNK_CACHE = 128 * 2**20


def split_spec(spec: str) -> tuple[str, str | None]:
    """``"file.h5:/a/b"`` → ``("file.h5", "/a/b")``; ``"file.h5"`` → ``("file.h5", None)``."""
    low = spec.lower()
    for ext in H5_EXTENSIONS:
        i = low.find(ext + ":")
        if i >= 0:
            return spec[:i + len(ext)], spec[i + len(ext) + 1:] or None
    return spec, None


class _Stacked:
    """Several 3D datasets with equal frame shape, read as one ``(Σn, dy, dx)`` array."""

    def __init__(self, parts: list) -> None:
        self.parts = parts
        self.bounds = np.cumsum([0] + [p.shape[0] for p in parts])
        self.shape = (int(self.bounds[-1]), *parts[0].shape[1:])
        self.dtype = parts[0].dtype
        self.chunks = parts[0].chunks

    def __getitem__(self, key):
        if not isinstance(key, slice) or key.step not in (None, 1):
            raise TypeError("only contiguous frame ranges can be read")
        a, b, _ = key.indices(self.shape[0])
        out = []
        for k, part in enumerate(self.parts):
            lo, hi = max(a, self.bounds[k]), min(b, self.bounds[k + 1])
            if lo < hi:
                out.append(part[lo - self.bounds[k]:hi - self.bounds[k]])
        return np.concatenate(out) if out else np.zeros((0, *self.shape[1:]), self.dtype)


def _frame_datasets(group: h5py.Group) -> list[tuple[str, h5py.Dataset]]:
    """Every dataset of ≥ 3 dimensions below ``group`` (following external links one level)."""
    found: dict[str, h5py.Dataset] = {}

    def visit(name, obj):
        if isinstance(obj, h5py.Dataset) and obj.ndim >= 3:
            found.setdefault(posixpath.join(group.name, name), obj)

    with contextlib.suppress(KeyError, OSError):  # broken external links are skipped
        group.visititems(visit)
    for sub in [group] + [g for g in group.values() if isinstance(g, h5py.Group)]:
        for name in sub:  # visititems does not follow external links
            with contextlib.suppress(KeyError, OSError):
                obj = sub[name]
                if isinstance(obj, h5py.Dataset) and obj.ndim >= 3:
                    found.setdefault(posixpath.join(sub.name, name), obj)
    return sorted(found.items())


def _series(found: list) -> list | None:
    """Datasets named ``data_<number>`` in one group with one frame shape, in number order."""
    keyed = []
    for name, ds in found:
        m = re.fullmatch(r"(.*/)data_(\d+)", name)
        if not m or ds.ndim != 3:
            return None
        keyed.append((m.group(1), int(m.group(2)), ds))
    if len({k[0] for k in keyed}) != 1 or len({k[2].shape[1:] for k in keyed}) != 1:
        return None
    return [k[2] for k in sorted(keyed, key=lambda k: k[1])]


def _check_filters(ds, name: str) -> None:
    plist = ds.id.get_create_plist()
    for i in range(plist.get_nfilters()):
        code, _, _, fname = plist.get_filter(i)
        if not h5py.h5z.filter_avail(code):
            label = fname.decode(errors="replace") if isinstance(fname, bytes) else str(fname)
            raise InputError(f"{name}: the data is compressed with HDF5 filter {code} ({label}), which this "
                             f"installation lacks; install hdf5plugin (pip install hdf5plugin)")


def _first_line(exc: BaseException) -> str:
    """The first line of an h5py error (its messages can run over several lines)."""
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


HINT_KEYS = ("step_A", "pixel_size_mrad", "energy_keV", "rotation_deg")
"""Numeric dataset attributes read as calibration hints (and ``center_yx``: `dataset_hints`)."""


def dataset_hints(ds) -> dict:
    """Calibration stored as numeric attributes of the dataset (as `ricom.io.recorder` writes them):
    ``step_A``, ``pixel_size_mrad``, ``energy_keV``, ``rotation_deg`` and ``center_yx``."""
    hints = {}
    attrs = getattr(ds, "attrs", {})
    for key in HINT_KEYS:
        with contextlib.suppress(TypeError, ValueError, KeyError):
            hints[key] = float(attrs[key])
    with contextlib.suppress(TypeError, ValueError, KeyError):
        cy, cx = (float(v) for v in attrs["center_yx"])
        hints["center_yx"] = (cy, cx)
    return hints


def recorded_mask(ds, detector_shape) -> PixelMask | None:
    """The `PixelMask` of a 2D integer ``pixel_mask`` dataset beside ``ds`` (NXmx bits; its
    ``bit_depth`` attribute, when present, also leaves out readings of 2^bit_depth − 1)."""
    with contextlib.suppress(KeyError, OSError, TypeError, ValueError, InputError):  # not a mask of these frames
        pm = ds.parent.get("pixel_mask")
        if isinstance(pm, h5py.Dataset) and pm.ndim == 2 and pm.dtype.kind in "ui":
            depth = pm.attrs.get("bit_depth")
            return PixelMask.from_detector_mask(pm[()], int(depth) if depth is not None else None, detector_shape)
    return None


def _mapped(path: str, ds) -> np.memmap | None:
    """The dataset memory-mapped if it is stored in one contiguous, unfiltered block of the
    file (read in place like a `.npy`, not copied by HDF5), else None."""
    try:
        if not isinstance(ds, h5py.Dataset) or ds.chunks is not None or ds.compression or ds.external \
                or ds.dtype.kind not in "uif":
            return None
        offset = ds.id.get_offset()
        return None if offset is None else np.memmap(path, ds.dtype, "r", offset=offset, shape=ds.shape)
    except (OSError, ValueError, TypeError):
        return None


def _is_emd_array(obj) -> bool:
    """An EMD 1.0 data group (``emd_group_type`` 1) holding a 3D/4D ``data`` dataset."""
    if not isinstance(obj, h5py.Group):
        return False
    kind = obj.attrs.get("emd_group_type")
    kind = kind.decode() if isinstance(kind, bytes) else kind
    data = obj.get("data", getclass=True)
    return str(kind) == "1" and data is h5py.Dataset and obj["data"].ndim in (3, 4)


def emd_arrays(f: h5py.File) -> list[tuple[str, h5py.Group]]:
    """Every EMD 1.0 data group with 3D/4D data in ``f``: (path, group)."""
    found: list[tuple[str, h5py.Group]] = []

    def visit(name, obj):
        if _is_emd_array(obj):
            found.append(("/" + name, obj))

    with contextlib.suppress(KeyError, OSError):
        f.visititems(visit)
    return found


def _emd_named(f: h5py.File, name: str) -> h5py.Group | None:
    """The EMD data group called ``name`` (its path or its last component); an error if several are."""
    key = name.strip("/")
    hits = [(p, g) for p, g in emd_arrays(f) if p.strip("/") == key or p.rsplit("/", 1)[-1] == key]
    if len(hits) > 1:
        raise InputError(f"{f.filename}: several EMD arrays are called {name!r} ({', '.join(p for p, _ in hits)}); "
                         f"give the full path as {f.filename}:<path>")
    return hits[0][1] if hits else None


def emd_hints(group: h5py.Group) -> dict:
    """``step_A`` from the first scan axis ``dim1`` of an EMD group when it is in Å or nm."""
    with contextlib.suppress(KeyError, OSError, TypeError, ValueError, IndexError):
        dim = group["dim1"]
        unit = dim.attrs.get("units", b"")
        unit = (unit.decode() if isinstance(unit, bytes) else str(unit)).strip()
        scale = {"A": 1.0, "Å": 1.0, "angstrom": 1.0, "nm": 10.0}.get(unit)
        values = np.asarray(dim[:2], dtype=float)
        if scale and values.size == 2 and values[1] != values[0]:
            return {"step_A": abs(float(values[1] - values[0])) * scale}
    return {}


def _emd_choice(f: h5py.File, dataset: str | None) -> h5py.Group | None:
    """The EMD array an input names (``dataset`` not a path in the file), or the file's only one."""
    if dataset is not None:
        try:
            obj = f.get(dataset)
        except (KeyError, OSError, ValueError):
            obj = None
        return obj if _is_emd_array(obj) else _emd_named(f, dataset) if obj is None else None
    arrays = emd_arrays(f)
    four = [g for _, g in arrays if g["data"].ndim == 4]
    return four[0] if len(four) == 1 else arrays[0][1] if len(arrays) == 1 else None


class HDF5Source(LazyArraySource):
    """Frames of an HDF5 dataset (see the module docstring); closes the file on `close`."""

    def __init__(self, h5file: h5py.File, data, name: str, dataset: str, **options) -> None:
        self._file = h5file
        self.dataset = dataset
        try:
            super().__init__(data, name=name, block=(data.chunks or (None,))[0], **options)
            self.mapped = _mapped(h5file.filename, data)
            self._hints = dataset_hints(getattr(data, "parts", [data])[0])
            self.mask = recorded_mask(getattr(data, "parts", [data])[0], self.detector_shape)
        except BaseException:
            h5file.close()
            raise

    def _read(self, a: int, b: int) -> np.ndarray:
        try:
            frames = super()._read(a, b)
        except OSError as exc:
            if "filter" in str(exc).lower():  # every filter was found available when the file was opened
                raise InputError(f"{self.name}: frames {a}–{b - 1} cannot be decompressed: the compressed data is "
                                 f"damaged ({_first_line(exc)}); copy the file again from its source") from None
            raise InputError(f"{self.name}: reading frames {a}–{b - 1} failed ({exc})") from None
        if self.mask is not None:
            frames = frames if frames.flags.writeable else frames.copy()
            self.mask.apply(frames)
        return frames

    def describe(self) -> dict:
        d = super().describe()
        parts = getattr(self.data, "parts", [self.data])
        d.update(format="HDF5", dataset=self.dataset, hdf5_chunks=parts[0].chunks,
                 compression=parts[0].compression, n_datasets=len(parts))
        if self.mask is not None:
            d["masked_pixels"] = self.mask.summary()
        return d

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._file.close()


def open(spec: str, **options) -> HDF5Source:
    """Open ``file.h5:/dataset`` (or ``file.h5`` with one 3D/4D dataset) as a frame source."""
    path, dataset = split_spec(spec)
    if not os.path.isfile(path):
        raise InputError(f"input {path!r} does not exist")
    try:
        f = h5py.File(path, "r", rdcc_nbytes=_CHUNK_CACHE, rdcc_nslots=100_003)
    except OSError as exc:
        raise InputError(f"{path}: not a readable HDF5 file ({exc})") from None
    try:
        emd = _emd_choice(f, dataset)
        if emd is not None:
            dataset = emd.name
        if dataset is not None:
            try:
                obj = f[dataset]
            except (KeyError, OSError):
                names = ", ".join(n for n, _ in _frame_datasets(f)[:8]) or "none"
                raise InputError(f"{path}: no dataset {dataset!r} (3D/4D datasets: {names})") from None
            found = _frame_datasets(obj) if isinstance(obj, h5py.Group) else [(obj.name, obj)]
        else:
            found = _frame_datasets(f)
        if not found:
            raise InputError(f"{spec}: holds no 3D or 4D dataset of patterns")
        parts = [ds for _, ds in found] if len(found) == 1 else _series(found)
        if parts is None:
            names = ", ".join(n for n, _ in found[:8])
            emds = ", ".join(p.rsplit("/", 1)[-1] for p, _ in emd_arrays(f)[:8])
            emds = f" or an EMD array by name ({emds})" if emds else ""
            raise InputError(f"{spec}: holds several 3D/4D datasets ({names}); choose one as {path}:<dataset>{emds}")
        for ds in parts:
            _check_filters(ds, spec)
            if ds.ndim not in (3, 4):
                raise InputError(f"{spec}: dataset {ds.name} has {ds.ndim} dimensions; expected 3 or 4")
        data = parts[0] if len(parts) == 1 else _Stacked(parts)
        name = found[0][0] if len(parts) == 1 else os.path.dirname(found[0][0]) + "/data_*"
    except BaseException:
        f.close()
        raise
    source = HDF5Source(f, data, name=f"{path}:{name}", dataset=name, **options)
    if emd is not None:
        source._hints = {**emd_hints(emd), **source._hints}
    return source
