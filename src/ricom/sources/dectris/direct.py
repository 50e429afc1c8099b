"""Reading DECTRIS data files' compressed chunks as they are stored, for decoding in parallel.

A DECTRIS data file stores one frame per HDF5 chunk, compressed with the bitshuffle-LZ4
filter (32008), whose chunk bytes are exactly the blobs the detector streams.  Reading
through HDF5's filter pipeline decodes one chunk at a time in the reading thread, at a
fraction of the rate of decompression itself; `DirectChunks` instead finds every frame's
chunk in the file once (``chunk_iter``), maps the files into memory and hands out the
stored bytes of any frame range as zero-copy slices — `ricom.core.chunks.EncodedFrames`
that the pipeline's worker threads decode with ``dectris-compression``.  Datasets stored
any other way (other filters or chunk shapes, unwritten chunks) are not eligible:
`DirectChunks.of` returns None and the caller reads through HDF5.
"""
from __future__ import annotations

import contextlib
import mmap

import numpy as np

BITSHUFFLE_FILTER = 32008
LZ4 = 2
"""Bitshuffle filter option 4: the compressor (2 = LZ4)."""


def eligible(ds) -> bool:
    """True for a 3D dataset of one frame per chunk, bitshuffle-LZ4 and nothing else."""
    if ds.ndim != 3 or ds.chunks != (1, *ds.shape[1:]) or ds.dtype.kind not in "ui":
        return False
    plist = ds.id.get_create_plist()
    if plist.get_nfilters() != 1:
        return False
    code, _, values, _ = plist.get_filter(0)
    return code == BITSHUFFLE_FILTER and len(values) >= 5 and values[4] == LZ4


class DirectChunks:
    """The stored chunks of one or more eligible datasets, frame by frame.

    ``offsets[i]``, ``sizes[i]``, ``files[i]`` locate frame i's compressed bytes.
    """

    def __init__(self, maps: list, files: np.ndarray, offsets: np.ndarray, sizes: np.ndarray) -> None:
        self.maps, self.files, self.offsets, self.sizes = maps, files, offsets, sizes
        self.views = [memoryview(m) for m in maps]

    @classmethod
    def of(cls, datasets: list) -> DirectChunks | None:
        """The chunks of ``datasets`` (in order), or None if any is not eligible or has an
        unwritten chunk."""
        if not datasets or not all(eligible(ds) for ds in datasets):
            return None
        files, offsets, sizes, maps = [], [], [], []
        try:
            for k, ds in enumerate(datasets):
                n = ds.shape[0]
                off = np.full(n, -1, np.int64)
                size = np.zeros(n, np.int64)

                def seen(info, off=off, size=size):
                    off[info.chunk_offset[0]] = info.byte_offset
                    size[info.chunk_offset[0]] = info.size

                ds.id.chunk_iter(seen)
                if (off < 0).any():
                    return None
                with open(ds.file.filename, "rb") as fh:
                    maps.append(mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ))
                files.append(np.full(n, k, np.int32))
                offsets.append(off)
                sizes.append(size)
        except (AttributeError, OSError, ValueError):  # an HDF5 library without chunk_iter, a file we cannot map
            for m in maps:
                m.close()
            return None
        return cls(maps, np.concatenate(files), np.concatenate(offsets), np.concatenate(sizes))

    def blobs(self, a: int, b: int) -> list:
        """The stored bytes of frames ``a … b-1`` (memoryviews into the mapped files)."""
        views = self.views
        return [views[f][o:o + s] for f, o, s in zip(self.files[a:b].tolist(), self.offsets[a:b].tolist(),
                                                     self.sizes[a:b].tolist(), strict=True)]

    def close(self) -> None:
        """Unmap the files (left to the garbage collector while chunks still hold slices)."""
        views, maps, self.views, self.maps = self.views, self.maps, [], []
        with contextlib.suppress(BufferError):
            for v in views:
                v.release()
            for m in maps:
                m.close()


__all__ = ["DirectChunks", "eligible"]
