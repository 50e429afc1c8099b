"""Quantum Detectors Merlin: the MIB format, files (.mib/.hdr) and the live TCP stream."""
