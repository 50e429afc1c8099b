"""Writing results: HDF5, TIFF, NumPy and PNG previews, always atomically.

A file appears under its final name only when it is complete: everything is written to
a temporary file in the same folder and renamed at the end, so an error or Ctrl-C never
leaves a half-written output behind.
"""
from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator

import numpy as np

from ricom.core.errors import SettingsError
from ricom.engine.snapshot import Snapshot
from ricom.io.contrast import percentile_levels

FORMATS = (".h5", ".hdf5", ".npy", ".tif", ".tiff", ".png")


def check_output_path(path: str) -> str:
    """Fail early (before any processing) if ``path`` cannot be written."""
    ext = os.path.splitext(path)[1].lower()
    if ext not in FORMATS:
        raise SettingsError(f"output {path!r}: unknown extension; use one of {', '.join(FORMATS)}")
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise SettingsError(f"output folder {folder!r} does not exist; create it or choose another -o")
    if not os.access(folder, os.W_OK) or (os.path.exists(path) and not os.access(path, os.W_OK)):
        raise SettingsError(f"output {path!r} is not writable; choose another -o")
    if os.path.isdir(path):
        raise SettingsError(f"output {path!r} is a folder; give a file name")
    return ext


@contextlib.contextmanager
def atomic_path(path: str) -> Iterator[str]:
    """Yield a temporary path beside ``path``; rename it to ``path`` on success only."""
    folder, name = os.path.split(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".part" + os.path.splitext(name)[1], dir=folder)
    os.close(fd)
    try:
        yield tmp
        if os.path.isfile(tmp):  # mkstemp makes private files; give the usual permissions
            os.chmod(tmp, 0o666 & ~current_umask())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise


def current_umask() -> int:
    """The process's file-creation mask.

    Read from ``/proc/self/status`` where there is one (Linux), so that the mask is not
    changed, not even for an instant in which another thread could create a file; elsewhere
    it is set and restored at once (`os.umask` is the only way to read it there).

    Examples
    --------
    >>> 0 <= current_umask() <= 0o777
    True
    """
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0)
    os.umask(mask)
    return mask


def settings_attrs(snap: Snapshot) -> dict:
    """Flat, HDF5-friendly description of the parameters behind a snapshot."""
    s = snap.settings
    cal, geo, ker = s.calibration, s.geometry, s.kernel
    attrs = {
        "kernel_size": ker.size,
        "band_pass_cycles_per_pixel": list(ker.band_pass) if ker.band_pass else "none",
        "rotation_deg": geo.rotation_deg,
        "flip": bool(geo.flip),
        "flip_convention": "True: detector x (columns) mirrored before the rotation",
        "rotation_convention": "measured COM turned by rotation_deg from detector +x towards +y",
        "center_yx": list(snap.center_yx) if snap.center_yx is not None else "none",
        "center_mode": "given" if geo.center_yx is not None else "auto",
        "step_A": cal.step_A if cal.step_A is not None else "none",
        "pixel_size_mrad": cal.pixel_size_mrad if cal.pixel_size_mrad is not None else "none",
        "energy_keV": cal.energy_keV if cal.energy_keV is not None else "none",
        "n_patterns": snap.n_patterns,
        "n_empty_patterns": snap.n_empty,
        "n_invalid_patterns": snap.n_invalid,
        "seconds_processing": snap.seconds_processing,
        "scan_shape": list(snap.scan_shape),
        "virtual_detectors_px": json.dumps({k: list(v) for k, v in snap.virtual_radii_px.items()}),
        "software": "ricom",
        "complete": bool(snap.complete),
        "partial_reason": str(snap.reason) if snap.reason else "",
    }
    if s.com_mask_px is not None:
        attrs["com_mask_px"] = list(s.com_mask_px)
    return attrs


def load_writer(path: str) -> None:
    """Import the module that `save` needs for ``path`` now (h5py alone takes ~80 ms), so
    that the save itself is short; a missing one fails here, before any processing."""
    ext = check_output_path(path)
    if ext in (".h5", ".hdf5"):
        import h5py  # noqa: F401
    elif ext in (".tif", ".tiff"):
        import tifffile  # noqa: F401
    elif ext == ".png":
        import matplotlib.figure  # noqa: F401


def save(path: str, snap: Snapshot, names, extra_attrs: dict | None = None) -> list[str]:
    """Write the signals ``names`` of ``snap`` to ``path`` (format from the extension).

    ``.h5``: every signal as a top-level dataset (with a ``unit`` attribute), the
    parameters as file attributes (with ``complete`` and ``partial_reason``: whether the
    run read its whole input, and why not), and ``n_patterns`` / ``seconds_processing``
    both as attributes and as scalar datasets.  ``.npy`` / ``.tif``: the first signal (TIFF as
    float32 with the parameters in its description).  ``.png``: a preview of all.
    Returns the signal names written.
    """
    ext = check_output_path(path)
    names = snap.expand(names)
    images = {n: np.asarray(snap.signal(n), dtype=np.float64) for n in names}
    attrs = {**settings_attrs(snap), **(extra_attrs or {})}
    with atomic_path(path) as tmp:
        if ext in (".h5", ".hdf5"):
            import h5py
            with h5py.File(tmp, "w") as f:
                for n, img in images.items():
                    f.create_dataset(n, data=img).attrs["unit"] = snap.unit(n)
                f.create_dataset("n_patterns", data=snap.n_patterns)
                f.create_dataset("seconds_processing", data=snap.seconds_processing)
                for k, v in attrs.items():
                    f.attrs[k] = v
        elif ext == ".npy":
            with open(tmp, "wb") as fh:
                np.save(fh, images[names[0]])
        elif ext in (".tif", ".tiff"):
            write_tiff(tmp, images[names[0]], {**attrs, "signal": names[0], "unit": snap.unit(names[0])})
        else:
            preview_png(tmp, {n: images[n] for n in names},
                        {n: snap.unit(n) for n in names})
    return names


def write_tiff(path: str, image: np.ndarray, metadata: dict) -> None:
    """float32 TIFF with the metadata as JSON in the image description."""
    import tifffile
    tifffile.imwrite(path, np.asarray(image, np.float32),
                     description=json.dumps(metadata, default=str), metadata=None)


def preview_png(path: str, images: dict[str, np.ndarray], units: dict[str, str] | None = None,
                title: str | None = None) -> None:
    """Side-by-side preview of several images (percentile contrast, colour bars)."""
    from matplotlib.figure import Figure  # not pyplot: no backend or figure manager of the process is touched

    n = len(images)
    cols = min(n, 4)
    rows = (n + cols - 1) // cols
    fig = Figure(figsize=(3.4 * cols, 3.2 * rows))
    axes = fig.subplots(rows, cols, squeeze=False)
    for ax in axes.ravel()[n:]:
        ax.axis("off")
    for ax, (name, img) in zip(axes.ravel(), images.items(), strict=False):
        lo, hi = percentile_levels(img)
        im = ax.imshow(img, cmap="twilight" if name == "efield_direction" else "gray", vmin=lo, vmax=hi)
        label = f"{name} [{units[name]}]" if units and name in units else name
        ax.set_title(label, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.03)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110, format="png")
