"""Saving, loading and dialogs of the main window (a mixin of `ricom.gui.window.MainWindow`).

Owns the window's file actions: one panel as TIFF / PNG / .npy, all signals as HDF5,
settings to JSON and back, the calibration from a JSON file or a data file's sidecar, a
screenshot of the whole window, the centre from a reference scan (measured in the
background) and the file dialogs that lead to them.  The public methods (`save_panel`,
`save_all`, `save_settings`, `load_settings`, `load_calibration`, `save_screenshot`,
`measure_reference`) raise `ricom.core.errors.RicomError` or `OSError`; the dialog paths
catch those and show them in the window.
"""
from __future__ import annotations

import os

from PySide6 import QtWidgets

from ricom.api import reference_center
from ricom.core.errors import RicomError, SettingsError
from ricom.gui import files
from ricom.gui.worker import BackgroundJob, describe_error
from ricom.io.outputs import atomic_path


class WindowActions:
    """File and dialog actions; mixed into `MainWindow` (needs its panels, column, rec)."""

    # ------------------------------------------------------------------ saving
    def save_panel(self, key: str, path: str, fmt: str | None = None) -> None:
        """Save panel ``key`` as ``fmt`` (``tif``, ``png``, ``npy``; default from the extension).

        The panel is brought up to date first; a hidden panel saves what it last showed.
        """
        fmt = fmt or os.path.splitext(path)[1].lower().lstrip(".").replace("tiff", "tif")
        self.refresh(all_stale=True)  # the panel shows (and saves) the engine's latest state
        panel = self.panels[key]
        qimage = panel.view.rendered_qimage() if fmt == "png" and panel.view is not None else None
        snap = self.rec.snapshot() if self.rec is not None else None
        files.save_panel(path, fmt, panel.export(), qimage, snap)

    def save_all(self, path: str) -> list[str]:
        """Every signal in one HDF5 file."""
        if self.rec is None:
            raise SettingsError("nothing to save yet; start a source first")
        return files.save_all(path, self.rec.snapshot(), {"source": self._source_label()})

    def save_settings(self, path: str) -> None:
        s = self.rec.settings if self.rec is not None else self.column.settings()
        files.save_settings(path, s, self.column.scan_shape())

    def load_settings(self, path: str) -> None:
        """Read a settings file into the column and apply it."""
        settings, shape = files.load_settings(path)
        if shape is not None and (self.worker is None or not self.worker.running):
            self.column.set_scan_shape(shape)
        self.column.set_settings(settings)
        self.apply_settings()

    def load_calibration(self, path: str) -> dict[str, float]:
        """Fill the calibration fields from ``path`` (`ricom.gui.files.load_calibration`) and apply them."""
        values = files.load_calibration(path)
        self.column.calibration_box.fill(values)  # emits changed: applied like an edit
        return values

    def save_screenshot(self, path: str) -> None:
        """The whole window as a PNG."""

        self.refresh(force=True)
        pixmap = self.grab()
        with atomic_path(path) as tmp:
            if not pixmap.save(tmp, "PNG"):
                raise OSError(f"could not write the screenshot {path}")

    def _source_label(self) -> str:
        req = getattr(self, "request", None)
        if req is None:
            return "unknown"
        return {"file": req.path, "merlin": f"merlin://{req.host}:{req.data_port}"}.get(req.kind, "simulator")

    # ------------------------------------------------------------------ dialogs
    def _guard(self, action, *args) -> bool:
        try:
            action(*args)
        except (RicomError, OSError, ValueError) as exc:
            self.show_message(describe_error(exc), error=True)
            return False
        return True

    def _ask_path(self, title: str, filt: str, suffix: str) -> str | None:
        path, _ = QtWidgets.QFileDialog.getSaveFileName(self, title, "", filt)
        if not path:
            return None
        return path if os.path.splitext(path)[1] else path + suffix

    def _ask_save_panel(self, key: str, fmt: str) -> None:
        path = self._ask_path(f"Save {self.panels[key].title}", files.PANEL_FORMATS[fmt], f".{fmt}")
        if path and self._guard(self.save_panel, key, path, fmt):
            self.show_message(f"saved {path}")

    def _ask_save_all(self) -> None:
        path = self._ask_path("Save all signals", "HDF5 (*.h5 *.hdf5)", ".h5")
        if path and self._guard(self.save_all, path):
            self.show_message(f"saved all signals to {path}")

    def _ask_save_settings(self) -> None:
        path = self._ask_path("Save settings", "JSON (*.json)", ".json")
        if path and self._guard(self.save_settings, path):
            self.show_message(f"saved settings to {path}")

    def _ask_load_settings(self) -> None:
        path, _ = QtWidgets.QFileDialog.getOpenFileName(self, "Load settings", "", "JSON (*.json)")
        if path and self._guard(self.load_settings, path):
            self.show_message(f"loaded settings from {path}")

    def _ask_screenshot(self) -> None:
        path = self._ask_path("Save screenshot", "PNG (*.png)", ".png")
        if path and self._guard(self.save_screenshot, path):
            self.show_message(f"saved {path}")

    def _ask_load_calibration(self) -> None:
        path, _ = QtWidgets.QFileDialog.getOpenFileName(
            self, "Load calibration", "", "Calibration (*.json);;Data file with a .ricom.json sidecar (*)")
        if path and self._guard(self.load_calibration, path):
            self.show_message(f"calibration from {path}")

    def _open_file_dialog(self) -> None:
        path, _ = QtWidgets.QFileDialog.getOpenFileName(self, "Open 4D-STEM data")
        if path:
            self.source_panel.kind.setCurrentIndex(1)
            self.source_panel.path.setText(path)
            self.start()

    def _ask_reference(self) -> None:
        path, _ = QtWidgets.QFileDialog.getOpenFileName(self, "Vacuum reference scan")
        if not path:
            if self.column.centre_mode.currentIndex() == 2 and self.column._reference_centre is None:
                self.column.centre_mode.setCurrentIndex(0)
            return
        self.measure_reference(path)

    def measure_reference(self, path: str, **source_options) -> None:
        """Measure the centre on a reference scan in the background; then use it."""

        self.show_message(f"measuring the centre on {path}…")
        self._jobs.append(BackgroundJob(
            lambda: reference_center(path, **source_options),
            on_done=lambda c: (self.column.set_reference_centre(c),
                               self.show_message(f"reference centre ({c[0]:.2f}, {c[1]:.2f})")),
            on_error=lambda msg: self.show_message(f"reference scan: {msg}", error=True)))
