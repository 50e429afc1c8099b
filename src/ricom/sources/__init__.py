"""Inputs: every file format, stream and simulator as a `Source` yielding chunks.

`open_source` picks the reader from the input's name; `open_input` also takes arrays
and sources.  A new camera or format needs a
module here with an ``open(spec, **options)`` function and one line in `_READERS`.
"""
from __future__ import annotations

import importlib
import os
import re

import numpy as np

from ricom.core.errors import InputError, Param, SettingsError
from ricom.sources.arrays import ArraySource
from ricom.sources.base import Source, check_file

__all__ = ["Source", "open_input", "open_source"]


def _ext(spec: str) -> str:
    path = spec.split(":", 1)[0] if _is_h5_with_dataset(spec) else spec
    name = os.path.basename(path).lower()
    for double in (".ome.zarr",):
        if name.endswith(double):
            return double
    return os.path.splitext(name.rstrip("/"))[1]


def _is_h5_with_dataset(spec: str) -> bool:
    head, sep, _ = spec.partition(":")
    return bool(sep) and head.lower().endswith((".h5", ".hdf5", ".hdf", ".nxs", ".emd"))


def _is_zarr(spec: str) -> bool:
    return ".zarr:" in spec.lower() or spec.lower().rstrip("/\\").endswith(".zarr")


def _is_dectris(spec: str) -> bool:
    """A DECTRIS NeXus master or data file given without a dataset path (by name and content)."""
    return importlib.import_module("ricom.sources.dectris.files").is_dectris_file(spec)


# (matcher, "module:function") — first match wins.  Modules are imported lazily.
_READERS: list[tuple[object, str]] = [
    (lambda s: s == "demo", "ricom.sources.demo:open"),
    (lambda s: s.startswith("merlin://"), "ricom.sources.merlin.live:open"),
    (lambda s: s.startswith("dectris://"), "ricom.sources.dectris.live:open"),
    (lambda s: s.startswith("asi://"), "ricom.sources.timepix.asi:open"),
    (lambda s: s.startswith("tpx3://"), "ricom.sources.timepix.stream:open"),
    (lambda s: _ext(s) == ".npy", "ricom.sources.arrays:open_npy"),
    (lambda s: _ext(s) in (".mib", ".hdr"), "ricom.sources.merlin.file:open"),
    (lambda s: _ext(s) == ".tpx3", "ricom.sources.timepix.tpx3:open"),
    (lambda s: _ext(s) == ".t3p", "ricom.sources.timepix.t3p:open"),
    (lambda s: _is_h5_with_dataset(f"{s}:") and _is_dectris(s), "ricom.sources.dectris.files:open"),
    (lambda s: _is_h5_with_dataset(f"{s}:") and importlib.import_module("ricom.sources.events_h5").is_event_file(s),
     "ricom.sources.events_h5:open"),  # event lists (ricom /events or stempy /electron_events), by content
    (lambda s: _is_h5_with_dataset(f"{s}:"), "ricom.sources.hdf5:open"),  # file.h5 with or without :/dataset
    (_is_zarr, "ricom.sources.zarr_source:open"),
    (lambda s: _ext(s) in (".raw", ".bin", ".xml"), "ricom.sources.raw:open"),
    (lambda s: s.lower().endswith("_movie.mrc"), "ricom.sources.direct_electron:open"),  # + _info.txt, coordinates
    (lambda s: _ext(s) in ".dm3 .dm4 .blo .mrc .hspy .zspy .tvips .ser .emi".split(), "ricom.sources.rsciio:open"),
]


def _check_input_path(spec: str) -> None:
    """A one-line error, before any reader opens it, if a file input is missing, a directory
    (other than a Zarr store) or not a regular file (a FIFO would block the reader forever)."""
    if spec == "demo" or "://" in spec:
        return
    zarr = _is_zarr(spec)
    if zarr:  # store.zarr or store.zarr:array
        path = re.match(r"^(.*?\.zarr)", spec, flags=re.IGNORECASE).group(1)
    elif _is_h5_with_dataset(spec) and not os.path.lexists(spec):  # file.h5:/dataset
        path = spec.split(":", 1)[0]
    else:
        path = spec
    check_file(path, directory_ok=zarr)


def open_source(spec: str, **options) -> Source:
    """Open an input by name.

    Parameters
    ----------
    spec : str
        A file path (``.npy``, ``.mib``, ``file.h5:/dataset``, ...) or ``"demo"``.
    **options
        ``scan_shape``, ``skip_frames``, ``flyback_frames``, ``frames_per_position`` and
        format-specific options; readers ignore what does not apply to them.

    Raises
    ------
    InputError
        If no reader knows the input or the file does not exist.
    """
    spec = os.fspath(spec)
    _check_input_path(spec)
    for match, target in _READERS:
        if match(spec):
            module, func = target.split(":")
            return getattr(importlib.import_module(module), func)(spec, **options)
    raise InputError(f"cannot read {spec!r}: unknown format (expected .npy, .mib, .h5:/dataset, "
                     f".zarr, .tpx3, .t3p or 'demo')")


def open_input(data, **source_options) -> Source:
    """A `Source` from an array (`ricom.sources.arrays.ArraySource`), a path or spec string
    (`open_source`), or a source itself (returned as it is).

    Raises
    ------
    SettingsError
        If ``scan_positions`` are given for an input that cannot place its frames by them.
    """
    if isinstance(data, Source):
        return data
    if isinstance(data, np.ndarray):
        source = ArraySource(data, **source_options)
    else:
        source = open_source(os.fspath(data), **source_options)
    if source_options.get("scan_positions") is not None and source.scan_positions is None \
            and not getattr(source, "takes_scan_positions", False):
        source.close()
        raise SettingsError(f"{source.format_name()}: this input cannot take a scan order; leave out ",
                            Param("scan_positions"))
    return source
