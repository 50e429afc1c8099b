"""Live reconstructions in Jupyter: images that refresh while the data streams in.

`live_reconstruct` opens a source (``"demo"``, a file, an array or a `Source`), starts
`ricom.engine.pipeline.run` on a background thread and shows a `LiveView` that redraws
``Reconstruction.snapshot()`` every ``interval_s`` seconds until the scan is done::

    from ricom.jupyter import live_reconstruct
    live = live_reconstruct("demo", kernel_size=21)       # images update as rows arrive
    live.reconstruction.update_settings(...)               # any time, also after the end

The view draws with matplotlib's Agg renderer into PNG images and needs no interactive
matplotlib backend.  With ipywidgets installed it is an ``ipywidgets.Image`` plus a
status line (updated in place); without it, a plain IPython display that is replaced on
every refresh; outside IPython nothing is displayed and `LiveView.png` /
`LiveView.figure` give the current picture.  When a run ends the display is also
updated with a static PNG of the final images, so saved notebooks and rendered
documentation show the result.

A partial result (the run was stopped, the input broke off or fell short of its scan)
is never shown as if it were whole: the figure of a snapshot with ``complete`` False
carries a red "partial result" banner with the reason, and so does the widget's status.
"""
from __future__ import annotations

import html
import io
import threading
import time
from collections.abc import Sequence

import numpy as np

from ricom.api import open_with_settings
from ricom.engine.pipeline import RunResult, run
from ricom.engine.reconstruction import Reconstruction
from ricom.engine.snapshot import Snapshot, expand_signals
from ricom.io.contrast import percentile_levels

__all__ = ["LiveRun", "LiveView", "live_reconstruct", "show", "snapshot_figure"]


def _widgets():
    try:
        import ipywidgets
    except ImportError:
        return None
    return ipywidgets


def _ipython_display():
    try:
        from IPython import get_ipython
        from IPython.display import display
    except ImportError:
        return None
    return display if get_ipython() is not None else None


def snapshot_figure(snap: Snapshot, signals: Sequence[str] = ("ricom", "vadf"), title: str | None = None,
                    panel_in: float = 3.0, cmap: str = "gray"):
    """A matplotlib `~matplotlib.figure.Figure` of some signals of a snapshot.

    Contrast is the 0.5–99.5 percentile range of the filled scan positions.  A snapshot
    that is not ``complete`` gets a red banner with its ``reason`` above the images.

    Examples
    --------
    >>> import ricom
    >>> from ricom.jupyter import snapshot_figure
    >>> snap = ricom.reconstruct("demo", kernel_size=11, scan_shape=(16, 16))
    >>> fig = snapshot_figure(snap, ("ricom", "icom"))
    >>> len(fig.axes)
    2
    """
    from matplotlib.figure import Figure

    names = snap.expand(signals)
    fig = Figure(figsize=(panel_in * len(names), panel_in + 0.35), layout="constrained")
    axes = fig.subplots(1, len(names), squeeze=False)[0]
    filled = snap.hits > 0
    for ax, name in zip(axes, names, strict=True):
        img = np.asarray(snap.signal(name), np.float64)
        lo, hi = percentile_levels(img[filled])
        ax.imshow(img, cmap=cmap, vmin=lo, vmax=hi)
        ax.set_title(f"{name} [{snap.unit(name)}]", fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    banner = partial_banner(snap)
    if banner:
        fig.suptitle(f"{banner}\n{title}" if title else banner, fontsize=9, color=BANNER_COLOUR)
    elif title:
        fig.suptitle(title, fontsize=9)
    return fig


BANNER_COLOUR = "#8a1111"


def partial_banner(snap: Snapshot) -> str | None:
    """``"⚠ partial result: <reason>"`` for a snapshot that is not complete, else None."""
    if snap.complete:
        return None
    return f"⚠ partial result ({snap.n_patterns} patterns): {snap.reason or 'the run ended early'}"


def show(snap: Snapshot, signals: Sequence[str] = ("ricom", "vadf"), title: str | None = None):
    """Some signals of a snapshot as an image the notebook displays (an `IPython.display.Image`).

    Without IPython the matplotlib figure is returned instead.
    """
    fig = snapshot_figure(snap, signals, title)
    try:
        from IPython.display import Image
    except ImportError:
        return fig
    return Image(data=_png(fig), format="png")


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80)
    return buf.getvalue()


class LiveView:
    """A notebook view of a running reconstruction.

    Parameters
    ----------
    reconstruction : Reconstruction
        The engine to watch (filled by another thread, e.g. `ricom.engine.pipeline.run`).
    signals : sequence of str
        Names for `Snapshot.signal` (``"ricom"``, ``"icom"``, ``"vadf"``, ``"com"`` …).
    interval_s : float
        Seconds between refreshes while following a run.
    widgets : bool, optional
        Use ipywidgets (default: when installed).

    Examples
    --------
    >>> import numpy as np
    >>> from ricom import Reconstruction, make_settings
    >>> rec = Reconstruction((8, 8), (16, 16), make_settings(kernel_size=5))
    >>> view = LiveView(rec, signals=("ricom", "vadf"), widgets=False)
    >>> rec.process_frames(np.random.default_rng(0).poisson(4.0, (64, 16, 16)), start=0)
    >>> view.refresh().n_patterns, view.png()[:4] == b"\\x89PNG"
    (64, True)
    """

    def __init__(self, reconstruction: Reconstruction, signals: Sequence[str] = ("ricom", "vadf"),
                 interval_s: float = 0.2, *, widgets: bool | None = None) -> None:
        self.reconstruction = reconstruction
        # unknown names fail here, not in a thread
        expand_signals(signals, [vd.name for vd in reconstruction.settings.virtual_detectors])
        self.signals = tuple(signals)
        self.interval_s = float(interval_s)
        ipw = _widgets() if widgets is None or widgets else None
        if widgets and ipw is None:
            raise ImportError("LiveView(widgets=True) needs ipywidgets: pip install ipywidgets")
        self._ipw = ipw
        self._image = self._status = self._box = self._handle = None
        self._last: bytes | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.n_refreshes = 0
        self.result: RunResult | None = None
        """How the watched run ended (set by `LiveRun`); a partial one shows a banner."""

    def snapshot(self) -> Snapshot:
        """The reconstruction's snapshot, marked partial if the watched run ended early."""
        snap = self.reconstruction.snapshot()
        if self.result is not None and not self.result.complete:
            snap.complete, snap.reason = False, self.result.reason
        return snap

    # -------------------------------------------------------------- drawing
    def figure(self, snap: Snapshot | None = None):
        """A matplotlib figure of the current (or the given) snapshot."""
        snap = snap if snap is not None else self.snapshot()
        return snapshot_figure(snap, self.signals, title=self.status(snap))

    def png(self) -> bytes:
        """PNG of the last refresh (drawn now if there was none)."""
        if self._last is None:
            self._last = _png(self.figure())
        return self._last

    @staticmethod
    def status(snap: Snapshot) -> str:
        """One line: patterns, filled fraction of the scan, kernel."""
        k = snap.settings.kernel
        bp = f", band-pass {k.band_pass[0]:g}–{k.band_pass[1]:g}" if k.band_pass else ""
        return (f"{snap.n_patterns} patterns, {100 * snap.progress:.0f} % of the "
                f"{snap.scan_shape[0]}×{snap.scan_shape[1]} scan, kernel {k.size}{bp}")

    def _bundle(self) -> dict:
        bundle = {"image/png": self.png(), "text/plain": f"<LiveView: {', '.join(self.signals)}>"}
        if self._box is not None:
            bundle.update(self._box._repr_mimebundle_() or {})
        return bundle

    def _repr_png_(self) -> bytes:
        return self.png()

    # -------------------------------------------------------------- display
    def show(self) -> LiveView:
        """Display the view in the notebook (no-op outside IPython); returns self."""
        display = _ipython_display()
        self._last = _png(self.figure())
        if display is None:
            return self
        if self._ipw is not None and self._box is None:
            self._image = self._ipw.Image(value=self._last, format="png")
            self._status = self._ipw.HTML(value="")
            self._box = self._ipw.VBox([self._status, self._image])
        self._handle = display(self._bundle(), raw=True, display_id=True)
        return self

    def refresh(self) -> Snapshot:
        """Draw the current snapshot into the view; returns the snapshot."""
        snap = self.snapshot()
        self._last = _png(self.figure(snap))
        self.n_refreshes += 1
        if self._image is not None:
            self._image.value = self._last
            banner = partial_banner(snap)
            top = (f'<div style="background:#fde2e1; color:{BANNER_COLOUR}; padding:4px">{html.escape(banner)}</div>'
                   if banner else "")
            self._status.value = f"{top}<code>{self.status(snap)}</code>"
        elif self._handle is not None:
            self._handle.update(self._bundle(), raw=True)
        return snap

    def finish(self) -> Snapshot:
        """Last refresh; also replaces the display's static PNG (what saved notebooks show)."""
        snap = self.refresh()
        if self._handle is not None and self._image is not None:
            self._handle.update(self._bundle(), raw=True)
        return snap

    # -------------------------------------------------------------- following a run
    def follow(self, done: threading.Event | threading.Thread, timeout: float | None = None) -> Snapshot:
        """Refresh every ``interval_s`` until ``done`` is set (or the thread ended), then `finish`."""
        t_end = None if timeout is None else time.monotonic() + timeout
        finished = done.is_set if isinstance(done, threading.Event) else (lambda: not done.is_alive())
        while not finished() and not self._stop.is_set():
            if t_end is not None and time.monotonic() > t_end:
                break
            t0 = time.monotonic()
            self.refresh()
            self._stop.wait(max(0.0, self.interval_s - (time.monotonic() - t0)))
        return self.finish()

    def start(self, done: threading.Event | threading.Thread) -> LiveView:
        """`follow` on a background thread (the notebook cell returns at once)."""
        self._stop.clear()
        self._thread = threading.Thread(target=self.follow, args=(done,), name="ricom-liveview", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop refreshing (the reconstruction goes on)."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)


class LiveRun:
    """A reconstruction running on a background thread, with its `LiveView`.

    Attributes
    ----------
    reconstruction : Reconstruction
    view : LiveView
    source : Source
    result : RunResult or None
        Set when the run has ended; if it ended early (``result.complete`` False) the
        view shows a "partial result" banner and `snapshot` is marked partial.
    error : BaseException or None
        What ended the run, if it failed.
    """

    def __init__(self, source, reconstruction: Reconstruction, view: LiveView, chunk_size: int = 256,
                 full_scan: bool = True) -> None:
        self.source, self.reconstruction, self.view = source, reconstruction, view
        self.full_scan = full_scan
        self.result: RunResult | None = None
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(chunk_size,), name="ricom-live-run", daemon=True)

    def _run(self, chunk_size: int) -> None:
        try:
            self.result = run(self.source, self.reconstruction, chunk_size=chunk_size, stop=self._stop,
                              full_scan=self.full_scan)
            self.view.result = self.result
        except BaseException as exc:  # shown by wait(), never lost in the thread
            self.error = exc

    @property
    def running(self) -> bool:
        return self.thread.is_alive()

    def wait(self, timeout: float | None = None) -> Snapshot:
        """Wait for the end of the run (re-raising its error); returns the final snapshot."""
        self.thread.join(timeout)
        if self.error is not None:
            raise self.error
        return self.view.finish() if not self.running else self.view.snapshot()

    def stop(self) -> Snapshot:
        """End the run after the current chunk and keep what was reconstructed."""
        self._stop.set()
        self.thread.join()
        self.view.stop()
        return self.view.finish()

    def snapshot(self) -> Snapshot:
        """The current images; after a run that ended early, ``complete`` is False."""
        return self.view.snapshot()

    def _repr_png_(self) -> bytes:
        return self.view.png()


def live_reconstruct(data, *, signals: Sequence[str] = ("ricom", "vadf"), interval_s: float = 0.2,
                     wait: bool = True, chunk_size: int = 256, settings=None, source_options: dict | None = None,
                     widgets: bool | None = None, **setting_args) -> LiveRun:
    """Reconstruct on a background thread while a `LiveView` shows the images.

    Parameters
    ----------
    data : str, ndarray or Source
        ``"demo"``, a file name, a 4D array or a `Source` (as `ricom.reconstruct`).
    signals, interval_s, widgets
        Of the `LiveView`.
    wait : bool
        True: the cell refreshes the view until the run ends (works everywhere,
        including when the notebook is executed unattended).  False: return at once; a
        background thread refreshes the view (ipywidgets recommended).
    chunk_size : int
        Patterns per chunk (smaller chunks give smoother updates).
    settings : Settings, optional
        Full settings; otherwise ``**setting_args`` of `ricom.make_settings`
        (``kernel_size``, ``band_pass``, ``rotation_deg``, ``center_yx`` …), with the
        source's own calibration as defaults.
    source_options : dict, optional
        Options of the input, e.g. ``{"scan_shape": (64, 64), "dose_e_per_probe": 1e4}``
        for ``"demo"``.

    Returns
    -------
    LiveRun
        ``.reconstruction`` (change its settings at any time), ``.view``, ``.result``.
        A run that ends early (`LiveRun.stop`, a broken or truncated input) keeps its
        images; the view then shows a "partial result" banner with the reason and
        ``snapshot().complete`` is False.

    Examples
    --------
    >>> from ricom.jupyter import live_reconstruct
    >>> live = live_reconstruct("demo", kernel_size=11, source_options={"scan_shape": (16, 16)})
    >>> live.result.complete, live.snapshot().n_patterns
    (True, 256)
    """

    source, settings = open_with_settings(data, settings, source_options, **setting_args)
    rec = Reconstruction(source.scan_shape, source.detector_shape, settings)
    view = LiveView(rec, signals, interval_s, widgets=widgets)
    live = LiveRun(source, rec, view, chunk_size, full_scan=not (source_options or {}).get("pad", False))
    view.show()
    live.thread.start()
    if wait:
        view.follow(live.thread)
        if live.error is not None:
            raise live.error
    else:
        view.start(live.thread)
    return live
