"""The live GUI (``ricom gui``): watch the reconstruction while the microscope scans.

A PySide6 + pyqtgraph desktop application.  The reconstruction runs in a worker thread
(`ricom.gui.worker`); the window (`ricom.gui.window.MainWindow`, laid out by
`ricom.gui.layout`, with file actions in `ricom.gui.actions`) takes engine snapshots on
a timer and redraws the visible panels (`ricom.gui.panels`, `ricom.gui.diffraction`,
both built on `ricom.gui.imageview`).  Settings live in `ricom.gui.settings_column`,
sources in `ricom.gui.source_panel`, the endless live simulator in
`ricom.gui.simulator`, file formats in `ricom.gui.files`, start-up (headless
screenshots included) in `ricom.gui.app`, and the GUI-vs-no-GUI rate measurement in
`ricom.gui.benchmark`.

Importing this package does not import Qt; `ricom.gui.simulator` needs no Qt at all.
"""
from __future__ import annotations

__all__ = ["run_gui"]


def run_gui(*args, **kwargs) -> int:
    """Start the GUI; see `ricom.gui.app.run_gui`."""
    from ricom.gui.app import run_gui as _run

    return _run(*args, **kwargs)
