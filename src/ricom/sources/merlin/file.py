"""Merlin ``.mib`` files as a source: memory-mapped, split files, ``.hdr``, read in place.

Processed 8- and 16-bit frames are handed to the engine as `PackedFrames` over the
memory map (no copy: the engine reads the big-endian pixels between the headers);
raw and 32-bit frames are decoded a chunk at a time by `ricom.sources.merlin.mib`.  Pages
already processed are released, so memory stays flat however large the files are.
"""
from __future__ import annotations

import builtins
import contextlib
import mmap
import os
import re
import warnings
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from ricom.core.chunks import FrameChunk, PackedFrames
from ricom.core.errors import InputError
from ricom.sources.base import Source, populate
from ricom.sources.merlin.hdr import acquisition_scan_shape, header_int, parse_acquisition_header
from ricom.sources.merlin.mib import check_frames, decode_frames, parse_frame_header
from ricom.sources.raw import positions_for, resolve_scan


def _read_head(path: str) -> bytes:
    with builtins.open(path, "rb") as fh:
        return fh.read(4096)


def _find_hdr(path: str) -> str | None:
    """The ``.hdr`` beside a ``.mib``: same stem, else the stem without its split-file number."""
    stem = os.path.splitext(path)[0]
    for cand in (stem, re.sub(r"\d+$", "", stem), re.sub(r"_?\d+$", "", stem)):
        for ext in (".hdr", ".HDR"):
            if cand and os.path.isfile(cand + ext):
                return cand + ext
    return None


class _MibFile:
    """One ``.mib`` file of an acquisition: its first header, frame count and memory map."""

    def __init__(self, path: str, counter_depth: int | None = None, force_depth: bool = False) -> None:
        self.path = path
        self.size = os.path.getsize(path)
        if self.size == 0:
            raise InputError(f"{path}: the file is empty")
        head = _read_head(path)
        try:
            self.header = parse_frame_header(head, counter_depth, force_depth)
        except InputError as exc:
            raise InputError(f"{path}: {exc}") from None
        self.reference = self.header.reference_bytes(head)
        self.first_seq = self.header.sequence_number
        self.n_frames, self.partial_bytes = divmod(self.size, self.header.frame_bytes)
        self._mm = None
        self.array = None

    @property
    def last_seq(self) -> int:
        return self.first_seq + self.n_frames - 1

    def map(self) -> np.ndarray:
        if self.array is None:
            with builtins.open(self.path, "rb") as fh:
                self._mm = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
            self.array = np.frombuffer(self._mm, dtype=np.uint8)
        return self.array

    def release(self, start: int, stop: int) -> None:
        """Drop the pages of bytes ``start…stop`` from this process (they stay in the page cache)."""
        if self._mm is not None and hasattr(self._mm, "madvise"):
            a = start - start % mmap.PAGESIZE
            with contextlib.suppress(OSError, ValueError):
                self._mm.madvise(mmap.MADV_DONTNEED, a, min(stop, self.size) - a)

    def populate(self, start: int, stop: int) -> None:
        """Map bytes ``start…stop`` into this process now (one batched call in the reader
        thread instead of a page fault per 4 KiB in the engine); no-op where unsupported."""
        if self.array is not None:
            populate(self.array[start:stop])

    def close(self) -> None:
        self.array = None
        if self._mm is not None:
            with contextlib.suppress(BufferError):
                self._mm.close()
            self._mm = None


def _split_chain(path: str, first: _MibFile, counter_depth, force_depth: bool = False) -> list[_MibFile]:
    """``prefix1.mib, prefix2.mib, …`` whose sequence numbers continue ``first``'s, in order."""
    folder = os.path.dirname(os.path.abspath(path))
    m = re.fullmatch(r"(.*?)(\d+)\.mib", os.path.basename(path), flags=re.IGNORECASE)
    if not m:
        return [first]
    pattern = re.compile(re.escape(m.group(1)) + r"\d+\.mib", flags=re.IGNORECASE)
    files = {first.first_seq: first}
    for name in sorted(os.listdir(folder)):
        full = os.path.join(folder, name)
        if pattern.fullmatch(name) and not os.path.samefile(full, path):
            try:
                f = _MibFile(full, counter_depth, force_depth)
            except (InputError, OSError):
                continue
            if (f.header.frame_bytes == first.header.frame_bytes
                    and np.array_equal(f.reference, first.reference)):
                files.setdefault(f.first_seq, f)
    chain = [first]
    while chain[-1].partial_bytes == 0 and chain[-1].last_seq + 1 in files:
        chain.append(files[chain[-1].last_seq + 1])
    while True:
        prev = next((f for f in files.values() if f.partial_bytes == 0 and f.last_seq + 1 == chain[0].first_seq),
                    None)
        if prev is None:
            return chain
        chain.insert(0, prev)


def _frame_size_fits(f: _MibFile, frame_bytes: int) -> bool:
    """True if ``f`` is a whole number of ``frame_bytes`` frames, each (as far as checked) starting with a header."""
    if f.size % frame_bytes:
        return False
    if f.size == frame_bytes:
        return True
    with builtins.open(f.path, "rb") as fh:
        fh.seek(frame_bytes)
        return fh.read(4) == b"MQ1,"


def _settle_depth(first: _MibFile, hdr_depth: int, hdr_path: str | None) -> int:
    """The counter depth of raw frames whose header contradicts the ``.hdr``: the one whose
    frame size the file confirms (with a warning), else a one-line error."""
    own = first.header.counter_depth
    head = _read_head(first.path)
    fits = [d for d in (own, hdr_depth)
            if _frame_size_fits(first, parse_frame_header(head, d, force_depth=True).frame_bytes)]
    where = f"{first.path}: the raw frame header says counter depth {own} but {hdr_path or 'the .hdr'} says {hdr_depth}"
    if len(fits) != 1:
        raise InputError(f"{where}, and the file size does not tell which is right; correct 'Counter Depth "
                         f"(number)' in the .hdr to the depth the detector was set to")
    warnings.warn(f"{where}; the file's frame size fits depth {fits[0]}, decoding at depth {fits[0]}", stacklevel=4)
    return fits[0]


class MerlinSource(Source):
    """Frames of a Merlin acquisition (one ``.mib`` or split ``prefix1.mib, prefix2.mib, …``).

    The files are memory-mapped and decoded a chunk at a time (optionally the next chunk
    on a worker thread; `ricom.engine.pipeline.run` already reads ahead on its own thread); pages
    already decoded are released, so memory stays flat however large the files are.

    Parameters
    ----------
    path : str
        A ``.mib`` file (any of a split set) or the acquisition's ``.hdr``.
    scan_shape : (int, int), optional
        Else from the ``.hdr`` (ScanX/ScanY, or frames per trigger), else unknown.
    skip_frames, flyback_frames, frames_per_position : int
        See `ScanLayout`.
    scan_positions : ScanPositions, str or array, optional
        The scan order (`ricom.core.scan_positions`); default: a raster.
    pad, crop : bool
        When the frames do not fill whole scans, see `ricom.sources.raw.resolve_scan`.
    split_files : bool
        Join ``prefix<N>.mib`` files whose sequence numbers continue (default True).
    prefetch : bool
        Decode the next chunk on a worker thread while the current one is used (default
        False: `ricom.engine.pipeline.run` reads ahead itself).
    counter_depth : int, optional
        For headers without it (older software); else from the header or ``.hdr``.
    in_place : bool
        Hand processed 8/16-bit and raw 1-bit single-chip frames to the engine as
        `PackedFrames` over the memory map, without decoding them (default True).
    """

    kind = "frames"

    def __init__(self, path: str, scan_shape=None, skip_frames: int = 0, flyback_frames: int = 0,
                 frames_per_position: int = 1, pad: bool = False, crop: bool = False, split_files: bool = True,
                 prefetch: bool = False, counter_depth: int | None = None,
                 in_place: bool = True, scan_positions=None, **_ignored) -> None:
        path = os.fspath(path)
        if path.lower().endswith(".hdr"):
            path = self._mib_for_hdr(path)
        if not os.path.isfile(path):
            raise InputError(f"input {path!r} does not exist")
        self.hdr_path = _find_hdr(path)
        self.acquisition = {}
        if self.hdr_path:
            with builtins.open(self.hdr_path, "rb") as fh:
                try:
                    self.acquisition = parse_acquisition_header(fh.read(1 << 16))
                except InputError:
                    self.hdr_path = None
        force = counter_depth is not None
        if counter_depth is None:
            counter_depth = header_int(self.acquisition, "Counter Depth (number)")
        first = _MibFile(path, counter_depth, force)
        if not force and counter_depth is not None and first.header.raw and first.header.counter_depth != counter_depth:
            counter_depth = _settle_depth(first, counter_depth, self.hdr_path)
            force = True
            first = _MibFile(path, counter_depth, force)
        self.files = _split_chain(path, first, counter_depth, force) if split_files else [first]
        self.header = first.header
        self.detector_shape = self.header.detector_shape
        self.prefetch = bool(prefetch)
        h = self.header
        self._packed_bits = h.packed_bits and h.header_bytes % 8 == 0 and h.frame_bytes % 8 == 0  # 64-bit views
        self.in_place = bool(in_place) and (self._packed_bits or (
            not h.raw and h.dtype in ("U08", "U16") and h.header_bytes % 2 == 0 and h.frame_bytes % 2 == 0))
        self._to_release: list = []
        self._max_value = 2 ** h.counter_depth - 1 if h.counter_depth <= 16 else 0  # sizes the engine's sums
        self.name = path if len(self.files) == 1 else f"{path} (+{len(self.files) - 1} split files)"
        self._offset = self.files[0].first_seq - 1  # frames before the first file (missing)
        n_files = sum(f.n_frames for f in self.files)
        if n_files == 0:
            raise InputError(f"{path}: holds no complete frame ({self.files[0].size} bytes, a frame is "
                             f"{self.header.frame_bytes})")
        self.frames_in_files = n_files
        self.scan_shape_from = "given" if scan_shape is not None else None
        if scan_shape is None:
            scan_shape, self.scan_shape_from = acquisition_scan_shape(
                self.acquisition, self._offset + n_files, flyback_frames, frames_per_position)
        expected = header_int(self.acquisition, "Frames in Acquisition (Number)") or 0
        partial = self.files[-1].partial_bytes
        incomplete = bool(partial) or expected > self._offset + n_files or self._offset > 0
        if incomplete:
            self._warn_incomplete(partial, expected, scan_shape, skip_frames, flyback_frames, frames_per_position)
        self.skip_frames = int(skip_frames)
        self.layout, n_use = resolve_scan(self.name, self._offset + n_files, scan_shape, skip_frames,
                                          flyback_frames, frames_per_position, pad, crop, incomplete,
                                          origin=self.scan_shape_from, scan_positions=scan_positions)
        self.scan_shape = self.layout.scan_shape if self.layout else None
        self.n_frames = n_use - self._offset

    @staticmethod
    def _mib_for_hdr(hdr: str) -> str:
        stem = os.path.splitext(hdr)[0]
        for cand in (stem + ".mib", stem + "1.mib", stem + "_1.mib", stem + ".MIB"):
            if os.path.isfile(cand):
                return cand
        raise InputError(f"{hdr}: no .mib file with the same name beside it")

    def _warn_incomplete(self, partial, expected, scan_shape, skip, flyback, fpp) -> None:
        have = self._offset + self.frames_in_files
        if scan_shape is not None:
            sy, sx = scan_shape
            expected = max(expected, skip + sy * (sx + flyback) * fpp)
        parts = []
        if self._offset:
            parts.append(f"the first file starts at frame {self._offset + 1}: {self._offset} frames before it "
                         f"are missing")
        if partial:
            parts.append(f"the last frame is incomplete ({partial} of {self.header.frame_bytes} bytes)")
        if expected > have:
            parts.append(f"{expected - have} of the {expected} frames of the acquisition are missing")
        warnings.warn(f"{self.files[-1].path}: incomplete acquisition: {'; '.join(parts)}; using the "
                      f"{self.frames_in_files} complete frames", stacklevel=3)

    def _plan(self, chunk_size: int, start: int = 0, stop: int | None = None) -> list[tuple[_MibFile, int, int, int]]:
        """Chunks ``(file, first frame in file, count, global frame index)`` of frames
        ``start … stop-1`` (counted from the first frame of the first file), cut every
        ``chunk_size`` frames from the start of the range and at file boundaries."""
        stop = self.n_frames if stop is None else stop
        plan, g0 = [], self._offset  # g0: global index of the current file's first frame
        lo, hi = self._offset + start, self._offset + stop
        for f in self.files:
            a, b = max(lo, g0), min(hi, g0 + f.n_frames)
            for g in range(a, b, chunk_size):
                plan.append((f, g - g0, min(chunk_size, b - g), g))
            g0 += f.n_frames
            if g0 >= hi:
                break
        return plan

    def _decode(self, job) -> tuple[np.ndarray | PackedFrames, int, str | None, np.ndarray]:
        """Frames of one planned chunk: packed in place (processed 8/16-bit) or decoded."""
        f, s, c, g = job
        h = self.header
        fb = h.frame_bytes
        buf = f.map()[s * fb:(s + c) * fb]
        f.populate(s * fb, (s + c) * fb)  # first: a page fault per frame header costs 4× mapping them all
        good, seq = check_frames(buf, h, c, f.reference)
        if self.in_place and good:
            rows = buf[:good * fb].reshape(good, fb)
            if self._packed_bits:  # raw 1-bit: the engine counts bits in the 64-bit words
                frames = PackedFrames(rows.view(np.uint64), h.header_bytes // 8, self.detector_shape, bits=1)
            else:
                item = 2 if h.dtype == "U16" else 1
                frames = PackedFrames(rows.view(np.uint16) if item == 2 else rows, h.header_bytes // item,
                                      self.detector_shape, big_endian=item == 2, max_value=self._max_value)
            self._release_later(f, s * fb, (s + good) * fb)
        else:
            frames = np.empty((c, *self.detector_shape), h.out_dtype)[:good]
            decode_frames(buf, h, good, out=frames, check=False)
            f.release(s * fb, (s + good) * fb)
        error = None if good == c else self._change_message(f, s + good, g + good - self._offset)
        return frames, good, error, seq[:good]

    RELEASE_LAG = 8
    """Chunks read in place stay mapped this long (the consumer may still be reading them;
    releasing early is harmless anyway: the pages come back from the page cache)."""

    def _release_later(self, f, start: int, stop: int) -> None:
        self._to_release.append((f, start, stop))
        while len(self._to_release) > self.RELEASE_LAG:
            old, a, b = self._to_release.pop(0)
            old.release(a, b)

    @staticmethod
    def _jump(seq: np.ndarray, previous: int | None, job) -> str | None:
        """A warning if sequence numbers do not count up by one (dropped frames)."""
        full = np.r_[previous, seq] if previous is not None else seq
        jumps = np.flatnonzero(np.diff(full) != 1)
        if not len(jumps):
            return None
        k = int(jumps[0])
        at = job[1] + k + (1 if previous is not None else 2)
        return (f"{job[0].path}: sequence number jumps from {full[k]} to {full[k + 1]} at frame {at}: frames "
                f"were dropped; positions follow the file order")

    def _change_message(self, f: _MibFile, index: int, done: int) -> str:
        off = index * self.header.frame_bytes
        what = self.header.summary()
        try:
            new = parse_frame_header(f.map()[off:off + 4096])
            change = f"its header changes from {what} to {new.summary()}"
        except InputError:
            change = f"no MIB header where one should be (found {f.map()[off:off + 12].tobytes()!r})"
        return (f"{f.path}: frame {index + 1}: {change}; the {done} frames before it were read, the "
                f"rest of the file is not used")

    def suggested_chunk_size(self, chunk_size: int) -> int:
        """Frames per chunk for a pipeline asked for ``chunk_size``: 4× for raw 1-bit frames read in
        place (1/16 of a 12-bit frame's bytes; bigger chunks keep the per-chunk work small)."""
        return 4 * chunk_size if self.in_place and self._packed_bits else chunk_size

    def chunks(self, chunk_size: int = 256):
        return self._read_plan(self._plan(max(1, int(chunk_size))))

    def sample_frames(self) -> np.ndarray | PackedFrames:
        """The first two frames as the chunks will hold them: `ricom.engine.pipeline.run` loads the
        engine's compiled code with them before its clock starts."""
        f = self.files[0]
        return self._decode((f, 0, min(2, f.n_frames), self._offset))[0]

    @property
    def splittable(self) -> bool:
        """Every frame of a ``.mib`` has the same size, so any range can be found directly."""
        return True

    def read_range(self, start: int, stop: int, chunk_size: int = 256):
        """Frames ``start … stop-1`` (acquisition order, across split files) in chunks.

        A change of frame header inside the range ends it with `InputError`, as in
        `chunks`; the sequence-number check runs within the range only.
        """
        start, stop = self._check_range(start, stop)
        return self._read_plan(self._plan(max(1, int(chunk_size)), start, stop))

    def _read_plan(self, plan):
        if not plan:
            return
        with ThreadPoolExecutor(1, thread_name_prefix="ricom-mib") if self.prefetch else \
                contextlib.nullcontext() as pool:
            pending = pool.submit(self._decode, plan[0]) if pool else None
            previous, warned = None, False
            for k, job in enumerate(plan):
                frames, good, error, seq = pending.result() if pool else self._decode(job)
                if pool and error is None and k + 1 < len(plan):
                    pending = pool.submit(self._decode, plan[k + 1])
                note = None if warned or not good else self._jump(seq, previous, job)
                if note:
                    warnings.warn(note, stacklevel=2)
                    warned = True
                previous = int(seq[-1]) if good else previous
                if good:
                    pos = positions_for(self.layout, job[3], good, self.skip_frames)
                    yield FrameChunk(packed=frames, positions=pos) if isinstance(frames, PackedFrames) \
                        else FrameChunk(frames, pos)
                if error:
                    raise InputError(error)

    def describe(self) -> dict:
        h = self.header
        d = {**super().describe(), "format": f"Merlin MIB ({'raw' if h.raw else 'processed'})",
             "files": [f.path for f in self.files], "hdr": self.hdr_path, "dtype": str(h.out_dtype),
             "mib_dtype": h.dtype, "counter_depth": h.counter_depth, "layout": h.layout, "chips": h.n_chips,
             "header_bytes": h.header_bytes, "frame_bytes": h.frame_bytes, "frames_in_files": self.frames_in_files,
             "first_sequence_number": self.files[0].first_seq, "scan_shape_from": self.scan_shape_from,
             "incomplete_frame_bytes": self.files[-1].partial_bytes}
        for key, name in (("Frames in Acquisition (Number)", "frames_in_acquisition"),
                          ("Frames per Trigger (Number)", "frames_per_trigger")):
            if key in self.acquisition:
                d[name] = header_int(self.acquisition, key)
        if self.layout is not None:
            d.update(skip_frames=self.layout.skip_frames, flyback_frames=self.layout.flyback_frames,
                     frames_per_position=self.layout.frames_per_position)
        return d

    def close(self) -> None:
        self._to_release.clear()
        for f in self.files:
            f.close()


def open(spec: str, **options) -> MerlinSource:
    """Reader entry point for ``.mib`` and ``.hdr`` inputs."""
    return MerlinSource(spec, **options)
