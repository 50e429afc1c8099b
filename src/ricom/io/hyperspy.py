"""Results as HyperSpy signals, and ``.hspy`` files of them.

Owns `save_hyperspy` (the ``-o result.hspy`` writer; ``.zspy`` is refused with the reason:
RosettaSciIO's zspy writer keeps one signal per store and needs zarr 2); the conversion it
writes is `ricom.engine.as_hyperspy.to_hyperspy` (also `Snapshot.to_hyperspy` and
`ricom.to_hyperspy`), re-exported here.  Optional: needs HyperSpy
(``pip install 'ricom[hyperspy]'``).
"""
from __future__ import annotations

import os
import tempfile

from ricom.core.errors import SettingsError
from ricom.engine.as_hyperspy import BEAM_SHIFT, COM_COLUMNS, UNCALIBRATED_UNIT, to_hyperspy
from ricom.engine.as_hyperspy import hyperspy_api as _hyperspy
from ricom.engine.snapshot import Snapshot

__all__ = ["BEAM_SHIFT", "COM_COLUMNS", "UNCALIBRATED_UNIT", "require_writer", "save_hyperspy", "to_hyperspy"]


def require_writer(ext: str) -> None:
    """Fail now (before any processing) if a ``.hspy`` / ``.zspy`` file cannot be written here."""
    _hyperspy()
    if ext == ".zspy":
        import zarr

        raise SettingsError(f"output .zspy: RosettaSciIO's zspy writer stores one signal per store and needs "
                            f"zarr 2 (zarr {zarr.__version__} is installed); write .hspy instead")


def save_hyperspy(path: str, snap: Snapshot, names, attrs: dict) -> list[str]:
    """Write every signal of `to_hyperspy` into one ``.hspy`` file.

    ``hyperspy.api.load(path)`` gives them back as a list, in the order written; each
    is stored under its name (HyperSpy's ``Experiments/<title>``).  HyperSpy writes one
    signal per file, so each is written on its own and its group copied into ``path``.
    Returns the names of the HyperSpy signals written (``com`` for COM x and y).
    """
    import h5py

    require_writer(os.path.splitext(path)[1].lower())
    signals = to_hyperspy(snap, names, attrs)
    folder = os.path.dirname(os.path.abspath(path))
    with h5py.File(path, "w") as out:
        experiments = out.create_group("Experiments", track_order=True)  # loaded in the order written
        for name, s in signals.items():
            fd, part = tempfile.mkstemp(prefix=".ricom-signal.", suffix=".hspy", dir=folder)
            os.close(fd)
            try:
                s.save(part, overwrite=True)
                with h5py.File(part, "r") as one:
                    for key, value in one.attrs.items():
                        out.attrs[key] = value
                    one.copy(one[f"Experiments/{name}"], experiments, name=name)
            finally:
                os.remove(part)
    return list(signals)
