"""What this machine offers ricom: Qt's platform libraries and the report of ``ricom doctor``.

Owns `qt_platform_problem` — whether Qt's platform plugin (xcb, wayland, offscreen) can
load, checked *before* a `QApplication` exists (Qt aborts the process, exit 134, when a
plugin's system library is missing, with a hint that often names the wrong package) —
with the Debian/Ubuntu and Fedora packages that provide each missing library, and
`report` (Python, numba and its CPU target, Qt's platform, optional extras and detector
libraries present), which ``ricom doctor`` prints for bug reports.
"""
from __future__ import annotations

import ctypes
import importlib.metadata
import importlib.util
import os
import platform
import re
import shutil
import subprocess
import sys

SYSTEM_PACKAGES = {
    # soname: (Debian/Ubuntu package, Fedora package)
    "libxcb-cursor.so.0": ("libxcb-cursor0", "xcb-util-cursor"),
    "libxcb-icccm.so.4": ("libxcb-icccm4", "xcb-util-wm"),
    "libxcb-keysyms.so.1": ("libxcb-keysyms1", "xcb-util-keysyms"),
    "libxcb-image.so.0": ("libxcb-image0", "xcb-util-image"),
    "libxcb-render-util.so.0": ("libxcb-render-util0", "xcb-util-renderutil"),
    "libxcb-util.so.1": ("libxcb-util1", "xcb-util"),
    "libxkbcommon-x11.so.0": ("libxkbcommon-x11-0", "libxkbcommon-x11"),
    "libxkbcommon.so.0": ("libxkbcommon0", "libxkbcommon"),
    "libX11-xcb.so.1": ("libx11-xcb1", "libX11-xcb"),
    "libX11.so.6": ("libx11-6", "libX11"),
    "libEGL.so.1": ("libegl1", "libglvnd-egl"),
    "libGL.so.1": ("libgl1", "libglvnd-glx"),
    "libOpenGL.so.0": ("libopengl0", "libglvnd-opengl"),
    "libfontconfig.so.1": ("libfontconfig1", "fontconfig"),
    "libfreetype.so.6": ("libfreetype6", "freetype"),
    "libdbus-1.so.3": ("libdbus-1-3", "dbus-libs"),
    "libwayland-client.so.0": ("libwayland-client0", "libwayland-client"),
    "libwayland-cursor.so.0": ("libwayland-cursor0", "libwayland-cursor"),
    "libglib-2.0.so.0": ("libglib2.0-0", "glib2"),
}
"""Libraries Qt's platform plugins need that a minimal desktop may lack; ``libxcb-*.so``
not listed here come with Debian's ``libxcb-<name>`` and Fedora's ``libxcb``."""

PLUGINS = {"xcb": "libqxcb.so", "wayland": "libqwayland.so", "offscreen": "libqoffscreen.so"}
EXTRAS = ("h5py", "hdf5plugin", "tifffile", "zarr", "dask", "distributed", "PySide6", "pyqtgraph", "zmq", "cbor2",
          "dectris.compression", "bitshuffle", "lz4", "rsciio", "hyperspy", "libertem", "libertem_dectris",
          "libertem_asi_tpx3", "tqdm", "matplotlib")


def qt_platform(environ=os.environ) -> str:
    """The platform Qt will use: ``QT_QPA_PLATFORM``, else wayland or xcb from the session
    (offscreen without a display: what `ricom.gui.app` then picks)."""
    chosen = environ.get("QT_QPA_PLATFORM", "").split(":")[0].split(";")[0]
    if chosen:
        return chosen
    if environ.get("WAYLAND_DISPLAY"):
        return "wayland"
    return "xcb" if environ.get("DISPLAY") else "offscreen"


def qt_libraries(name: str) -> list[str]:
    """Qt's own libraries the platform ``name`` loads (GUI, widgets, the plugin)."""
    spec = importlib.util.find_spec("PySide6")
    if spec is None or not spec.submodule_search_locations:
        return []
    qt = os.path.join(next(iter(spec.submodule_search_locations)), "Qt")
    files = [os.path.join(qt, "lib", "libQt6Gui.so.6"), os.path.join(qt, "lib", "libQt6Widgets.so.6")]
    if name == "xcb":
        files.append(os.path.join(qt, "lib", "libQt6XcbQpa.so.6"))
    if name in PLUGINS:
        files.append(os.path.join(qt, "plugins", "platforms", PLUGINS[name]))
    return [f for f in files if os.path.exists(f)]


def missing_libraries(files: list[str]) -> list[str]:
    """Sonames the dynamic loader cannot find for ``files`` (``ldd``; else the first
    error of loading each)."""
    missing: list[str] = []
    ldd = shutil.which("ldd")
    for f in files:
        if ldd is not None:
            try:
                out = subprocess.run([ldd, f], capture_output=True, text=True, timeout=20).stdout
            except (OSError, subprocess.SubprocessError):
                out = ""
            found = parse_ldd(out)
        else:
            found = _first_missing(f)
        missing += [m for m in found if m not in missing]
    return missing


def parse_ldd(text: str) -> list[str]:
    """The ``not found`` sonames of ``ldd`` output.

    Examples
    --------
    >>> parse_ldd("\\tlibc.so.6 => /lib/libc.so.6 (0x1)\\n\\tlibxcb-icccm.so.4 => not found\\n")
    ['libxcb-icccm.so.4']
    """
    return re.findall(r"^\s*(\S+)\s+=>\s+not found", text, flags=re.M)


def _first_missing(path: str) -> list[str]:
    try:
        ctypes.CDLL(path)
    except OSError as exc:
        m = re.match(r"(\S+\.so[.\d]*): cannot open shared object", str(exc))
        return [m.group(1)] if m else []
    return []


def install_hint(sonames: list[str]) -> str:
    """``apt install …`` and ``dnf install …`` for the packages providing ``sonames``.

    Examples
    --------
    >>> for line in install_hint(["libxcb-icccm.so.4", "libxcb-keysyms.so.1"]).split("; "):
    ...     print(line)
    Debian/Ubuntu: sudo apt install libxcb-icccm4 libxcb-keysyms1
    Fedora: sudo dnf install xcb-util-wm xcb-util-keysyms
    """
    deb, rpm = [], []
    for so in sonames:
        d, f = SYSTEM_PACKAGES.get(so) or _xcb_guess(so)
        deb += [d] if d not in deb else []
        rpm += [f] if f not in rpm else []
    return f"Debian/Ubuntu: sudo apt install {' '.join(deb)}; Fedora: sudo dnf install {' '.join(rpm)}"


def _xcb_guess(soname: str) -> tuple[str, str]:
    m = re.match(r"lib(xcb-[\w-]+)\.so\.(\d+)", soname)
    if m:
        return f"lib{m.group(1)}{m.group(2)}", "libxcb"
    base = soname.split(".so")[0]
    return base, base


def qt_platform_problem(name: str | None = None) -> str | None:
    """One line saying why Qt's platform ``name`` (default: the one Qt will use) cannot
    start and which packages to install; None when its libraries load."""
    name = name or qt_platform()
    files = qt_libraries(name)
    if not files:
        return None
    missing = missing_libraries(files)
    if not missing:
        return None
    return (f"the GUI cannot start: Qt's '{name}' platform needs system libraries that are missing "
            f"({', '.join(missing)}); install them — {install_hint(missing)} — or run headless with "
            f"QT_QPA_PLATFORM=offscreen")


def _version(module: str) -> str | None:
    try:
        if importlib.util.find_spec(module) is None:
            return None
    except ImportError:  # the parent package of a dotted name is missing
        return None
    dist = {"zmq": "pyzmq", "rsciio": "rosettasciio", "dectris.compression": "dectris-compression",
            "libertem_dectris": "libertem-dectris", "libertem_asi_tpx3": "libertem-asi-tpx3",
            "PySide6": "PySide6-Essentials"}.get(module, module)
    for name in (dist, module, "PySide6"):
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return "present"


def report() -> dict:
    """The environment as a dict of sections (what ``ricom doctor`` prints)."""
    import numba
    import numpy as np

    from ricom import __version__

    try:
        import llvmlite.binding as llvm
        cpu = llvm.get_host_cpu_name()
        features = llvm.get_host_cpu_features().flatten()
        simd = [f for f in ("avx2", "avx512f", "avx512vpopcntdq", "fma") if f"+{f}" in features.split(",")]
    except Exception:  # an unusual llvmlite build: say what we know
        cpu, simd = "unknown", []
    name = qt_platform()
    return {
        "ricom": {"version": __version__, "python": sys.version.split()[0], "platform": platform.platform(),
                  "cpu cores": os.cpu_count()},
        "compiled code": {"numpy": np.__version__, "numba": numba.__version__, "cpu target": cpu,
                          "simd": " ".join(simd) or "none found", "numba threads": numba.config.NUMBA_NUM_THREADS},
        "gui": {"qt platform": name, "status": qt_platform_problem(name) or "ok"},
        "extras": {m: _version(m) or "not installed" for m in EXTRAS},
    }


def format_report(rep: dict) -> str:
    """`report` as aligned text lines."""
    lines = []
    for section, items in rep.items():
        lines.append(f"{section}:")
        lines += [f"  {key:<20} {value}" for key, value in items.items()]
    return "\n".join(lines)


__all__ = ["format_report", "install_hint", "missing_libraries", "parse_ldd", "qt_platform", "qt_platform_problem",
           "report"]
