"""ricom — real-time integrated centre-of-mass (riCOM) imaging for 4D-STEM.

Quick start::

    import ricom
    snap = ricom.reconstruct("demo", kernel_size=21)
    image = snap.ricom

The names below are loaded on first use, so that ``import ricom.cli.main`` (the command
line's start-up) does not import NumPy and the engine before it can handle Ctrl-C.
"""
from __future__ import annotations

import importlib

__version__ = "0.1.0"

_WHERE = {
    "make_settings": "ricom.api", "reconstruct": "ricom.api", "PartialResult": "ricom.api",
    "InputError": "ricom.core.errors", "RicomError": "ricom.core.errors", "SettingsError": "ricom.core.errors",
    "Calibration": "ricom.core.params", "DetectorGeometry": "ricom.core.params",
    "KernelSettings": "ricom.core.params", "Settings": "ricom.core.params", "VirtualDetector": "ricom.core.params",
    "Reconstruction": "ricom.engine.reconstruction", "Snapshot": "ricom.engine.snapshot",
    "to_hyperspy": "ricom.engine.as_hyperspy",
}

__all__ = ["Calibration", "DetectorGeometry", "InputError", "KernelSettings", "PartialResult", "Reconstruction",
           "RicomError", "Settings", "SettingsError", "Snapshot", "VirtualDetector", "make_settings", "reconstruct",
           "to_hyperspy"]


def __getattr__(name: str):
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'ricom' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
