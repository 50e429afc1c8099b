"""ricom convert INPUT -o OUTPUT [options]

Decode an input (Merlin .mib, HDF5, Zarr, raw binary, EMPAD, …) and write the patterns
as .npy, .h5 (dataset /data) or .zarr: a 4D (scan_y, scan_x, det_y, det_x) array when the
scan shape is known, else a 3D (frames, det_y, det_x) stack in acquisition order.
Skipped and flyback frames are left out; several frames per position (or several scan
passes) are summed.  The data is streamed a chunk at a time; the output appears under
its name only when complete.

Exit codes: 0 done; 2 bad input (nothing written); 3 the input broke off (the frames
read so far are saved, the rest is zero); 130 interrupted (nothing written).
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
import tempfile
import warnings

import numpy as np

from ricom.cli.options import add_layout_options, error_text, source_options
from ricom.core.errors import InputError, RicomError, SettingsError
from ricom.core.progress import Progress, count_text
from ricom.io.outputs import atomic_path, current_umask

HELP = "decode an input and write its patterns as .npy, .h5 or .zarr"
OUTPUTS = (".npy", ".h5", ".hdf5", ".zarr")


def add_arguments(p) -> None:
    p.add_argument("input", metavar="INPUT", help="data file (.mib, file.h5:/dataset, .zarr, .raw, …)")
    p.add_argument("-o", "--output", required=True, metavar="OUTPUT", help="output .npy, .h5 or .zarr")
    p.add_argument("--compression", choices=("none", "gzip", "lzf"), default="none",
                   help="HDF5 output compression (default none)")
    p.add_argument("--chunk-size", type=int, default=256, metavar="N", help="patterns per chunk (default 256)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar or progress lines")
    add_layout_options(p)  # event data (.tpx3, .t3p) has no patterns to convert


def output_kind(path: str) -> str:
    ext = os.path.splitext(path.rstrip("/\\"))[1].lower()
    if ext not in OUTPUTS:
        raise SettingsError(f"output {path!r}: unknown extension; use one of {', '.join(OUTPUTS)}")
    folder = os.path.dirname(os.path.abspath(path.rstrip("/\\")))
    if not os.path.isdir(folder) or not os.access(folder, os.W_OK):
        raise SettingsError(f"output folder {folder!r} does not exist or is not writable; choose another -o")
    if ext != ".zarr" and os.path.isdir(path):
        raise SettingsError(f"output {path!r} is a folder; give a file name")
    return ".h5" if ext == ".hdf5" else ext


def _sum_dtype(dtype: np.dtype) -> np.dtype:
    if dtype.kind in "ub":
        return np.dtype(np.uint32 if dtype.itemsize < 4 else np.uint64)
    if dtype.kind == "i":
        return np.dtype(np.int64)
    return np.dtype(np.float64 if dtype.itemsize > 4 else np.float32)


@contextlib.contextmanager
def _atomic_dir(path: str):
    """Yield a temporary folder beside ``path``; it replaces ``path`` on success only."""
    path = os.path.abspath(path.rstrip("/\\"))
    tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(path)}.", suffix=".part", dir=os.path.dirname(path))
    try:
        yield tmp
        old = None
        if os.path.exists(path):
            old = tempfile.mkdtemp(prefix=f".{os.path.basename(path)}.", suffix=".old", dir=os.path.dirname(path))
            os.replace(path, os.path.join(old, "x"))
        os.replace(tmp, path)
        if old:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def calibration_attrs(source) -> dict:
    """The input's calibration (its ``hints``) as numeric attributes, which the HDF5, Zarr
    and ``.npy`` readers take back (`ricom.sources.hdf5.dataset_hints`), so a converted
    file reconstructs calibrated."""
    from ricom.sources.hdf5 import HINT_KEYS  # (h5py: not at the command line's start-up)

    out = {}
    for key, value in source.hints().items():
        if key == "center_yx" and value is not None:
            out[key] = [float(v) for v in value]
        elif key in HINT_KEYS and isinstance(value, (int, float, np.integer, np.floating)):
            out[key] = float(value)
    return out


def _create(kind: str, tmp: str, shape: tuple, dtype: np.dtype, compression: str, attrs: dict, cal: dict):
    """An array-like output (zero-filled) and a closer."""
    if kind == ".npy":
        arr = np.lib.format.open_memmap(tmp, mode="w+", dtype=dtype, shape=shape)
        return arr, lambda: (arr.flush(), None)[1]
    if kind == ".h5":
        import h5py
        f = h5py.File(tmp, "w")
        chunks = (1,) * (len(shape) - 2) + shape[-2:]
        ds = f.create_dataset("data", shape=shape, dtype=dtype, chunks=chunks, fillvalue=0,
                              compression=None if compression == "none" else compression)
        for k, v in attrs.items():
            f.attrs[k] = v
        ds.attrs.update(cal)  # where the readers look
        return ds, f.close
    import zarr
    arr = zarr.create_array(tmp, shape=shape, dtype=dtype, chunks=(1,) * (len(shape) - 2) + shape[-2:],
                            fill_value=0, attributes=attrs)
    return arr, lambda: None


class _FlatWriter:
    """Writes frames at flat scan positions into a 3D or 4D array-like, row piece by row piece."""

    def __init__(self, out, summing: bool) -> None:
        self.out, self.summing = out, summing
        self.row = out.shape[1] if out.ndim == 4 else 0

    def _pieces(self, p0: int, k: int):
        if not self.row:
            yield (slice(p0, p0 + k),), 0, k
            return
        i = 0
        while i < k:
            r, c = divmod(p0 + i, self.row)
            n = min(self.row - c, k - i)
            yield (r, slice(c, c + n)), i, i + n
            i += n

    def write(self, frames: np.ndarray, positions: np.ndarray) -> None:
        keep = positions >= 0
        frames, positions = frames[keep], positions[keep]
        if not len(positions):
            return
        if self.summing:  # merge consecutive frames at one position
            starts = np.flatnonzero(np.r_[True, np.diff(positions) != 0])
            frames = np.add.reduceat(frames.astype(self.out.dtype), starts, axis=0)
            positions = positions[starts]
        breaks = np.flatnonzero(np.diff(positions) != 1) + 1
        for run_f, run_p in zip(np.split(frames, breaks), np.split(positions, breaks), strict=True):
            for key, a, b in self._pieces(int(run_p[0]), len(run_p)):
                block = run_f[a:b]
                if self.summing:
                    block = np.asarray(self.out[key]) + block
                self.out[key] = block


def convert(source, output: str, chunk_size: int = 256, compression: str = "none", progress=False):
    """Write every pattern of ``source`` to ``output``; returns ``(shape, frames_written, error)``.

    ``progress``: True shows progress (a bar on a terminal, lines when piped), or a
    `ricom.core.progress.Progress` to tell of every frame read.
    """
    kind = output_kind(output)
    if source.kind != "frames":
        raise InputError("convert needs frame data; event data has no patterns to write")
    chunks = source.chunks(chunk_size)
    first = next(chunks, None)
    if first is None:
        raise InputError("the input delivered no frames")
    det = tuple(int(v) for v in first.frames.shape[-2:])
    dtype = np.dtype(first.frames.dtype)
    layout = getattr(source, "layout", None)
    if source.scan_shape is not None:
        shape = (*source.scan_shape, *det)
        per_pass = layout.skip_frames + layout.frames_per_pass if layout is not None else None
        summing = layout is not None and (layout.frames_per_position > 1 or (source.n_frames or 0) > per_pass
                                          or layout.order is not None)  # a listed order may repeat positions
    else:
        shape = ((source.n_frames or 0) - getattr(source, "skip_frames", 0), *det)
        summing = False
    if summing:
        dtype = _sum_dtype(dtype)
    cal = calibration_attrs(source)
    attrs = {"scan_shape": list(shape[:2]) if len(shape) == 4 else "unknown", "detector_shape": list(det),
             "source": json.dumps(source.describe(), default=str), "software": "ricom convert", **cal}
    atomic = _atomic_dir if kind == ".zarr" else atomic_path
    written, error = 0, None
    bar = Progress("convert", source.n_frames, "frames") if progress is True else progress or None
    with atomic(output) as tmp:
        out, close = _create(kind, tmp, shape, dtype, compression, attrs, cal)
        writer = _FlatWriter(out, summing)
        try:
            chunk = first
            while chunk is not None:
                positions = np.asarray(chunk.positions)
                writer.write(np.asarray(chunk.frames), positions)
                written += int(np.count_nonzero(positions >= 0))
                if bar is not None:
                    bar.update(len(chunk.positions))
                try:
                    chunk = next(chunks, None)
                except (RicomError, OSError) as exc:
                    error, chunk = str(exc), None
            if kind != ".npy":
                out.attrs["frames_written"] = written
                out.attrs["complete"] = error is None
        finally:
            close()
            if progress is True:
                bar.close()
            source.close()
    _default_permissions(output)
    if kind == ".npy" and cal:  # a .npy has no attributes: the sidecar the .npy reader takes
        from ricom.core.sidecar import sidecar_path

        with atomic_path(sidecar_path(output)) as tmp, open(tmp, "w") as fh:
            json.dump({"calibration": cal}, fh, indent=1)
    return shape, written, error


def _default_permissions(path: str) -> None:
    """Temporary files are private (0600); give the output the usual umask permissions."""
    mask = current_umask()
    with contextlib.suppress(OSError):
        os.chmod(path, (0o777 if os.path.isdir(path) else 0o666) & ~mask)
        if os.path.isdir(path):
            for folder, dirs, files in os.walk(path):
                for name in dirs:
                    os.chmod(os.path.join(folder, name), 0o777 & ~mask)
                for name in files:
                    os.chmod(os.path.join(folder, name), 0o666 & ~mask)


def run(args) -> int:
    from ricom.sources import open_source

    output_kind(args.output)
    if args.chunk_size < 1:
        raise SettingsError("--chunk-size must be at least 1")
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        source = open_source(args.input, **source_options(args))
        with Progress("convert", source.n_frames, "frames", show=not args.no_progress) as progress:
            shape, written, error = convert(source, args.output, args.chunk_size, args.compression, progress=progress)
    shape_text = "×".join(str(v) for v in shape)
    print(progress.summary(f"wrote {count_text(written)} patterns to {args.output} ({shape_text})"))
    if error:
        print(f"ricom: error: {error_text(error)}; the {written} patterns read before it are saved in {args.output}",
              file=sys.stderr)
        return 3
    return 0
