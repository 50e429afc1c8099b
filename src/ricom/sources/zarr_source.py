"""Zarr arrays as sources: ``store.zarr`` (one 3D/4D array, or the single one in a group)
or ``store.zarr:/path/in/group``.

Read a block of frames (whole scan rows for 4D data, whole Zarr chunks where possible)
at a time, never whole.  Needs the ``zarr`` package (``pip install ricom[zarr]``).
"""
from __future__ import annotations

import os
import re

from ricom.core.errors import InputError
from ricom.sources.raw import LazyArraySource


def split_spec(spec: str) -> tuple[str, str | None]:
    """``"a.zarr:/x/y"`` → ``("a.zarr", "x/y")``; ``"a.zarr"`` → ``("a.zarr", None)``."""
    m = re.match(r"^(.*?\.zarr)/?(?::/?(.*))?$", spec, flags=re.IGNORECASE)
    if not m:
        return spec, None
    return m.group(1), (m.group(2) or None)


def _arrays(group, prefix: str = "") -> list[tuple[str, object]]:
    """Every array of at least 3 dimensions below ``group``, with its path."""
    import zarr

    found = []
    for name, member in group.members():
        path = f"{prefix}/{name}" if prefix else name
        if isinstance(member, zarr.Array):
            if member.ndim >= 3:
                found.append((path, member))
        else:
            found.extend(_arrays(member, path))
    return found


class ZarrSource(LazyArraySource):
    """Frames of a Zarr array (see the module docstring)."""

    def __init__(self, data, name: str, array_path: str, **options) -> None:
        from ricom.sources.hdf5 import dataset_hints  # calibration attributes, as `ricom convert` writes them
        self.array_path = array_path
        chunks = getattr(data, "chunks", None) or (None,)
        super().__init__(data, name=name, block=chunks[0], **options)
        self._hints = {**dataset_hints(data), **(getattr(self, "_hints", None) or {})}

    def describe(self) -> dict:
        return {**super().describe(), "format": "Zarr", "array": self.array_path,
                "zarr_chunks": tuple(int(c) for c in self.data.chunks)}


def open(spec: str, **options) -> ZarrSource:
    """Open a Zarr store (directory) as a frame source."""
    try:
        import zarr
    except ImportError:
        raise InputError("reading .zarr needs the zarr package: pip install 'ricom[zarr]'") from None
    path, inner = split_spec(spec)
    if not os.path.exists(path):
        raise InputError(f"input {path!r} does not exist")
    try:
        node = zarr.open(path, mode="r")
        if inner:
            node = node[inner]
    except KeyError:
        raise InputError(f"{path}: no array {inner!r} in the store") from None
    except Exception as exc:  # zarr raises many kinds for a broken store
        raise InputError(f"{path}: not a readable Zarr store ({type(exc).__name__}: {exc})") from None
    if isinstance(node, zarr.Array):
        found = [(inner or "/", node)]
    else:
        found = _arrays(node, inner or "")
    if not found:
        raise InputError(f"{spec}: holds no 3D or 4D array of patterns")
    if len(found) > 1:
        names = ", ".join(n for n, _ in found[:8])
        raise InputError(f"{spec}: holds several 3D/4D arrays ({names}); choose one as {path}:<array>")
    name, arr = found[0]
    if arr.ndim not in (3, 4):
        raise InputError(f"{spec}: array {name} has {arr.ndim} dimensions; expected 3 or 4")
    return ZarrSource(arr, name=f"{path}:{name}" if name != "/" else path, array_path=name, **options)
