"""The main window: the run life cycle, the refresh timer and its CPU budget, messages.

Owns `MainWindow`.  It starts a `ricom.gui.worker.RunWorker` for the chosen source
(for the Merlin, DECTRIS or Timepix3 stream chosen in the panel, a `ricom.gui.sessions.SessionWorker`:
a live session, its acquisitions listed by `ricom.gui.sessions.SessionDock`), and a `QTimer`
(up to `REFRESH_HZ`) takes `Reconstruction.snapshot()` and redraws the *visible* panels
only when something changed, within a CPU budget that shrinks while the engine is the
bottleneck (which panels and how often: `ricom.gui.refresh`).  Settings edits call
`Reconstruction.update_settings` from the GUI thread and redraw at once.
Errors from sources, files and settings never escape: they are shown in the message bar
and status bar, and the images of a broken run stay.  The layout is built by
`ricom.gui.layout.WindowLayout` and the file actions come from
`ricom.gui.actions.WindowActions` (`save_panel`, `save_all`, `save_settings`,
`load_settings`, `save_screenshot`: also the scripting and test interface).
"""
from __future__ import annotations

import collections
import time

from PySide6 import QtCore, QtGui, QtWidgets

from ricom.calibration.calibrate import apply_auto_rotation
from ricom.core.errors import RicomError, SettingsError, render
from ricom.engine.reconstruction import Reconstruction
from ricom.gui.actions import WindowActions
from ricom.gui.diffraction import DiffractionPanel
from ricom.gui.layout import WindowLayout
from ricom.gui.panels import Panel, standard_panels
from ricom.gui.phase_panels import methods_from, phase_panels
from ricom.gui.refresh import REFRESH_HZ, LiveState, RefreshBudget, panels_to_redraw
from ricom.gui.sessions import SessionDock, SessionWorker
from ricom.gui.settings_column import SettingsColumn, settings_with_hints
from ricom.gui.simulator import LiveSimulatorSource
from ricom.gui.source_panel import SourcePanel, SourceRequest, open_request
from ricom.gui.wording import GUI
from ricom.gui.worker import BackgroundJob, RunWorker, describe_error
from ricom.phase.methods import attach_methods

STATUS_HZ = 4
CHUNK_SIZE = 512
"""Frames per engine chunk (as `ricom.engine.pipeline.run`): fewer, larger steps leave the GUI thread
more room; the live simulator still delivers smaller bands at low rates."""
PHASE_REFRESH_S = 0.5
"""tcBF and SSB images are remade between chunks (in the worker thread) at most this often."""


class MainWindow(WindowLayout, WindowActions, QtWidgets.QMainWindow):
    """The riCOM live viewer.

    Parameters
    ----------
    remember_layout : bool
        Restore and save the dock layout, window geometry and panel display settings
        with `QSettings`.

    Attributes
    ----------
    panels, docks : dict of str
        The image panels (`ricom.gui.panels.Panel`) and their docks, by key (``ricom``,
        ``icom``, ``virtual``, ``com_x``, ``com_y``, ``efield``, ``divergence``, ``fft``,
        ``kernel``, ``diffraction``, and the phase-contrast ``tcbf`` and ``ssb``, hidden until
        switched on in the View menu: `ricom.gui.phase_panels`).
    column : SettingsColumn
    source_panel : SourcePanel
    worker : RunWorker or None
        The current (or last) run.
    rec : Reconstruction or None
        The engine whose images are shown (kept after a run ends or breaks off).
    messages : list of str
        Everything shown to the user, oldest first.
    """

    def __init__(self, remember_layout: bool = True) -> None:
        super().__init__()
        self.setWindowTitle("ricom — live riCOM")
        self.remember_layout = remember_layout
        self.worker: RunWorker | None = None
        self.rec: Reconstruction | None = None
        self.messages: list[str] = []
        self._jobs: list[BackgroundJob] = []
        self._epoch = 0
        self._ready = self._reported = False
        self._t_status = 0.0
        self._snapshot_error: str | None = None
        self._budget = RefreshBudget()
        self._rate_samples: collections.deque = collections.deque(maxlen=64)
        self.setDockNestingEnabled(True)
        opt = QtWidgets.QMainWindow.DockOption
        self.setDockOptions(opt.AnimatedDocks | opt.AllowNestedDocks | opt.AllowTabbedDocks)
        self.source_panel = SourcePanel()
        self.column = SettingsColumn()
        self._build_left_dock()
        self.panels: dict[str, Panel] = {p.key: p for p in [*standard_panels(), DiffractionPanel(), *phase_panels()]}
        self.docks: dict[str, QtWidgets.QDockWidget] = {}
        for key, panel in self.panels.items():
            dock = QtWidgets.QDockWidget(panel.title, self)
            dock.setObjectName(f"dock_{key}")
            dock.setWidget(panel)
            self.docks[key] = dock
            if panel.view is not None:
                panel.view.save_requested.connect(lambda fmt, k=key: self._ask_save_panel(k, fmt))
        self._default_layout()
        self.sessions = SessionDock(self)  # a live session's acquisitions, shown when one starts
        self.splitDockWidget(self.settings_dock, self.sessions.dock, QtCore.Qt.Vertical)
        self.sessions.dock.hide()
        self._build_menus()
        self._build_status_bar()
        self._connect()
        self._default_state = self.saveState()
        if remember_layout:
            self._restore_layout()
        self.timer = QtCore.QTimer(self, interval=int(1000 / REFRESH_HZ))
        self.timer.timeout.connect(self.tick)
        self.timer.start()
        self.resize(1600, 1000)

    def _connect(self) -> None:
        sp = self.source_panel
        sp.start_requested.connect(self.start)
        sp.stop_requested.connect(self.stop_run)
        sp.pause_toggled.connect(self.pause)
        sp.simulator_changed.connect(self._simulator_changed)
        sp.rate_changed.connect(self._rate_changed)
        sp.timepix.acceptance_changed.connect(self.sessions.set_acceptance)
        self.column.changed.connect(self.apply_settings)
        self.column.reference_requested.connect(self._ask_reference)
        self.column.guess_requested.connect(self.guess_rotation)
        self.column.calibration_box.load_requested.connect(self._ask_load_calibration)
        self.column.calibration_box.missing_changed.connect(self._show_calibration_missing)
        self._show_calibration_missing(self.column.calibration_box.hint_text())
        diff = self.panels["diffraction"]
        diff.centre_moved.connect(self.column.set_manual_centre)
        diff.radii_moved.connect(self.column.set_manual_radii)

    # ------------------------------------------------------------------ messages
    def show_message(self, text: str, error: bool = False) -> None:
        """Tell the user (message bar for errors, status bar always); never raises."""
        self.messages.append(text)
        self.statusBar().showMessage(text, 15000)
        if error:
            self.message_bar.setText(f"⚠ {text}")
            self.message_bar.show()

    def clear_message(self) -> None:
        self.message_bar.hide()

    # ------------------------------------------------------------------ running
    def start(self, request: SourceRequest | None = None) -> None:
        """Open the source chosen in the panel (or ``request``) and reconstruct it."""
        scan = self.column.scan_shape()
        if request is None:
            request = self.source_panel.request(scan if self.column.scan_override.isChecked() else None)
        else:
            self.source_panel.set_request(request)
        self._launch(lambda stop: open_request(request, scan, stop), request)

    def start_source(self, source) -> None:
        """Reconstruct an already opened `Source` (scripting and tests)."""
        repeats = "replace" if isinstance(source, LiveSimulatorSource) else "sum"
        self._launch(lambda stop: source, SourceRequest(repeats=repeats))

    def _launch(self, open_source, request: SourceRequest) -> None:
        self.stop_run(wait=3.0)
        self.clear_message()
        try:
            settings = self.column.settings()
            methods = methods_from(self.panels, lambda k: not self.docks[k].isHidden())
        except RicomError as exc:
            self.show_message(describe_error(exc), error=True)
            return

        def make_reconstruction(source):
            if source.scan_shape is None:
                raise SettingsError("the input does not carry its scan shape: set rows × cols in the settings "
                                    "column and tick 'override'")
            s = settings_with_hints(settings, source.hints(), source.scan_shape)
            rec = Reconstruction(source.scan_shape, source.detector_shape, s, repeats=request.repeats)
            attach_methods(rec, methods, source, PHASE_REFRESH_S)  # tcBF and SSB on the same chunks
            return rec

        self.request = request
        if request.live_session:  # a detector watched acquisition after acquisition (`ricom.gui.sessions`)
            self.sessions.clear()
            self.sessions.dock.show()
            self.worker = SessionWorker(request, settings, CHUNK_SIZE, self.column.scan_shape(),
                                        methods={"methods": methods, "refresh_s": PHASE_REFRESH_S}).start()
        else:
            self.worker = RunWorker(open_source, make_reconstruction, CHUNK_SIZE).start()
        self._ready = self._reported = False
        self._rate_samples.clear()
        self.state_label.setText("opening…")
        self.source_panel.set_running(True)
        self.source_panel.pause_button.setEnabled(not request.live_session)  # a detector does not wait
        self.column.set_running(True)

    def show_reconstruction(self, rec: Reconstruction) -> None:
        """Show ``rec`` in the panels (a live session's newest or selected acquisition)."""
        self.rec = rec
        self.column.set_settings(rec.settings)
        self.column.show_scan_shape_in_use(rec.scan_shape)
        self._epoch += 1
        self.refresh(all_stale=True)

    def stop_run(self, wait: float | None = None) -> None:
        if self.worker is not None and self.worker.running:
            self.worker.stop(wait)

    def pause(self, on: bool) -> None:
        if self.worker is not None:
            (self.worker.pause if on else self.worker.resume)()
            self.state_label.setText("paused" if on else "running")

    def _simulator_changed(self, changes: dict) -> None:
        src = self.worker.source if self.worker is not None else None
        if isinstance(src, LiveSimulatorSource):
            try:
                src.set_params(**changes)
            except RicomError as exc:
                self.show_message(describe_error(exc), error=True)

    def _rate_changed(self, rate: float) -> None:
        src = self.worker.source if self.worker is not None else None
        if isinstance(src, LiveSimulatorSource):
            src.set_rate(rate or None)

    def apply_settings(self) -> None:
        """Hand the settings column's values to the engine and redraw (invalid values: a message)."""
        try:
            s = self.column.settings()
            if self.rec is not None:
                old = self.rec.settings
                ended = self.worker is None or not self.worker.running
                if ended and (s.virtual_detectors, s.com_mask_px) != (old.virtual_detectors, old.com_mask_px):
                    # detectors act on patterns as they arrive: with no more data they wait for the next run
                    s = s.with_(virtual_detectors=old.virtual_detectors, com_mask_px=old.com_mask_px)
                    self.show_message("new virtual-detector radii apply to patterns as they arrive: "
                                      "they take effect in the next run")
                self.rec.update_settings(s)
        except RicomError as exc:
            self.show_message(describe_error(exc), error=True)
            if self.rec is not None:
                self.column.set_settings(self.rec.settings)
            return
        self._epoch += 1
        self.refresh(all_stale=True)

    def guess_rotation(self) -> dict | None:
        """Find rotation and flip from the data so far and apply them live (the Guess button)."""
        if self.rec is None:
            self.show_message("start a source first: the rotation is found from its COM field", error=True)
            return None
        try:
            info = apply_auto_rotation(self.rec, require=False)
        except RicomError as exc:
            self.show_message(describe_error(exc), error=True)
            return None
        if not info.get("determined", True):
            self.show_message(f"cannot determine the rotation: {render(info.get('reason', 'no structure'), GUI)}",
                              error=True)
            return info
        self.column.set_settings(self.rec.settings)
        self.show_message(f"rotation {info['rotation_deg']:.2f}°, flip {'on' if info['flip'] else 'off'} "
                          f"(confidence {info['confidence']:.2f})")
        self._epoch += 1
        self.refresh(all_stale=True)
        return info

    # ------------------------------------------------------------------ the timer
    def tick(self) -> None:
        """One timer step: follow the worker, redraw what changed, update the status."""
        self._regulate()
        self.sessions.poll()
        w = self.worker
        if w is not None and not self._ready and w.rec is not None:
            self._ready = True
            self.rec = w.rec
            self.column.set_settings(self.rec.settings)
            self.column.show_scan_shape_in_use(self.rec.scan_shape)
            self._epoch += 1
            self.state_label.setText("running")
        if w is not None and w.finished.is_set() and not self._reported:
            self._reported = True
            self.source_panel.set_running(False)
            self.column.set_running(False)
            if w.error:
                kept = f"; the partial images ({self.rec.n_patterns} patterns) stay" if w.rec is not None else ""
                self.show_message(f"{w.error}{kept}", error=True)
                self.state_label.setText("broken off" if w.rec is not None else "failed")
            elif getattr(w, "result", None) is not None and not w.result.complete:  # stopped, or fell short
                # the user's stop, even when the source ended first
                stopped = w.result.interrupted or w.stop_event.is_set()
                why = "stopped before the end of the input" if stopped else render(w.result.reason, GUI)
                self.show_message(f"partial result ({self.rec.n_patterns} patterns): {why}", error=True)
                self.state_label.setText("stopped" if stopped else "incomplete")
            else:
                self.state_label.setText("stopped" if w.stop_event.is_set() else "finished")
        for job in list(self._jobs):
            if job.poll():
                self._jobs.remove(job)
        self.refresh()

    def _regulate(self) -> None:
        """Adapt the timer so the GUI thread stays within its CPU budget (`RefreshBudget`)."""
        tap = self.worker.tap if self.worker is not None else None
        running = self.worker is not None and self.worker.running
        interval = self._budget.next_interval(self.timer.interval(), tap, running)
        if interval != self.timer.interval():
            self.timer.setInterval(interval)

    def live_state(self) -> LiveState:
        rec = self.rec
        tap = self.worker.tap if self.worker is not None and self.rec is not None else None
        if rec is not None:
            settings, key = rec.settings, (rec.n_patterns, id(rec.settings), self._epoch)
        else:
            try:
                settings = self.column.settings()
            except RicomError:
                settings = None
            key = None
        return LiveState(rec, tap, settings, key)

    def refresh(self, force: bool = False, all_stale: bool = False) -> None:
        """Redraw visible panels whose input changed.

        Which panels, see `ricom.gui.refresh.panels_to_redraw`: ``all_stale`` redraws every
        stale panel now (after a settings change), ``force`` every visible panel.
        """
        live = self.live_state()
        if live.settings is None:
            return
        for panel, key in panels_to_redraw(self.panels.values(), live, force, all_stale):
            if panel.needs_snapshot and live.snapshot is None:
                continue
            try:
                panel.refresh(live)
            except Exception as exc:  # a display problem must not stop the viewer
                self.show_message(f"{panel.title}: {describe_error(exc)}", error=True)
            panel.shown_key = key
            panel.drawn_at = time.monotonic()
        now = time.monotonic()
        if now - self._t_status >= 1 / STATUS_HZ:
            self._t_status = now
            self._update_status(live)
        if live.error is not None and live.error != self._snapshot_error:
            self.show_message(f"the engine gave no snapshot ({live.error}); the images stay as they were", True)
        self._snapshot_error = live.error if live.rec is not None else None

    def _update_status(self, live: LiveState) -> None:
        tap = live.tap
        if tap is None or live.rec is None:
            return
        now = time.monotonic()
        self._rate_samples.append((now, self.worker.processed))
        while len(self._rate_samples) > 2 and now - self._rate_samples[0][0] > 2.0:
            self._rate_samples.popleft()
        (t0, f0), (t1, f1) = self._rate_samples[0], self._rate_samples[-1]
        rate = (f1 - f0) / (t1 - t0) if t1 > t0 else 0.0
        unit = "events/s" if tap.kind == "events" else "patterns/s"
        self.rate_label.setText(f"{rate:,.0f} {unit} · display {1000 / self.timer.interval():.0f} Hz")
        rec = live.rec
        n_pos = rec.scan_shape[0] * rec.scan_shape[1]
        if tap.n_frames:
            done = min(1.0, self.worker.processed / tap.n_frames)
            self.progress.setValue(int(1000 * done))
            self.progress.setFormat(f"{100 * done:.0f} %")
        else:
            self.progress.setValue(int(1000 * (tap.last_position + 1) / n_pos))
            self.progress.setFormat(f"pass {tap.last_pass + 1}: %p%")
        snap = live.snapshot
        if snap is None:
            return
        seen = snap.hits > 0
        dose = float(snap.counts[seen].mean()) if seen.any() else 0.0  # per processed position
        per = "events/position" if tap.kind == "events" else "counts/position"
        coverage = f" · coverage {100 * seen.mean():.0f} %"  # positions with a pattern (any scan order)
        self.dose_label.setText((f"dose {dose:,.0f} {per}" if dose >= 100 else f"dose {dose:.3g} {per}") + coverage)
        self.column.show_centre_in_use(snap.center_yx)
        self.column.show_radii_in_use(snap.virtual_radii_px)
        if self.worker is not None and self.worker.paused:
            self.state_label.setText("paused")

    # ------------------------------------------------------------------ closing
    def closeEvent(self, event: QtGui.QCloseEvent) -> None:
        self.timer.stop()
        if self.worker is not None:
            self.worker.stop(wait=3.0)
        if self.remember_layout:
            self._save_layout()
        super().closeEvent(event)
