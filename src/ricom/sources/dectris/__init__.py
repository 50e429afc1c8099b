"""DECTRIS detectors (ARINA, QUADRO, EIGER2): SIMPLON REST, stream V1/V2, NeXus files."""
