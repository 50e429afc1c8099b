"""ricom — real-time integrated centre-of-mass (riCOM) imaging for 4D-STEM.

Quick start::

    import ricom
    snap = ricom.reconstruct("demo", kernel_size=21)
    image = snap.ricom
"""
from ricom.api import make_settings, reconstruct
from ricom.core.errors import InputError, RicomError, SettingsError
from ricom.core.params import Calibration, DetectorGeometry, KernelSettings, Settings, VirtualDetector
from ricom.engine.reconstruction import Reconstruction
from ricom.engine.snapshot import Snapshot

__version__ = "0.1.0"

__all__ = ["Calibration", "DetectorGeometry", "InputError", "KernelSettings", "Reconstruction",
           "RicomError", "Settings", "SettingsError", "Snapshot", "VirtualDetector", "make_settings", "reconstruct"]
