"""Writing results: HDF5, ImageJ TIFF, NumPy, HyperSpy and PNG previews, always atomically.

TIFFs open calibrated in Fiji (pixel size in Å, `write_tiff`); PNG previews carry a scale
bar and colour bars with units (`preview_png`); HyperSpy files are written by
`ricom.io.hyperspy`.

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

from ricom.core.errors import InputError, SettingsError
from ricom.engine.snapshot import Snapshot, settings_attrs
from ricom.io.contrast import percentile_levels
from ricom.io.scalebar import scale_bar

HYPERSPY_FORMATS = (".hspy", ".zspy")
FORMATS = (".h5", ".hdf5", ".npy", ".tif", ".tiff", ".png", *HYPERSPY_FORMATS)
PER_SIGNAL = "{signal}"
"""In an ``.npy`` or ``.tif`` output name: one file per signal, the placeholder replaced by its name."""


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
    elif ext in HYPERSPY_FORMATS:
        from ricom.io.hyperspy import require_writer
        require_writer(ext)


def save(path: str, snap: Snapshot, names, extra_attrs: dict | None = None) -> list[str]:
    """Write the signals ``names`` of ``snap`` to ``path`` (format from the extension).

    ``.h5``: every signal as a top-level dataset (with a ``unit`` attribute), the
    parameters as file attributes (with ``complete`` and ``partial_reason``: whether the
    run read its whole input, and why not), and ``n_patterns`` / ``seconds_processing``
    both as attributes and as scalar datasets.  ``.npy`` / ``.tif``: the first signal (TIFF
    in ImageJ format: float32, pixel size in Å, the parameters as JSON in its ``Info``; see
    `write_tiff`); with ``{signal}`` in the file name, one file per signal instead.
    ``.hspy`` / ``.zspy``: every signal as a calibrated HyperSpy signal
    (`ricom.io.hyperspy`).  ``.png``: a preview of all, with scale and colour bars.
    Returns the signal names written.
    """
    ext = check_output_path(path)
    names = snap.expand(names)
    attrs = {**settings_attrs(snap), **(extra_attrs or {})}
    if ext in HYPERSPY_FORMATS:
        from ricom.io.hyperspy import save_hyperspy
        with atomic_path(path) as tmp:
            save_hyperspy(tmp, snap, names, attrs)
        return names
    if PER_SIGNAL in os.path.basename(path) and ext in (".npy", ".tif", ".tiff"):
        for n in names:
            _save_one(ext, path.replace(PER_SIGNAL, n), snap, n, attrs)
        return names
    if ext in (".npy", ".tif", ".tiff"):
        _save_one(ext, path, snap, names[0], attrs)
        return names
    images = {n: np.asarray(snap.signal(n), dtype=np.float64) for n in names}
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
        else:
            preview_png(tmp, images, {n: snap.unit(n) for n in names},
                        step_A=snap.settings.calibration.step_A)
    return names


def _save_one(ext: str, path: str, snap: Snapshot, name: str, attrs: dict) -> None:
    """One signal as ``.npy`` or ImageJ TIFF, atomically."""
    image = np.asarray(snap.signal(name), dtype=np.float64)
    with atomic_path(path) as tmp:
        if ext == ".npy":
            with open(tmp, "wb") as fh:
                np.save(fh, image)
        else:
            write_tiff(tmp, image, {**attrs, "signal": name, "unit": snap.unit(name)},
                       step_A=snap.settings.calibration.step_A)


def write_tiff(path: str, image: np.ndarray, metadata: dict, step_A: float | None = None) -> None:
    r"""float32 TIFF in ImageJ's format: Fiji opens it calibrated.

    With ``step_A`` (the scan step: give it for scan images only) the X/YResolution tags
    hold pixels per Å and the ImageJ description says ``unit=Å`` (written as the
    Java-properties escape ``\u00c5``, which ImageJ decodes).  ``metadata["unit"]``
    becomes ImageJ's value unit (``vunit``), and ``min``/``max`` the percentile contrast.
    The whole ``metadata`` is kept as JSON in ImageJ's ``Info`` property (Image › Show
    Info in Fiji; `read_tiff_metadata`).  A 3D ``image`` is written as a stack.
    """
    stack = np.asarray(image, np.float32)
    stack = stack if stack.ndim == 3 else stack[None]
    name = str(metadata.get("signal", ""))
    labels = [name] if len(stack) == 1 else [f"{name} {i}" for i in range(len(stack))]
    write_imagej(path, stack, labels, metadata, metadata.get("unit"), step_A)


def write_tiff_stack(path: str, snap: Snapshot, names, extra_attrs: dict | None = None) -> list[str]:
    """Several signals of ``snap`` as one ImageJ stack, one labelled slice each.

    Slice labels are ``"name [unit]"`` (ImageJ shows them above the image); the pixel
    size is the scan step as in `write_tiff`; the parameters are JSON in ``Info``.
    Returns the signal names written.
    """
    names = snap.expand(names)
    check_output_path(path)
    stack = np.stack([np.asarray(snap.signal(n), np.float32) for n in names])
    meta = {**settings_attrs(snap), **(extra_attrs or {}), "signals": names,
            "units": [snap.unit(n) for n in names]}
    units = {snap.unit(n) for n in names}
    with atomic_path(path) as tmp:
        write_imagej(tmp, stack, [f"{n} [{snap.unit(n)}]" for n in names], meta,
                     units.pop() if len(units) == 1 else None, snap.settings.calibration.step_A)
    return names


def write_imagej(path: str, stack: np.ndarray, labels: list[str], metadata: dict, value_unit: str | None,
                 step_A: float | None) -> None:
    """Write ``stack`` (n, rows, cols) float32 as an ImageJ TIFF (see `write_tiff`)."""
    import tifffile

    ij: dict = {"axes": "ZYX" if len(stack) > 1 else "YX", "Info": json.dumps(metadata, default=str)}
    if len(labels) > 1 or labels[0]:
        ij["Labels"] = labels
    if value_unit:
        ij["vunit"] = java_escape(value_unit)
    lo, hi = percentile_levels(stack[0])
    if np.isfinite(lo) and np.isfinite(hi) and hi > lo:
        ij["min"], ij["max"] = float(lo), float(hi)
    resolution = None
    if step_A is not None and step_A > 0:
        ij["unit"] = java_escape("Å")
        resolution = (1.0 / step_A, 1.0 / step_A)
    tifffile.imwrite(path, stack if len(stack) > 1 else stack[0], imagej=True, resolution=resolution, metadata=ij)


def java_escape(text: str) -> str:
    r"""``text`` with every non-ASCII character as a Java-properties ``\uXXXX`` escape.

    ImageJ reads its TIFF description with `java.util.Properties`, which decodes these
    escapes; raw UTF-8 there would come out garbled.

    Examples
    --------
    >>> print(java_escape("V·Å"))
    V\u00b7\u00c5
    """
    return "".join(c if ord(c) < 128 else f"\\u{ord(c):04x}" for c in text)


def read_tiff_metadata(path: str) -> dict:
    """The ricom parameters (``Info`` JSON) of a TIFF written by `write_tiff` or `write_tiff_stack`."""
    import tifffile

    with tifffile.TiffFile(path) as tif:
        info = (tif.imagej_metadata or {}).get("Info")
    if not info:
        raise InputError(f"{path}: no ricom parameters in this TIFF (not written by ricom's ImageJ writer)")
    return json.loads(info)


def preview_png(path: str, images: dict[str, np.ndarray], units: dict[str, str] | None = None,
                title: str | None = None, step_A: float | None = None) -> list[dict]:
    """Side-by-side preview of several images: percentile contrast, a colour bar labelled
    with each image's unit, and (when ``step_A`` is given) a scale bar.

    Returns
    -------
    list of dict
        Per panel: ``name``, ``colour_bar_label`` (the unit written on its colour bar),
        ``scale_bar`` (`ricom.io.scalebar.ScaleBar` or None) and ``bar_px`` — the scale
        bar's extent ``(x0, x1, y0, y1)`` in the PNG's pixels (row 0 at the top), or None.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure  # not pyplot: no backend or figure manager of the process is touched

    n = len(images)
    cols = min(n, 4)
    rows = (n + cols - 1) // cols
    fig = Figure(figsize=(3.4 * cols, 3.2 * rows), dpi=PNG_DPI)
    FigureCanvasAgg(fig)
    axes = fig.subplots(rows, cols, squeeze=False)
    for ax in axes.ravel()[n:]:
        ax.axis("off")
    panels = []
    for ax, (name, img) in zip(axes.ravel(), images.items(), strict=False):
        lo, hi = percentile_levels(img)
        im = ax.imshow(img, cmap="twilight" if name == "efield_direction" else "gray", vmin=lo, vmax=hi)
        ax.set_title(name, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
        bar = fig.colorbar(im, ax=ax, fraction=0.046, pad=0.03)
        bar.set_label(units.get(name, "") if units else "", fontsize=8)
        bar.ax.tick_params(labelsize=7)
        panels.append((name, bar.ax.get_ylabel(), _draw_scale_bar(ax, img.shape, step_A)))
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.canvas.draw()
    height = fig.canvas.get_width_height()[1]
    out = []
    for name, colour_label, (bar, patch) in panels:
        box = None
        if patch is not None:
            ext = patch.get_window_extent()
            box = (float(ext.x0), float(ext.x1), float(height - ext.y1), float(height - ext.y0))
        out.append({"name": name, "colour_bar_label": colour_label, "scale_bar": bar, "bar_px": box})
    fig.savefig(path, dpi=PNG_DPI, format="png")
    return out


PNG_DPI = 110


def _draw_scale_bar(ax, shape, step_A):
    """A white bar with a black edge and its label in the lower left of ``ax`` (image coordinates)."""
    from matplotlib.patches import Rectangle

    bar = scale_bar(step_A, shape[1])
    if bar is None:
        return None, None
    h, w = shape[:2]
    thick = max(h * 0.025, 0.6)
    x0, y0 = w * 0.05 - 0.5, h * 0.93 - 0.5
    patch = Rectangle((x0, y0 - thick), bar.length_px, thick, facecolor="white", edgecolor="black", linewidth=0.6)
    ax.add_patch(patch)
    ax.text(x0 + bar.length_px / 2, y0 - thick - h * 0.02, bar.label, color="white", ha="center", va="bottom",
            fontsize=8, path_effects=_outline())
    return bar, patch


def _outline():
    from matplotlib import patheffects

    return [patheffects.withStroke(linewidth=1.5, foreground="black")]
