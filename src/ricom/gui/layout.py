"""How the main window is laid out: docks, menus, status bar, and the remembered layout.

Owns `WindowLayout`, a mixin of `ricom.gui.window.MainWindow`: the left dock (messages,
source controls, settings column, as wide as its fields), the default arrangement of the
panel docks (settings on the left, a four-column grid with riCOM largest, tcBF and SSB
tabbed with FFT under riCOM, so the window fits a 1920×1080 screen), the File, View and
Help menus (Help › About: `ricom.gui.about`), the status bar widgets (with the
"calibration missing" button that leads to the Calibration fields), and saving/restoring
the dock layout, window geometry and each panel's display settings with `QSettings`.
"""
from __future__ import annotations

import itertools
import json

from PySide6 import QtCore, QtGui, QtWidgets

SETTINGS_ORG, SETTINGS_APP = "ricom", "gui"


class _MessageBar(QtWidgets.QLabel):
    """The red message above the source controls; a click hides it."""

    def mousePressEvent(self, event) -> None:
        self.hide()
        super().mousePressEvent(event)


class WindowLayout:
    """Layout of `MainWindow` (needs its panels, docks, source panel and settings column)."""

    # ------------------------------------------------------------------ layout
    def _build_left_dock(self) -> None:
        self.message_bar = _MessageBar(wordWrap=True, visible=False, toolTip="click to dismiss",
                                       styleSheet="background:#fde2e1; color:#8a1111; padding:4px")
        inner = QtWidgets.QWidget()
        lay = QtWidgets.QVBoxLayout(inner)
        lay.setContentsMargins(0, 0, 0, 0)
        for w in (self.message_bar, self.source_panel, self.column):
            lay.addWidget(w)
        lay.addStretch(1)  # spare height goes below the settings, not into the source controls
        scroll = QtWidgets.QScrollArea(widgetResizable=True)
        scroll.setWidget(inner)
        # as wide as the column's fields need beside the vertical scroll bar: no horizontal scrolling
        scroll.setMinimumWidth(inner.minimumSizeHint().width() + scroll.verticalScrollBar().sizeHint().width()
                               + 2 * scroll.frameWidth())
        self.settings_scroll = scroll
        self.settings_dock = QtWidgets.QDockWidget("Source and settings", self)
        self.settings_dock.setObjectName("dock_settings")
        self.settings_dock.setWidget(scroll)

    def _default_layout(self) -> None:
        """Settings on the left; a 4-column grid of panels (riCOM large) on the right.

        The phase-contrast docks (tcBF, SSB) are tabs beside FFT under riCOM, hidden until
        switched on (View menu): switched on, one comes to the front and its slot gets half of
        the column's height (`_phase_dock_shown`); the window never gets wider for them.
        """
        d = self.docks
        self.addDockWidget(QtCore.Qt.LeftDockWidgetArea, self.settings_dock)
        self.addDockWidget(QtCore.Qt.RightDockWidgetArea, d["ricom"])
        columns = [["ricom", "fft"], ["icom", "com_x", "com_y"], ["virtual", "efield", "divergence"],
                   ["diffraction", "kernel"]]
        previous = d["ricom"]
        for col in columns[1:]:
            self.splitDockWidget(previous, d[col[0]], QtCore.Qt.Horizontal)
            previous = d[col[0]]
        for col in columns:
            for above, below in itertools.pairwise(col):
                self.splitDockWidget(d[above], d[below], QtCore.Qt.Vertical)
        self.resizeDocks([self.settings_dock, d["ricom"], d["icom"], d["virtual"], d["diffraction"]],
                         [self.settings_scroll.minimumWidth(), 420, 280, 280, 320], QtCore.Qt.Horizontal)
        self.resizeDocks([d["ricom"], d["fft"]], [650, 300], QtCore.Qt.Vertical)
        for dock in (self.settings_dock, *d.values()):
            dock.show()
        for key in ("tcbf", "ssb"):
            if key in d:
                self.tabifyDockWidget(d["fft"], d[key])
                d[key].hide()
                d[key].toggleViewAction().triggered.connect(lambda on, k=key: on and self._phase_dock_shown(k))
        d["fft"].raise_()

    def _phase_dock_shown(self, key: str) -> None:
        """The user switched a phase dock on: bring it to the front of its tabs and, while it
        still shares FFT's slot under riCOM, give that slot half of the column's height."""
        dock, d = self.docks[key], self.docks
        dock.raise_()
        if dock.isFloating() or d["fft"] not in self.tabifiedDockWidgets(dock) or d["ricom"].isHidden():
            return
        half = (d["ricom"].height() + dock.height()) // 2
        self.resizeDocks([d["ricom"], dock], [half, half], QtCore.Qt.Vertical)

    def reset_layout(self) -> None:
        self.restoreState(self._default_state)

    def _restore_layout(self) -> None:
        store = QtCore.QSettings(SETTINGS_ORG, SETTINGS_APP)
        geometry, state = store.value("geometry"), store.value("state")
        if geometry is not None:
            self.restoreGeometry(geometry)
        if state is not None:
            self.restoreState(state)
        try:
            display = json.loads(store.value("display", "{}"))
        except (TypeError, ValueError):
            display = {}
        for key, panel in self.panels.items():
            if panel.view is not None and isinstance(display.get(key), dict):
                panel.view.set_display_state(display[key])

    def _build_menus(self) -> None:
        m = self.menuBar().addMenu("&File")
        m.addAction("Open data file…", self._open_file_dialog, QtGui.QKeySequence.Open)
        m.addAction("Start / restart", lambda: self.start(), "Ctrl+R")  # not start(checked)
        m.addAction("Stop", lambda: self.stop_run(), "Ctrl+.")
        m.addSeparator()
        m.addAction("Save all signals (HDF5)…", self._ask_save_all, QtGui.QKeySequence.Save)
        m.addAction("Save settings…", self._ask_save_settings)
        m.addAction("Load settings…", self._ask_load_settings)
        m.addAction("Save window screenshot…", self._ask_screenshot)
        m.addSeparator()
        m.addAction("Quit", self.close, QtGui.QKeySequence.Quit)
        v = self.menuBar().addMenu("&View")
        for dock in (self.settings_dock, self.sessions.dock, *self.docks.values()):
            v.addAction(dock.toggleViewAction())
        v.addSeparator()
        v.addAction("Reset layout", self.reset_layout)
        h = self.menuBar().addMenu("&Help")
        h.addAction("About ricom…", self.show_about)

    def _build_status_bar(self) -> None:
        sb = self.statusBar()
        self.progress = QtWidgets.QProgressBar(minimumWidth=170, maximumWidth=220, maximum=1000, textVisible=True)
        self.state_label = QtWidgets.QLabel("idle")
        self.rate_label = QtWidgets.QLabel("")
        self.dose_label = QtWidgets.QLabel("")
        self.calibration_button = QtWidgets.QToolButton(
            text="⚠ calibration missing", autoRaise=True, styleSheet="color:#8a5a00; font-weight:bold",
            toolTip="the images are not in V·Å: click to enter step, pixel size and energy (or load them)")
        self.calibration_button.clicked.connect(self.focus_calibration)
        for w in (self.calibration_button, self.state_label, self.progress, self.rate_label, self.dose_label):
            sb.addPermanentWidget(w)

    def _show_calibration_missing(self, hint: str) -> None:
        """Show the status bar's calibration button while the calibration is incomplete."""
        self.calibration_button.setVisible(bool(hint))
        if hint:
            box = self.column.calibration_box
            word = "missing" if len(box.missing()) == len(box.fields) else "incomplete"
            self.calibration_button.setText(f"⚠ calibration {word}")

    def focus_calibration(self) -> None:
        """Bring the Calibration fields into view and put the cursor into the first empty one."""
        self.settings_dock.show()
        self.settings_dock.raise_()
        box = self.column.calibration_box
        self.settings_scroll.ensureWidgetVisible(box)
        self.activateWindow()
        box.focus_missing()

    def show_about(self) -> QtWidgets.QMessageBox:
        """Help › About: ricom and the versions it runs with (non-modal; returned for tests)."""
        from ricom.gui.about import about_box

        self.about_box = about_box(self)
        self.about_box.show()
        return self.about_box

    def _save_layout(self) -> None:
        store = QtCore.QSettings(SETTINGS_ORG, SETTINGS_APP)
        store.setValue("geometry", self.saveGeometry())
        store.setValue("state", self.saveState())
        store.setValue("display", json.dumps({k: p.view.display_state() for k, p in self.panels.items()
                                              if p.view is not None}))
