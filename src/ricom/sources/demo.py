"""The built-in simulated specimen as a source (input name ``demo``).

Frames are simulated lazily, a band of scan rows at a time, by `ricom.simulators.specimen`, so the
demo behaves like a live acquisition and needs no memory for the whole 4D array.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import numpy as np

from ricom.core.chunks import FrameChunk
from ricom.core.errors import InputError, SettingsError
from ricom.simulators.specimen import (
    SimulationParams,
    detector_calibration,
    projected_potential,
    simulate_chunks,
    simulation_hints,
)
from ricom.sources.base import Source

_FIELDS = {f.name for f in dataclasses.fields(SimulationParams)}


class SimulatorSource(Source):
    """Simulated SrTiO3 [001] patterns in scan order.

    Parameters
    ----------
    params : SimulationParams
        What to simulate.

    Attributes
    ----------
    params : SimulationParams
    pixel_size_mrad : float
        Detector pixel size of the simulation.
    center_yx : (float, float)
        Optical-axis index on the detector (row, col).
    """

    kind = "frames"
    name = "demo"
    range_note = ("it is simulated in the reading process; write it to a file first (ricom simulate -o scan.npy) "
                  "and reconstruct that")

    def __init__(self, params: SimulationParams | None = None) -> None:
        self.params = params if params is not None else SimulationParams()
        self.scan_shape = self.params.scan_shape
        self.detector_shape = self.params.detector_shape
        self.n_frames = self.scan_shape[0] * self.scan_shape[1]
        self.pixel_size_mrad, self.center_yx = detector_calibration(self.params)

    def chunks(self, chunk_size: int = 256) -> Iterator[FrameChunk]:
        """Yield chunks of at most ``chunk_size`` frames, simulated on demand."""
        chunk_size = max(1, int(chunk_size))
        rows = max(1, chunk_size // self.scan_shape[1])
        for frames, positions in simulate_chunks(self.params, rows_per_chunk=rows):
            for start in range(0, len(positions), chunk_size):
                yield FrameChunk(frames[start:start + chunk_size], positions[start:start + chunk_size])

    def hints(self) -> dict:
        """The simulation's own calibration: step, pixel size, energy and centre."""
        return simulation_hints(self.params)

    def ground_truth_potential(self) -> np.ndarray:
        """Projected potential (V·Å) at the probe positions."""
        return projected_potential(self.params, self.scan_shape, self.params.step_A)

    def describe(self) -> dict:
        p = self.params
        return {**super().describe(), "name": "demo (simulated SrTiO3 [001])",
                "dtype": "float32" if p.dose_e_per_probe is None else "counts",
                "params": dataclasses.asdict(p), "pixel_size_mrad": self.pixel_size_mrad,
                "center_yx": list(self.center_yx), "step_A": p.step_A, "energy_keV": p.energy_keV}


def open(spec: str, **options) -> SimulatorSource:
    """Open the simulator.

    Parameters
    ----------
    spec : str
        Must be ``"demo"``.
    **options
        ``scan_shape`` (used if not None) and any `SimulationParams` field (e.g.
        ``dose_e_per_probe``, ``defocus_A``); None values and other keys are ignored.

    Raises
    ------
    InputError
        If ``spec`` is not ``"demo"``.
    SettingsError
        If a simulation parameter is invalid.
    """
    if spec != "demo":
        raise InputError(f"the simulator source only opens 'demo', not {spec!r}")
    kwargs = {k: v for k, v in options.items() if k in _FIELDS and v is not None}
    for key in ("scan_shape", "detector_shape"):
        if key in kwargs:
            kwargs[key] = tuple(int(v) for v in np.atleast_1d(kwargs[key]))
    try:
        params = SimulationParams(**kwargs)
    except SettingsError:
        raise
    except (TypeError, ValueError) as exc:
        raise SettingsError(f"demo: invalid simulation parameter ({exc})") from None
    return SimulatorSource(params)
