"""A DECTRIS detector simulator (ARINA, QUADRO, EIGER2): SIMPLON REST API and the ZeroMQ streams V1/V2.

`DectrisSimulator` (`ricom.simulators.dectris.server`) is the entry point; ``ricom
simulate dectris`` runs it in the foreground.
"""
from ricom.simulators.dectris.faults import DectrisFaults
from ricom.simulators.dectris.server import DectrisSimulator

__all__ = ["DectrisFaults", "DectrisSimulator"]
