"""DECTRIS NeXus files opened by name: a ``NAME_master.h5``, or one ``NAME_data_00000k.h5``.

What it owns: recognising DECTRIS files (`is_dectris_file`, by name and structure),
following the master's ``/entry/data/data_000001, data_000002, …`` links (HDF5 external
links, which h5py's ``visititems`` does not follow) in number order to the data files'
``/entry/data/data`` (frames × rows × cols, bitshuffle-LZ4 through ``hdf5plugin``),
the detector's pixel mask applied to every chunk (`ricom.sources.dectris.mask`), the scan
shape from ``ntrigger`` × ``nimages``, and the calibration and description the master
carries (`DectrisFileSource.hints`, `DectrisFileSource.describe`).

Missing data files: files missing at the end of the series (an acquisition cut short, a
partial copy) are left out with one warning, and their scan positions stay empty; a
missing file before one that exists, or a missing first file, is an `InputError` naming
it.  A data file opened directly is read alone, with the mask and metadata of its master
when one lies beside it.  Layout: ``../shared/FORMATS.md`` §5.
"""
from __future__ import annotations

import contextlib
import math
import os
import re
import warnings
from collections.abc import Iterator

import h5py
import numpy as np

from ricom.core.chunks import EncodedFrames, FrameChunk
from ricom.core.errors import InputError
from ricom.core.units import electron_energy_keV
from ricom.sources.base import BufferPool
from ricom.sources.dectris.codec import Encoding, decode_blobs
from ricom.sources.dectris.direct import DirectChunks
from ricom.sources.dectris.mask import PixelMask
from ricom.sources.hdf5 import _CHUNK_CACHE, _check_filters, _Stacked
from ricom.sources.raw import LazyArraySource, positions_for

with contextlib.suppress(ImportError):
    import hdf5plugin  # noqa: F401 - registers bitshuffle-LZ4 (filter 32008)

DETECTOR = "entry/instrument/detector"
SPECIFIC = DETECTOR + "/detectorSpecific"
_LINK = re.compile(r"data_(\d+)")
_MASTER_NAME = re.compile(r"(.+)_master\.h5", re.IGNORECASE)
_DATA_NAME = re.compile(r"(.+)_data_(\d+)\.h5", re.IGNORECASE)
_LENGTH_M = {"m": 1.0, "meter": 1.0, "metre": 1.0, "mm": 1e-3, "um": 1e-6, "µm": 1e-6, "micron": 1e-6,
             "nm": 1e-9, "angstrom": 1e-10, "a": 1e-10, "å": 1e-10}
_DESCRIBE_KEYS = ("description", "detector_number", "software_version", "trigger_mode", "ntrigger", "nimages",
                  "count_time", "frame_time", "roi_mode", "compression")


def _open_h5(path: str) -> h5py.File:
    try:
        return h5py.File(path, "r", rdcc_nbytes=_CHUNK_CACHE, rdcc_nslots=100_003)
    except OSError as exc:
        raise InputError(f"{path}: not a readable HDF5 file ({exc})") from None


def _links(f: h5py.File) -> list[str]:
    """Names ``data_<k>`` under ``/entry/data``, in number order."""
    group = f.get("entry/data")
    if not isinstance(group, h5py.Group):
        return []
    return sorted((n for n in group if _LINK.fullmatch(n)), key=lambda n: int(_LINK.fullmatch(n).group(1)))


def is_dectris_file(spec: str) -> bool:
    """True for a DECTRIS master or data file given without a dataset path.

    A master has links ``/entry/data/data_<k>`` and either a ``_master.h5`` name or a
    ``detectorSpecific`` group; a data file is named ``…_data_<k>.h5`` and holds a 3D
    ``/entry/data/data``.  Anything unreadable is not one (the next reader reports it).
    """
    if not os.path.isfile(spec) or not spec.lower().endswith((".h5", ".hdf5", ".nxs")):
        return False
    try:
        with h5py.File(spec, "r") as f:
            if _links(f):
                return bool(_MASTER_NAME.fullmatch(os.path.basename(spec))) or SPECIFIC in f
            ds = f.get("entry/data/data")
            return bool(_DATA_NAME.fullmatch(os.path.basename(spec))) and isinstance(ds, h5py.Dataset) \
                and ds.ndim == 3
    except (OSError, KeyError, ValueError):
        return False


def _scalar(f: h5py.File | None, path: str):
    """A scalar or string dataset's value (strings decoded), or None."""
    if f is None:
        return None
    with contextlib.suppress(KeyError, OSError, TypeError, ValueError):
        obj = f[path]
        if isinstance(obj, h5py.Dataset) and obj.size == 1:
            value = obj[()]
            value = value.reshape(-1)[0] if isinstance(value, np.ndarray) else value
            if isinstance(value, bytes):
                return value.decode(errors="replace").strip("\0 ")
            if isinstance(value, np.floating) and value.dtype.itemsize < 8:
                return float(f"{value:.7g}")  # float32 without its binary noise
            return value.item() if isinstance(value, np.generic) else value
    return None


def _length_m(f: h5py.File | None, path: str, default_unit: str) -> float | None:
    """A positive length dataset in metres (its ``units`` attribute, else ``default_unit``)."""
    value = _scalar(f, path)
    if not isinstance(value, (int, float)) or not value > 0:
        return None
    unit = f[path].attrs.get("units", default_unit)
    unit = (unit.decode() if isinstance(unit, bytes) else str(unit)).strip().lower()
    factor = _LENGTH_M.get(unit)
    return None if factor is None else float(value) * factor


def master_hints(f: h5py.File | None, detector_shape: tuple[int, int]) -> dict:
    """Calibration a master carries: ``energy_keV`` (from the wavelength, when it is one of
    electrons of 1–3000 keV), ``pixel_size_mrad`` (pixel size / detector distance, both
    needed) and ``center_yx`` (``beam_center_y/x`` in pixels, inside the detector)."""
    hints: dict = {}
    wavelength = _length_m(f, "entry/instrument/beam/incident_wavelength", "angstrom")
    if wavelength:
        energy = electron_energy_keV(wavelength * 1e10)
        if 1 <= energy <= 3000:
            hints["energy_keV"] = energy
    pixel, distance = _length_m(f, DETECTOR + "/x_pixel_size", "m"), _length_m(f, DETECTOR + "/detector_distance", "m")
    if pixel and distance:
        hints["pixel_size_mrad"] = pixel / distance * 1e3
    cy, cx = _scalar(f, DETECTOR + "/beam_center_y"), _scalar(f, DETECTOR + "/beam_center_x")
    if all(isinstance(v, (int, float)) for v in (cy, cx)) and 0 < cy < detector_shape[0] \
            and 0 < cx < detector_shape[1]:
        hints["center_yx"] = (float(cy), float(cx))
    return hints


def _bit_depth(f: h5py.File | None, dtype: np.dtype) -> int:
    """``bit_depth_image`` (detector or detectorSpecific), else the pixel type's bits
    (``bit_depth_readout`` is the counter, not the image's marker value)."""
    for path in (DETECTOR + "/bit_depth_image", SPECIFIC + "/bit_depth_image"):
        value = _scalar(f, path)
        if isinstance(value, (int, float)) and 0 < value <= 64:
            return int(value)
    return np.dtype(dtype).itemsize * 8


def _pixel_mask(f: h5py.File | None) -> np.ndarray | None:
    with contextlib.suppress(KeyError, OSError, TypeError):
        if f is not None and isinstance(f.get(SPECIFIC + "/pixel_mask"), h5py.Dataset):
            return f[SPECIFIC + "/pixel_mask"][()]
    return None


class _Series:
    """The data files of a master, opened in link order: ``parts`` (datasets), ``files``
    (paths), ``handles`` (open data files) and ``missing`` (paths after the last one read)."""

    def __init__(self, master: h5py.File, master_path: str) -> None:
        self.parts, self.files, self.handles, self.missing = [], [], [], []
        folder = os.path.dirname(os.path.abspath(master_path))
        try:
            for name in _links(master):
                link = master["entry/data"].get(name, getlink=True)
                if isinstance(link, h5py.ExternalLink):
                    target = link.filename if os.path.isabs(link.filename) else os.path.join(folder, link.filename)
                    if not os.path.isfile(target):
                        self.missing.append(target)
                        continue
                    if self.missing:
                        raise InputError(f"{master_path}: data file {self.missing[0]} (/entry/data/{name} links "
                                         f"to it) is missing, but later ones exist")
                    handle = _open_h5(target)
                    self.handles.append(handle)
                    ds = handle.get(link.path)
                else:
                    target, ds = master_path, master["entry/data"].get(name)
                if not isinstance(ds, h5py.Dataset) or ds.ndim != 3:
                    raise InputError(f"{target}: {link.path if target != master_path else name} is not a 3D "
                                     f"dataset of frames")
                self.parts.append(ds)
                self.files.append(target)
            if not self.parts:
                first = self.missing[0] if self.missing else "none is linked"
                raise InputError(f"{master_path}: no data file of the series can be read (first: {first})")
            if len({p.shape[1:] for p in self.parts}) != 1:
                raise InputError(f"{master_path}: the data files hold frames of different shapes")
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        for h in self.handles:
            with contextlib.suppress(Exception):
                h.close()


DECODED_CHUNK_BYTES = 16 << 20
"""Largest decoded chunk: decoding, masking and reducing a chunk run while it is in cache."""


class DectrisFileSource(LazyArraySource):
    """Frames of a DECTRIS acquisition, with its pixel mask left out (module docstring).

    Parameters
    ----------
    path : str
        ``NAME_master.h5`` (every data file of the series) or ``NAME_data_00000k.h5``
        (that file alone; mask and metadata from ``NAME_master.h5`` when present).
    scan_shape : (int, int), optional
        Else ``√n × √n`` when the acquisition's frame count n (``ntrigger × nimages``,
        else the frames in the files) is a square; else unknown (the caller asks for it).
    **options
        ``skip_frames``, ``flyback_frames``, ``frames_per_position``, ``pad``, ``crop``
        (`ricom.sources.raw.resolve_scan`).

    Examples
    --------
    >>> src = DectrisFileSource("scan_master.h5")  # doctest: +SKIP
    >>> src.scan_shape, src.describe()["masked_pixels"]  # doctest: +SKIP
    ((64, 64), '12 masked pixels (gap 12); readings of 65535 also left out')
    """

    def __init__(self, path: str, scan_shape=None, **options) -> None:
        self.path = os.fspath(path)
        self._handles: list[h5py.File] = []
        try:
            self._open(scan_shape, options)
        except BaseException:
            self.close()
            raise

    def _open(self, scan_shape, options) -> None:
        path = self.path
        data_name = _DATA_NAME.fullmatch(os.path.basename(path))
        first = _open_h5(path)
        self._handles.append(first)
        self.series_files, self.missing_files, part_of = [path], [], None
        if _links(first):
            self.master_path, self.master = path, first
            series = _Series(first, path)
            self._handles += series.handles
            parts, self.series_files, self.missing_files = series.parts, series.files, series.missing
        else:
            if not isinstance(first.get("entry/data/data"), h5py.Dataset):
                raise InputError(f"{path}: neither a DECTRIS master (/entry/data/data_000001 …) nor a data file "
                                 f"(/entry/data/data)")
            parts = [first["entry/data/data"]]
            master = os.path.join(os.path.dirname(path), data_name.group(1) + "_master.h5") if data_name else ""
            self.master_path = master if os.path.isfile(master) else None
            self.master = _open_h5(master) if self.master_path else None
            if self.master is not None:
                self._handles.append(self.master)
                n_links = len(_links(self.master))
                part_of = (int(data_name.group(2)), n_links) if n_links > 1 else None
        for ds in parts:
            _check_filters(ds, path)
        data = parts[0] if len(parts) == 1 else _Stacked(parts)
        self._direct = DirectChunks.of(parts)
        if self._direct is not None:
            PixelMask.warm_up(parts[0].dtype)
        self._frames_in_files = int(data.shape[0])
        self.bit_depth = _bit_depth(self.master, data.dtype)
        self.pixel_mask = _pixel_mask(self.master)
        """The detector's pixel mask as stored (NXmx bits), or None."""
        self.mask = PixelMask.from_detector_mask(self.pixel_mask, self.bit_depth, tuple(int(v) for v in data.shape[1:]))
        self.series_part = part_of
        """(k, n) when a data file k of a series of n is read alone, else None."""
        self._scan(data, scan_shape, part_of, options)
        self._hints = master_hints(self.master, self.detector_shape)
        if self.mask.n_bad:
            warnings.warn(f"{path}: {self.mask.summary()}", stacklevel=4)

    def _expected_frames(self) -> int | None:
        nt, ni = (_scalar(self.master, SPECIFIC + "/" + k) for k in ("ntrigger", "nimages"))
        if isinstance(nt, int) and isinstance(ni, int) and nt > 0 and ni > 0:
            return nt * ni
        return None

    def _scan(self, data, scan_shape, part_of, options) -> None:
        """Resolve the scan (given, or square ``ntrigger × nimages``) and set up reading."""
        have = self._frames_in_files
        expected = None if part_of else self._expected_frames()
        n = max(expected or 0, have)
        self.scan_shape_from = "given" if scan_shape is not None else None
        root = math.isqrt(n)
        if scan_shape is None and part_of is None and root * root == n:
            scan_shape = (root, root)
            self.scan_shape_from = f"{n} frames{' (ntrigger × nimages)' if expected else ''}: a square scan"
        incomplete = bool(self.missing_files) or (expected or 0) > have
        if incomplete:
            k = len(self.missing_files)
            gone = f" ({k} data file{'s' if k > 1 else ''} missing: {', '.join(self.missing_files)})" if k else ""
            warnings.warn(f"{self.path}: incomplete acquisition: {have} of its {n} frames can be read{gone}; "
                          f"the positions of the missing frames stay empty", stacklevel=5)
        if part_of:
            warnings.warn(f"{self.path} holds part {part_of[0]} of the {part_of[1]} data files of its series; "
                          f"open {self.master_path} for the whole scan", stacklevel=5)
        if incomplete and not options.get("crop"):
            options = {**options, "pad": True}
        super().__init__(data, name=self.path, scan_shape=scan_shape, block=(data.chunks or (None,))[0],
                         scan_shape_from=self.scan_shape_from, **options)

    def read_range(self, start: int, stop: int, chunk_size: int = 256) -> Iterator[FrameChunk]:
        """As `LazyArraySource.read_range`; chunks stored as bitshuffle-LZ4 frames go out
        still compressed (`ricom.sources.dectris.direct`), decoded by the pipeline's workers."""
        if self._direct is None:
            yield from super().read_range(start, stop, chunk_size)
            return
        start, stop = self._check_range(start, stop)
        frame_bytes = int(np.prod(self.detector_shape)) * self.data.dtype.itemsize
        chunk_size = max(1, min(int(chunk_size), DECODED_CHUNK_BYTES // frame_bytes))  # decoded in cache
        have, dtype = self._frames_in_files, np.dtype(self.data.dtype).newbyteorder("=")
        encoding, mask = Encoding("bslz4", np.dtype(self.data.dtype)), self.mask

        def decode(blobs, out):
            decode_blobs(blobs, encoding, out, mask=mask)

        buffers = BufferPool(self.detector_shape, dtype, chunk_size)
        for a in range(start, min(stop, have), chunk_size):
            b = min(stop, have, a + chunk_size)
            encoded = EncodedFrames(self._direct.blobs(a, b), "bslz4", dtype, self.detector_shape, decode,
                                    dtype.itemsize, buffers.take)
            passes = self.layout.passes(a, b - a) if self.layout is not None else None
            yield FrameChunk(encoded=encoded, positions=positions_for(self.layout, a, b - a, self.skip_frames),
                             scan_pass=passes)

    def _read(self, a: int, b: int) -> np.ndarray:
        try:
            frames = super()._read(a, b)
        except OSError as exc:
            raise InputError(f"{self.path}: reading frames {a}–{b - 1} failed ({exc})") from None
        if not frames.flags.writeable:
            frames = frames.copy()
        self.mask.apply(frames)
        return frames

    def describe(self) -> dict:
        d = super().describe()
        d["format"] = "DECTRIS NeXus " + ("master" if self.master is not None and self.master_path == self.path
                                          else "data file")
        files = self.series_files
        d.update(master=self.master_path, data_files=files if len(files) <= 4 else
                 f"{files[0]}, …, {files[-1]} ({len(files)} files)", frames_in_files=self._frames_in_files)
        if self.series_part:
            d["series_part"] = f"{self.series_part[0]} of {self.series_part[1]} data files"
        if self.missing_files:
            d["missing_data_files"] = list(self.missing_files)
        d["expected_frames"] = self._expected_frames()
        parts = getattr(self.data, "parts", [self.data])
        d.update(hdf5_chunks=parts[0].chunks, hdf5_compression=_filters(parts[0]), bit_depth_image=self.bit_depth,
                 bit_depth_readout=_scalar(self.master, DETECTOR + "/bit_depth_readout")
                 or _scalar(self.master, SPECIFIC + "/bit_depth_readout"))
        for key in _DESCRIBE_KEYS:
            value = _scalar(self.master, f"{DETECTOR}/{key}")
            value = _scalar(self.master, f"{SPECIFIC}/{key}") if value is None else value
            if value is not None:
                d[key] = value
        d.update(masked_pixels=self.mask.summary(), pixel_mask=self.mask.describe())
        return d

    def recording_datasets(self) -> dict:
        """What a recording of these frames stores beside them (`ricom.io.recorder`): the
        detector's ``pixel_mask`` with its ``bit_depth``."""
        if self.pixel_mask is None:
            return {}
        return {"pixel_mask": (self.pixel_mask, {"bit_depth": self.bit_depth, "bits": "NXmx"})}

    def close(self) -> None:
        direct, self._direct = getattr(self, "_direct", None), None
        if direct is not None:
            direct.close()
        for h in self._handles:
            with contextlib.suppress(Exception):
                h.close()
        self._handles = []


def _filters(ds) -> str:
    """The HDF5 filters of ``ds`` by name (``"bitshuffle"``, ``"deflate"`` …) or ``"none"``."""
    with contextlib.suppress(Exception):
        plist = ds.id.get_create_plist()
        names = []
        for i in range(plist.get_nfilters()):
            code, _, _, name = plist.get_filter(i)
            name = name.decode(errors="replace") if isinstance(name, bytes) else str(name or "")
            names.append(name.split(";")[0].strip() or f"filter {code}")
        return ", ".join(names) or "none"
    return "unknown"


def open(spec: str, **options) -> DectrisFileSource:
    """Reader entry point for DECTRIS master and data files (`is_dectris_file`)."""
    if not os.path.isfile(spec):
        raise InputError(f"input {spec!r} does not exist")
    return DectrisFileSource(spec, **options)


__all__ = ["DectrisFileSource", "electron_energy_keV", "is_dectris_file", "master_hints", "open"]
