"""Starting the GUI: the Qt application, headless mode, timed screenshot and exit.

Owns `run_gui`, which ``ricom gui`` calls: it picks the offscreen Qt platform when
there is no display, builds the `ricom.gui.window.MainWindow`, applies the settings and
source given on the command line, starts the source, and — for testing and scripting —
saves a screenshot of the whole window and quits after a given time.  The process-wide
settings of the GUI process are made here and nowhere else in the GUI: the Qt platform
(`ensure_display`) and, while `run_gui` runs, Python's thread switch interval
(`gil_switch_interval`).
"""
from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator

SCREENSHOT_DEFAULT_S = 5.0
"""Seconds before the screenshot when ``--screenshot`` is given without ``--exit-after``."""
GIL_SWITCH_S = 0.0005
"""Python's thread switch interval while the GUI runs (default 5 ms): the engine thread
gets the GIL back within this time after each compiled (GIL-free) step, instead of
waiting up to 5 ms behind a redraw."""


def ensure_display() -> bool:
    """Use Qt's offscreen platform when no display is available; True if it did."""
    if os.environ.get("QT_QPA_PLATFORM"):
        return os.environ["QT_QPA_PLATFORM"] == "offscreen"
    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        os.environ["QT_QPA_PLATFORM"] = "offscreen"
        return True
    return False


def application():
    """The process's `QApplication` (created on first use)."""
    from PySide6 import QtWidgets

    app = QtWidgets.QApplication.instance()
    if app is None:
        app = QtWidgets.QApplication([sys.argv[0] if sys.argv else "ricom"])
        app.setApplicationName("ricom")
        app.setOrganizationName("ricom")
    return app


@contextlib.contextmanager
def gil_switch_interval(seconds: float = GIL_SWITCH_S) -> Iterator[None]:
    """Python's thread switch interval at most ``seconds`` inside the block, restored after it.

    `run_gui` runs the whole GUI in it; scripts that drive a `MainWindow` themselves
    can do the same.
    """
    previous = sys.getswitchinterval()
    sys.setswitchinterval(min(previous, seconds))
    try:
        yield
    finally:
        sys.setswitchinterval(previous)


def run_gui(request=None, settings=None, scan_shape=None, settings_file: str | None = None,
            reference: str | None = None, screenshot: str | None = None, exit_after: float | None = None,
            remember_layout: bool = True) -> int:
    """Show the window and run the Qt event loop; returns the exit status.

    Parameters
    ----------
    request : ricom.gui.source_panel.SourceRequest, optional
        Source to start at once.
    settings : ricom.core.params.Settings, optional
        Initial reconstruction settings.
    scan_shape : (int, int), optional
        Scan shape of the simulator (and for inputs that do not carry one).
    settings_file : str, optional
        JSON settings file to load (after ``settings``).
    reference : str, optional
        Reference scan whose mean COM becomes the centre.
    screenshot : str, optional
        Save a PNG of the whole window after ``exit_after`` seconds (default
        `SCREENSHOT_DEFAULT_S`), then quit.
    exit_after : float, optional
        Quit after this many seconds.
    remember_layout : bool
        Restore and save the dock layout (off in timed runs).
    """
    ensure_display()
    from PySide6 import QtCore

    app = application()
    timed = screenshot is not None or exit_after is not None
    status = {"code": 0}
    with gil_switch_interval():
        window = _open_window(request, settings, scan_shape, settings_file, reference,
                              remember_layout and not timed)
        if timed:
            seconds = exit_after if exit_after is not None else SCREENSHOT_DEFAULT_S
            QtCore.QTimer.singleShot(int(seconds * 1000), lambda: _finish(app, window, screenshot, status))
        code = app.exec()
    return status["code"] if timed else int(code)


def _open_window(request, settings, scan_shape, settings_file, reference, remember_layout: bool):
    """The main window with the command line's settings and reference applied, shown, its source started."""
    from ricom.gui.window import MainWindow

    window = MainWindow(remember_layout=remember_layout)
    if scan_shape is not None:
        window.column.set_scan_shape(scan_shape)
        window.column.scan_override.setChecked(request is not None and request.kind != "simulator")
    if settings is not None:
        window.column.set_settings(settings)
    if settings_file:
        window._guard(window.load_settings, settings_file)
    if reference:
        window.measure_reference(reference)
    window.show()
    if request is not None:
        window.start(request)
    return window


def _finish(app, window, screenshot: str | None, status: dict) -> None:
    """End of a timed run: save the screenshot, print the messages, close, quit with ``status["code"]``."""
    if screenshot:
        try:
            window.tick()
            window.save_screenshot(screenshot)
        except OSError as exc:
            print(f"ricom gui: error: cannot save the screenshot: {exc}", file=sys.stderr)
            status["code"] = 2
    for text in window.messages:
        print(f"ricom gui: {text}", file=sys.stderr)
    window.close()
    app.exit(status["code"])
