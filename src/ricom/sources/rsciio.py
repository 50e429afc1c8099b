"""Formats read through RosettaSciIO (Gatan ``.dm3``/``.dm4``, ``.blo``, ``.mrc``, ``.hspy`` …).

Optional: needs ``rosettasciio`` (``pip install 'ricom[rsciio]'``).  Files are opened
with ``lazy=True``, so the data is a dask array read a block of frames at a time and
never loaded whole.  The scan step, detector pixel size (when in mrad) and beam energy
stored in the file become calibration hints.
"""
from __future__ import annotations

import importlib
import os

import numpy as np

from ricom.core.errors import InputError
from ricom.sources.raw import LazyArraySource

EXTENSIONS = (".dm3", ".dm4", ".blo", ".mrc", ".hspy", ".zspy", ".tvips", ".ser", ".emi")
"""Routed here by `ricom.sources.open_source`."""
_LENGTH_TO_A = {"nm": 10.0, "Å": 1.0, "A": 1.0, "Angstrom": 1.0, "pm": 0.01, "µm": 1e4, "um": 1e4}
_ANGLE_TO_MRAD = {"mrad": 1.0, "rad": 1000.0, "µrad": 1e-3, "urad": 1e-3}


def _reader(path: str):
    try:
        from rsciio import IO_PLUGINS
    except ImportError:
        raise InputError(f"{path}: reading this format needs RosettaSciIO: pip install 'ricom[rsciio]'") from None
    ext = os.path.splitext(path)[1].lower().lstrip(".")
    for plugin in IO_PLUGINS:
        if ext in [e.lower() for e in plugin.get("file_extensions", [])]:
            return importlib.import_module(plugin["api"]).file_reader
    raise InputError(f"{path}: RosettaSciIO has no reader for .{ext} files")


def _hints(axes: list, nav: list, sig: list, metadata: dict) -> dict:
    hints = {}
    steps = {_LENGTH_TO_A.get(str(axes[i].get("units", "")).strip()) and
             float(axes[i]["scale"]) * _LENGTH_TO_A[str(axes[i]["units"]).strip()] for i in nav[-2:]}
    if len(steps) == 1 and next(iter(steps)):
        hints["step_A"] = float(next(iter(steps)))
    px = {_ANGLE_TO_MRAD.get(str(axes[i].get("units", "")).strip()) and
          float(axes[i]["scale"]) * _ANGLE_TO_MRAD[str(axes[i]["units"]).strip()] for i in sig}
    if len(px) == 1 and next(iter(px)):
        hints["pixel_size_mrad"] = float(next(iter(px)))
    energy = metadata.get("Acquisition_instrument", {}).get("TEM", {}).get("beam_energy")
    if isinstance(energy, (int, float)) and energy > 0:
        hints["energy_keV"] = float(energy)
    return hints


class RsciioSource(LazyArraySource):
    """Frames of a dataset RosettaSciIO reads lazily (see the module docstring)."""

    def __init__(self, data, name: str, hints: dict, title: str, **options) -> None:
        self._hints, self.title = hints, title
        super().__init__(data, name=name, **options)

    def describe(self) -> dict:
        return {**super().describe(), "format": "RosettaSciIO", "title": self.title, "hints": self._hints}


def open(spec: str, **options) -> RsciioSource:
    """Open ``spec`` with RosettaSciIO (``lazy=True``) and stream its 3D/4D dataset."""
    if not os.path.isfile(spec):
        raise InputError(f"input {spec!r} does not exist")
    reader = _reader(spec)
    try:
        signals = reader(spec, lazy=True)
    except Exception as exc:  # third-party readers raise anything on broken files
        raise InputError(f"{spec}: RosettaSciIO could not read it ({type(exc).__name__}: {exc})") from None
    candidates = [s for s in signals if np.ndim(s.get("data")) in (3, 4)]
    if not candidates:
        shapes = ", ".join(str(tuple(np.shape(s.get("data")))) for s in signals) or "none"
        raise InputError(f"{spec}: holds no 3D or 4D dataset of patterns (datasets: {shapes})")
    sig = candidates[0]
    data, axes = sig["data"], list(sig.get("axes") or [])
    ndim = len(data.shape)
    if len(axes) == ndim and all("navigate" in a for a in axes):
        order = {a.get("index_in_array", i): a for i, a in enumerate(axes)}
        axes = [order.get(i, axes[i]) for i in range(ndim)]
        nav = [i for i, a in enumerate(axes) if a["navigate"]]
        sig_ax = [i for i, a in enumerate(axes) if not a["navigate"]]
        if len(sig_ax) != 2:
            raise InputError(f"{spec}: the dataset has {len(sig_ax)} signal axes; patterns need 2")
        if nav + sig_ax != list(range(ndim)):
            data = data.transpose(nav + sig_ax)
            axes = [axes[i] for i in nav + sig_ax]
        nav, sig_ax = list(range(len(nav))), [ndim - 2, ndim - 1]
        hints = _hints(axes, nav, sig_ax, sig.get("metadata") or {})
    else:
        hints = {}
    title = str((sig.get("metadata") or {}).get("General", {}).get("title", ""))
    chunks = getattr(data, "chunksize", None)
    return RsciioSource(data, name=spec, hints=hints, title=title,
                        block=chunks[0] if chunks and ndim == 3 else None, **options)
