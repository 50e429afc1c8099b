"""The built-in simulator as an endless live stream whose optics can change while it runs.

Owns `LiveSimulatorSource`: it scans the simulated SrTiO3 specimen (`ricom.simulators.specimen`)
over and over, band of rows by band of rows, throttled to a pattern rate, and tags every
frame with its scan pass so that a `Reconstruction` in ``repeats="replace"`` mode always
shows the newest pass.  Defocus, astigmatism, dose (any `SimulationParams` field except
the scan and detector shapes) and the rate can be changed from another thread at any
time: the current parameters are read at each band of rows.

No physics here: the patterns come from `ricom.simulators.specimen.simulate_chunks`.
"""
from __future__ import annotations

import dataclasses
import inspect
import threading
import time
from collections.abc import Iterator

import numpy as np

from ricom.core.chunks import FrameChunk
from ricom.core.errors import SettingsError
from ricom.simulators.specimen import SimulationParams, detector_calibration, simulate_chunks, simulation_hints
from ricom.sources.base import Source

DEFAULT_PARAMS = SimulationParams(scan_shape=(64, 64), detector_shape=(48, 48), dose_e_per_probe=2e4)
"""What the GUI simulates unless told otherwise: a 64×64 scan, 48×48 patterns, 2·10⁴ e⁻/probe."""

MAX_BAND_S = 0.1
"""Longest time one band of rows takes to deliver at the set rate (seconds)."""

_FIXED = ("scan_shape", "detector_shape")
_CAN_START_MID_SCAN = "start_row" in inspect.signature(simulate_chunks).parameters


class LiveSimulatorSource(Source):
    """Repeated scans of the simulated specimen, delivered like a live detector stream.

    Parameters
    ----------
    params : SimulationParams, optional
        Specimen, optics and dose (`DEFAULT_PARAMS` if omitted).  ``seed`` is the seed
        of the first pass; pass k uses ``seed + k`` so each pass has fresh noise.
    rate : float or None
        Patterns per second to deliver at most; None or 0 = as fast as simulated.
    passes : int or None
        Number of scan passes; None loops until `close` or `interrupt`.

    Attributes
    ----------
    pixel_size_mrad : float
        Detector pixel size (fixed by energy, convergence and detector shape at start).
    center_yx : (float, float)
        Optical-axis index (row, column) on the detector.
    pass_index : int
        Pass being delivered now.

    Notes
    -----
    When the parameters change in the middle of a pass, the new ones apply from the next
    band of rows if `ricom.simulators.specimen.simulate_chunks` can start at a row (``start_row``);
    otherwise a new pass starts from the first row with the new parameters.
    """

    kind = "frames"

    def __init__(self, params: SimulationParams | None = None, rate: float | None = 2000.0,
                 passes: int | None = None) -> None:
        self._params = params if params is not None else DEFAULT_PARAMS
        self.scan_shape = self._params.scan_shape
        self.detector_shape = self._params.detector_shape
        self.passes = passes
        self.n_frames = None if passes is None else passes * self.scan_shape[0] * self.scan_shape[1]
        self.pixel_size_mrad, self.center_yx = detector_calibration(self._params)
        self._lock = threading.Lock()
        self._rate = _check_rate(rate)
        self._wake = threading.Event()
        self._closed = False
        self._schedule = (time.monotonic(), 0)
        self.pass_index = 0

    # ------------------------------------------------------------------ live controls
    @property
    def params(self) -> SimulationParams:
        """The parameters in use now."""
        with self._lock:
            return self._params

    def set_params(self, **changes) -> SimulationParams:
        """Change simulation parameters (e.g. ``defocus_A=50``); applied from the next band.

        Raises
        ------
        SettingsError
            For an invalid value or an attempt to change the scan or detector shape.
        """
        for key in _FIXED:
            if key in changes and tuple(changes[key]) != getattr(self._params, key):
                raise SettingsError(f"{key} cannot change while the simulator runs; start a new one")
        with self._lock:
            try:
                self._params = dataclasses.replace(self._params, **changes)
            except TypeError as exc:
                raise SettingsError(f"unknown simulation parameter ({exc})") from None
            return self._params

    @property
    def rate(self) -> float | None:
        return self._rate

    def set_rate(self, rate: float | None) -> None:
        """Patterns per second (None or 0: unthrottled); takes effect at once."""
        with self._lock:
            self._rate = _check_rate(rate)
            self._schedule = (time.monotonic(), 0)
        self._wake.set()

    def interrupt(self) -> None:
        """End `chunks` soon (from any thread), even while it waits for the rate."""
        self._closed = True
        self._wake.set()

    def close(self) -> None:
        self.interrupt()

    # ------------------------------------------------------------------ the stream
    def chunks(self, chunk_size: int = 256) -> Iterator[FrameChunk]:
        """Yield bands of whole rows (at most about ``chunk_size`` frames), pass after pass."""
        sy, sx = self.scan_shape
        self._schedule = (time.monotonic(), 0)
        pass_no = 0
        while not self._closed and (self.passes is None or pass_no < self.passes):
            self.pass_index = pass_no
            rows = self._band_rows(chunk_size)
            row = 0
            while row < sy and not self._closed:
                params = self.params
                for frames, positions in self._bands(params, pass_no, row, rows):
                    yield FrameChunk(frames, positions, np.full(len(positions), pass_no, np.int64))
                    row = int(positions[-1]) // sx + 1
                    self._throttle(len(positions))
                    if self._closed or self.params is not params:
                        break
                if self.params is not params and row < sy and not _CAN_START_MID_SCAN:
                    break  # the new parameters start a new pass from the top
            pass_no += 1

    def _band_rows(self, chunk_size: int) -> int:
        """Rows per band: about ``chunk_size`` frames, but at most ~`MAX_BAND_S` of frames
        at the current rate, so that a slow live stream still updates smoothly."""
        frames = int(chunk_size)
        if self._rate:
            frames = min(frames, int(self._rate * MAX_BAND_S))
        return max(1, frames // self.scan_shape[1])

    def _bands(self, params: SimulationParams, pass_no: int, row: int, rows: int):
        p = dataclasses.replace(params, seed=params.seed + pass_no)
        if row == 0:
            return simulate_chunks(p, rows)
        return simulate_chunks(p, rows, start_row=row)  # only reached when supported

    def _throttle(self, n: int) -> None:
        with self._lock:
            rate = self._rate
            t0, sent = self._schedule
            sent += n
            self._schedule = (t0, sent)
        if not rate:
            return
        while not self._closed:
            now = time.monotonic()
            due = t0 + sent / rate
            if now >= due:
                if now - due > 0.5:  # fell behind (slow simulation, or paused): no catch-up burst
                    with self._lock:
                        self._schedule = (now, 0)
                return
            self._wake.clear()
            if self._wake.wait(min(due - now, 0.1)):
                with self._lock:
                    if self._rate != rate:
                        return

    # ------------------------------------------------------------------ metadata
    def hints(self) -> dict:
        """Calibration of the simulation: step, pixel size, energy and centre."""
        return simulation_hints(self.params)

    def describe(self) -> dict:
        return {**super().describe(), "name": "live simulator (SrTiO3 [001])",
                "params": dataclasses.asdict(self.params), "rate": self._rate}


def _check_rate(rate) -> float | None:
    if rate is None or rate == 0:
        return None
    rate = float(rate)
    if not (rate > 0 and np.isfinite(rate)):
        raise SettingsError(f"the simulator rate must be a positive number of patterns/s, got {rate!r}")
    return rate
