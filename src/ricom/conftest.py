"""Doctest collection: skip modules whose optional dependencies are missing."""
import importlib.util

collect_ignore_glob = []
if importlib.util.find_spec("PySide6") is None:
    collect_ignore_glob.append("gui/*")
if importlib.util.find_spec("rsciio") is None:
    collect_ignore_glob.append("sources/rsciio.py")
