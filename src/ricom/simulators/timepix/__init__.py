"""Timepix3 stream simulators: the raw packet stream of the camera server (Serval).

`RawSimulator` (`ricom.simulators.timepix.raw`) is the entry point; ``ricom simulate
timepix3 --raw`` runs it in the foreground.
"""
from ricom.simulators.timepix.raw import RawFaults, RawSimulator, demo_tpx3

__all__ = ["RawFaults", "RawSimulator", "demo_tpx3"]
