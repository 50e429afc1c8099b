"""Frames from arrays on disk: raw binary files, EMPAD, and any lazily sliceable array.

`LazyArraySource` streams frames from anything that slices like a NumPy array without
loading it whole (an HDF5 dataset, a Zarr array, a memory map, a dask array); the HDF5,
Zarr and RosettaSciIO readers build on it.  `resolve_scan` is the one place that decides
whether a frame count fits a scan (with the ``pad`` / ``crop`` options), shared by every
file reader here and the Merlin reader.

Raw binary: ``file.raw`` or ``file.bin`` with options ``dtype`` (e.g. ``"<u2"``),
``detector_shape`` (rows, cols), ``header_bytes`` (once at the start) and
``frame_header_bytes`` (before every frame).  EMPAD: ``file.xml`` (or its ``.raw``):
130×128 little-endian float32 per frame, the last 2 rows metadata, giving 128×128
patterns; the scan shape comes from the XML where it is stated.
"""
from __future__ import annotations

import builtins
import os
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator

import numpy as np

from ricom.core.chunks import FrameChunk, ScanLayout
from ricom.core.errors import InputError, Param, SettingsError
from ricom.core.params import check_scan_memory, shape2
from ricom.core.scan_positions import scan_positions_from
from ricom.sources.base import Source, populate_mapped

BLOCK_BYTES = 64 * 2**20
"""Upper bound of one read from a lazy array (several chunks are cut from one read)."""
_CHECK_LAYOUT = ("check ", Param("scan_shape"), "/", Param("skip_frames"), "/", Param("flyback_frames"), ", or use ")
"""Start of the advice when the frames do not fill whole scans (message parts)."""


def resolve_scan(name: str, n_frames: int, scan_shape, skip_frames: int = 0, flyback_frames: int = 0,
                 frames_per_position: int = 1, pad: bool = False, crop: bool = False,
                 incomplete: bool = False, origin: str | None = None,
                 scan_positions=None) -> tuple[ScanLayout | None, int]:
    """The scan layout and how many frames to use, or a one-line error if they do not fit.

    Parameters
    ----------
    name : str
        Input name for messages.
    n_frames : int
        Complete frames available.
    scan_shape : (int, int) or None
        None: no layout (frames are used in order, see `positions_for`).
    skip_frames, flyback_frames, frames_per_position : int
        See `ScanLayout`.
    pad : bool
        Use all frames even if they do not fill whole scans (missing positions stay empty).
    crop : bool
        Drop frames beyond the last whole scan; with less than one scan, keep the complete
        scan lines (the scan shape shrinks).
    incomplete : bool
        The acquisition is known to be cut short (the caller has warned): behave as ``pad``.
    origin : str, optional
        Where the scan shape came from (``"given"``, ``"4D array shape"``, ``".hdr ScanX/ScanY"``),
        for the message when it is too large to reconstruct.
    scan_positions : ScanPositions, str or array, optional
        The scan order (`ricom.core.scan_positions`): a pass is then one frame (or
        ``frames_per_position``) per listed point.

    Returns
    -------
    (ScanLayout or None, int)
    """
    if scan_shape is None:
        return None, n_frames
    if pad and crop:
        raise SettingsError("choose either pad or crop, not both")
    layout = ScanLayout((int(scan_shape[0]), int(scan_shape[1])), int(skip_frames), int(flyback_frames),
                        int(frames_per_position), scan_positions_from(scan_positions))
    sy, sx = layout.scan_shape
    check_scan_memory(sy * sx, f"{name}: scan shape {sy}×{sx} ({origin or 'given'})",
                      from_file=origin not in (None, "given"))
    per_pass, skip = layout.frames_per_pass, layout.skip_frames
    avail = n_frames - skip
    if avail <= 0:
        raise SettingsError(f"{name}: all {n_frames} frames are skipped (", Param("skip_frames", skip), ")")
    if avail % per_pass == 0 or pad or incomplete:
        return layout, n_frames
    extra = f" + {skip} skipped" if skip else ""
    extra += f", {layout.flyback_frames} flyback per line" if layout.flyback_frames else ""
    extra += f", {layout.frames_per_position} per position" if layout.frames_per_position > 1 else ""
    line = (sx + layout.flyback_frames) * layout.frames_per_position
    if avail < per_pass:
        rows = avail // line if layout.order is None else 0  # scan lines mean nothing in a listed order
        if crop and rows > 0:
            return ScanLayout((rows, sx), skip, layout.flyback_frames, layout.frames_per_position), \
                skip + rows * line
        raise SettingsError(
            f"{name}: {n_frames} frames are too few for the {sy}×{sx} scan ({per_pass} frames{extra}); ",
            *_CHECK_LAYOUT, Param("pad", True), " (leave missing positions empty) or ", Param("crop", True),
            f" (keep the {rows} complete scan lines)")
    if crop:
        return layout, skip + (avail // per_pass) * per_pass
    raise SettingsError(
        f"{name}: {n_frames} frames are not a whole number of {sy}×{sx} scans ({per_pass} frames each{extra}); ",
        *_CHECK_LAYOUT, Param("crop", True), f" (drop the {avail % per_pass} extra frames) or ", Param("pad", True),
        " (use them)")


def positions_for(layout: ScanLayout | None, start: int, count: int, skip_frames: int = 0) -> np.ndarray:
    """Flat scan positions of frames ``start…start+count-1``; without a layout, the frame order."""
    if layout is not None:
        return layout.positions(start, count)
    pos = np.arange(start - skip_frames, start - skip_frames + count, dtype=np.int64)
    pos[pos < 0] = -1
    return pos


def check_pattern_dtype(name: str, dtype) -> None:
    """A one-line `InputError` unless patterns of ``dtype`` can be reconstructed (integers,
    booleans, floats; ``float16`` is read as ``float32`` by `native`)."""
    dtype = np.dtype(dtype)
    if dtype.kind == "c":
        raise InputError(f"{name}: the patterns are complex ({dtype}); ricom needs real intensities: "
                         f"store |value|² (or the real part) as integers or floats")
    if dtype.kind not in "uifb" or dtype.itemsize > 8:
        raise InputError(f"{name}: pattern data must be integers or floats of at most 64 bits, got dtype {dtype}")


def native(frames: np.ndarray) -> np.ndarray:
    """Frames in native byte order and a number dtype the engine takes (``float16`` as ``float32``)."""
    frames = np.asarray(frames)
    if frames.dtype == bool:
        return frames.view(np.uint8)
    if frames.dtype.kind == "f" and frames.dtype.itemsize == 2:
        return frames.astype(np.float32)
    if not frames.dtype.isnative:
        return frames.astype(frames.dtype.newbyteorder("="))
    return frames


class LazyArraySource(Source):
    """Frames streamed from a lazily sliced 3D ``(n, dy, dx)`` or 4D ``(sy, sx, dy, dx)`` array.

    Parameters
    ----------
    data : array-like
        Anything with ``shape``, ``dtype`` and NumPy slicing (h5py, zarr, memmap, dask).
    name : str
        Shown in messages.
    scan_shape : (int, int), optional
        Needed for 3D data (else None: the frames are in order, scan unknown); for 4D
        data it may re-shape the scan.
    detector_crop : (int, int), optional
        Keep only ``[:rows, :cols]`` of every frame (EMPAD metadata rows).
    block : int, optional
        Preferred read granularity along the first axis (an HDF5/Zarr chunk length).
    skip_frames, flyback_frames, frames_per_position, pad, crop, scan_positions
        See `resolve_scan`.
    """

    def __init__(self, data, name: str, scan_shape=None, skip_frames: int = 0, flyback_frames: int = 0,
                 frames_per_position: int = 1, pad: bool = False, crop: bool = False, detector_crop=None,
                 block: int | None = None, scan_shape_from: str | None = None, scan_positions=None,
                 **_ignored) -> None:
        if len(data.shape) not in (3, 4):
            raise InputError(f"{name}: expected a 3D (frames, det_y, det_x) or 4D (scan_y, scan_x, det_y, "
                             f"det_x) array, got shape {tuple(data.shape)}")
        check_pattern_dtype(name, data.dtype)
        self.data, self.name = data, name
        self._det_crop = detector_crop
        full_det = tuple(int(v) for v in data.shape[-2:])
        self.detector_shape = tuple(detector_crop) if detector_crop else full_det
        self._row_len = int(data.shape[1]) if len(data.shape) == 4 else 1
        total = int(np.prod(data.shape[:-2]))
        if total == 0 or 0 in full_det:
            raise InputError(f"{name}: the array holds no patterns (shape {tuple(data.shape)})")
        self.scan_shape_from = scan_shape_from
        if scan_shape is not None and scan_shape_from is None:
            self.scan_shape_from = "given"
        elif scan_shape is None and len(data.shape) == 4 and not (skip_frames or flyback_frames) \
                and frames_per_position == 1:
            scan_shape, self.scan_shape_from = tuple(int(v) for v in data.shape[:2]), "4D array shape"
        self.skip_frames = int(skip_frames)
        self.layout, self.n_frames = resolve_scan(name, total, scan_shape, skip_frames, flyback_frames,
                                                  frames_per_position, pad, crop, origin=self.scan_shape_from,
                                                  scan_positions=scan_positions)
        self.scan_shape = self.layout.scan_shape if self.layout else None
        frame_bytes = int(np.prod(full_det)) * np.dtype(data.dtype).itemsize
        fit = max(1, BLOCK_BYTES // frame_bytes)
        unit = self._row_len if len(data.shape) == 4 else max(1, int(block or 1))
        self._block = max(1, fit // unit) * unit if unit <= fit else fit

    mapped = None
    """The same array memory-mapped, where a subclass can map it (read instead of ``data``)."""

    def _read(self, a: int, b: int) -> np.ndarray:
        """Frames ``a…b-1`` in flat order (whole scan rows in one read where possible)."""
        data, rl = (self.data if self.mapped is None else self.mapped), self._row_len
        if len(data.shape) == 3:
            out = data[a:b]
        elif a % rl == 0 and b % rl == 0:
            out = data[a // rl:b // rl]
            populate_mapped(out)
            out = np.asarray(out).reshape((-1, *data.shape[-2:]))
        else:
            parts, i = [], a
            while i < b:
                r, c = divmod(i, rl)
                c1 = min(rl, c + b - i)
                parts.append(np.asarray(data[r, c:c1]))
                i += c1 - c
            out = np.concatenate(parts)
        if len(data.shape) == 3:
            populate_mapped(out)
        out = np.asarray(out.compute() if hasattr(out, "compute") else out)
        if self._det_crop:
            out = out[:, :self._det_crop[0], :self._det_crop[1]]
        return native(out)

    def chunks(self, chunk_size: int = 256) -> Iterator[FrameChunk]:
        return self.read_range(0, self.n_frames, chunk_size)

    def sample_frames(self) -> np.ndarray:
        """The first two frames as the chunks will hold them: `ricom.engine.pipeline.run` loads the
        engine's compiled code with them before its clock starts."""
        frames = self._read(0, min(2, self.n_frames))
        source = self.data if self.mapped is None else self.mapped
        if isinstance(source, np.ndarray) and not source.flags.writeable and frames.flags.writeable:
            frames.flags.writeable = False  # chunks of a read-only map are read-only views: the same kernels
        return frames

    @property
    def splittable(self) -> bool:
        """Lazily sliced arrays (HDF5, Zarr, memory maps, RosettaSciIO) read any frame range."""
        return True

    def read_range(self, start: int, stop: int, chunk_size: int = 256) -> Iterator[FrameChunk]:
        """Frames ``start … stop-1`` (acquisition order), read a block at a time, in chunks."""
        start, stop = self._check_range(start, stop)
        chunk_size = max(1, int(chunk_size))
        block = max(self._block, chunk_size)
        for a in range(start, stop, block):
            b = min(stop, a + block)
            frames = self._read(a, b)
            for s in range(0, b - a, chunk_size):
                part = frames[s:s + chunk_size]
                passes = self.layout.passes(a + s, len(part)) if self.layout is not None else None
                yield FrameChunk(part, positions_for(self.layout, a + s, len(part), self.skip_frames), passes)

    def describe(self) -> dict:
        d = {**super().describe(), "name": self.name, "array_shape": tuple(int(v) for v in self.data.shape),
             "dtype": str(np.dtype(self.data.dtype)), "scan_shape_from": self.scan_shape_from}
        if self.layout is not None:
            d.update(skip_frames=self.layout.skip_frames, flyback_frames=self.layout.flyback_frames,
                     frames_per_position=self.layout.frames_per_position)
        return d


def open_raw(path: str, dtype=None, detector_shape=None, header_bytes: int = 0, frame_header_bytes: int = 0,
             **options) -> LazyArraySource:
    """Open a headerless binary stack of frames (``.raw``/``.bin``) memory-mapped.

    Parameters
    ----------
    path : str
    dtype : str or numpy dtype
        Pixel type with byte order, e.g. ``"<u2"``, ``">f4"``.
    detector_shape : (int, int)
        Frame rows and columns.
    header_bytes : int
        Bytes to skip once at the start of the file.
    frame_header_bytes : int
        Bytes before every frame.
    **options
        Scan options (`resolve_scan`).
    """
    if not os.path.isfile(path):
        raise InputError(f"input {path!r} does not exist")
    if dtype is None and detector_shape is None and _empad_xml_for(path):
        return open_empad(path, **options)
    if dtype is None or detector_shape is None:
        raise SettingsError(f"{path}: raw binary needs the options dtype (e.g. '<u2') and detector_shape "
                            f"(rows, cols)")
    try:
        dt = np.dtype(dtype)
    except TypeError:
        raise SettingsError(f"{path}: unknown dtype {dtype!r}; use e.g. '<u2', '>u4', '<f4'") from None
    check_pattern_dtype(path, dt)
    rows, cols = shape2("detector_shape", detector_shape)
    header_bytes, frame_header_bytes = int(header_bytes), int(frame_header_bytes)
    if header_bytes < 0 or frame_header_bytes < 0:
        raise SettingsError("header_bytes and frame_header_bytes must be ≥ 0")
    frame = rows * cols * dt.itemsize + frame_header_bytes
    size = os.path.getsize(path) - header_bytes
    n = size // frame if size > 0 else 0
    if n == 0:
        raise InputError(f"{path}: holds no complete {rows}×{cols} {dt} frame after {header_bytes} header bytes")
    if size % frame:
        import warnings
        warnings.warn(f"{path}: {size % frame} bytes after the last complete frame are ignored "
                      f"(incomplete frame, or wrong dtype/detector_shape/header sizes)", stacklevel=2)
    mm = np.memmap(path, dtype=np.uint8, mode="r", offset=header_bytes, shape=(n * frame,))
    arr = mm.reshape(n, frame)[:, frame_header_bytes:].view(dt).reshape(n, rows, cols)
    return LazyArraySource(arr, name=path, **options)


def _empad_xml_for(path: str) -> str | None:
    """The EMPAD ``.xml`` beside a ``.raw``: same stem, else one in the folder naming this file."""
    stem = os.path.splitext(path)[0]
    if os.path.isfile(stem + ".xml"):
        return stem + ".xml"
    folder, name = os.path.split(os.path.abspath(path))
    xmls = sorted(f for f in os.listdir(folder) if f.lower().endswith(".xml"))[:50]
    for cand in xmls:
        with builtins.open(os.path.join(folder, cand), "rb") as fh:
            if name.encode() in fh.read(1 << 16):
                return os.path.join(folder, cand)
    return None


def _empad_metadata(xml_path: str) -> tuple[str | None, list[tuple[int, int]]]:
    """Raw file name and candidate scan shapes (rows, cols) of an EMPAD XML file.

    The ``acquire`` scan parameters come first; some files hold the ``search`` ones.
    """
    try:
        root = ET.parse(xml_path).getroot()
    except (ET.ParseError, OSError) as exc:
        raise InputError(f"{xml_path}: not a readable EMPAD XML file ({exc})") from None
    raw = root.find("raw_file")
    raw_name = re.split(r"[\\/]", raw.attrib.get("filename", ""))[-1] if raw is not None else None
    shapes = []
    typ = root.find("type")
    if typ is None or (typ.text or "").strip() == "scan":
        params = sorted(root.findall("scan_parameters"), key=lambda e: e.attrib.get("mode") != "acquire")
        for el in params:
            x, y = el.find("scan_resolution_x"), el.find("scan_resolution_y")
            try:
                shapes.append((int(y.text), int(x.text)))
            except (AttributeError, TypeError, ValueError):
                continue
    return raw_name or None, shapes


def open_empad(path: str, scan_shape=None, **options) -> LazyArraySource:
    """Open an EMPAD acquisition from its ``.xml`` (or ``.raw``) file.

    Frames are 130×128 little-endian float32; the last two rows are metadata and are
    dropped, so patterns are 128×128.  The scan shape comes from the XML
    (``scan_resolution_x/y`` of the acquire, else the search parameters, whichever fits
    the file) unless given; the raw file is the one the XML names, else ``<stem>.raw``.
    """
    xml_path = path if path.lower().endswith(".xml") else _empad_xml_for(path)
    raw_name, shapes = _empad_metadata(xml_path) if xml_path else (None, [])
    if path.lower().endswith(".raw"):
        raw_path = path
    else:
        folder = os.path.dirname(os.path.abspath(path))
        cands = [os.path.join(folder, raw_name)] if raw_name else []
        cands.append(os.path.splitext(path)[0] + ".raw")
        raw_path = next((c for c in cands if os.path.isfile(c)), None)
        if raw_path is None:
            raise InputError(f"{path}: the EMPAD .raw file ({raw_name or 'same name, .raw'}) is not beside it")
    frame = 130 * 128 * 4
    size = os.path.getsize(raw_path)
    n = size // frame
    if n == 0 or size % frame:
        raise InputError(f"{raw_path}: size {size} is not a whole number of EMPAD frames (130×128 float32)")
    source_from = None
    if scan_shape is None and shapes:
        scan_shape = next((s for s in shapes if s[0] * s[1] == n), shapes[0])
        source_from = "EMPAD XML"
    arr = np.memmap(raw_path, dtype="<f4", mode="r", shape=(n, 130, 128))
    return LazyArraySource(arr, name=raw_path, scan_shape=scan_shape, detector_crop=(128, 128),
                           scan_shape_from=source_from, **options)


def open(spec: str, **options) -> Source:
    """Reader entry point: ``.xml`` → EMPAD; ``.raw``/``.bin`` → raw binary (or EMPAD)."""
    if not os.path.exists(spec):
        raise InputError(f"input {spec!r} does not exist")
    if spec.lower().endswith(".xml"):
        return open_empad(spec, **options)
    return open_raw(spec, **options)
