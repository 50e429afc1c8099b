"""Where a data file's calibration sidecar lives: ``<file name>.ricom.json``.

``ricom simulate`` (and ``simulate events``) write the calibration and the simulation's
parameters into a JSON file named after the whole data file name, extension included
(``scan.tpx3.ricom.json``), so that ``scan.tpx3``, ``scan.t3p`` and ``scan.npy`` in one
folder each keep their own.  Readers also accept the older ``<stem>.ricom.json``.

Examples
--------
>>> sidecar_path("data/scan.tpx3")
'data/scan.tpx3.ricom.json'
>>> sidecar_candidates("data/scan.npy")
['data/scan.npy.ricom.json', 'data/scan.ricom.json']
"""
from __future__ import annotations

import os

SUFFIX = ".ricom.json"


def sidecar_path(path: str) -> str:
    """The sidecar a writer creates for the data file ``path``."""
    return os.fspath(path) + SUFFIX


def sidecar_candidates(path: str) -> list[str]:
    """Sidecar names a reader tries for ``path``, in order (the current, then the older one)."""
    path = os.fspath(path)
    return [path + SUFFIX, os.path.splitext(path)[0] + SUFFIX]


def find_sidecar(path: str) -> str | None:
    """The sidecar of ``path`` that exists, if any."""
    return next((side for side in sidecar_candidates(path) if os.path.isfile(side)), None)


__all__ = ["SUFFIX", "find_sidecar", "sidecar_candidates", "sidecar_path"]
