"""Running a fuzzed input end to end: `ricom.sources.open_source` → `ricom.engine.pipeline.run`.

`reconstruct` opens the input, wraps the source's chunks so that an exception other than a
project error cannot hide in the pipeline's result (the pipeline keeps a partial result
after an `OSError` too) and so that the scan positions that received data are counted,
then runs the pipeline into a `ricom.engine.reconstruction.Reconstruction`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from ricom.core.errors import RicomError
from ricom.core.params import KernelSettings, Settings
from ricom.engine.pipeline import run
from ricom.engine.reconstruction import Reconstruction
from ricom.sources import open_source

MAX_POSITIONS = 1 << 16
"""A damaged header may claim any scan; beyond this many positions only the chunks are read."""
MAX_DETECTOR_PIXELS = 1 << 20
SETTINGS = Settings(kernel=KernelSettings(3))
"""A kernel any scan can take (the default 21 is refused for scans smaller than 10×10)."""


@dataclass
class Run:
    """What one end-to-end run gave: the run's result (None when only chunks were read),
    the scan positions covered, their number."""

    result: object
    covered: set = field(default_factory=set)
    n_positions: int = 0

    @property
    def flagged(self) -> bool:
        """The pipeline kept a partial result and said why (the source's error), or was stopped."""
        return self.result is not None and (self.result.error is not None or self.result.interrupted)

    @property
    def complete(self) -> bool:
        """Every scan position received data and the run ended without error."""
        ok = self.result is None or self.result.complete
        return ok and len(self.covered) >= self.n_positions


def _watch(source, covered: set, escaped: list):
    chunks = source.chunks

    def watched(chunk_size: int = 256):
        try:
            for chunk in chunks(chunk_size):
                pos = chunk.positions_done if getattr(chunk, "positions_done", None) is not None else chunk.positions
                covered.update(np.asarray(pos)[np.asarray(pos) >= 0].tolist())
                yield chunk
        except RicomError:
            raise
        except Exception as exc:  # a crash the pipeline would keep as a partial result's error text
            escaped.append(exc)
            raise

    source.chunks = watched


def reconstruct(spec: str, **options) -> Run:
    """Open ``spec`` and run it through the pipeline (see the module docstring)."""
    return run_source(open_source(spec, **options))


def run_source(source) -> Run:
    """Run an open ``source`` through the pipeline (or, for a huge claimed scan or detector,
    read its chunks only); the source is closed."""
    covered: set = set()
    escaped: list = []
    try:
        n_pos = math.prod(int(v) for v in source.scan_shape) if source.scan_shape else 0
        out = Run(None, covered, n_pos)
        _watch(source, covered, escaped)
        if n_pos <= MAX_POSITIONS and math.prod(int(v) for v in source.detector_shape) <= MAX_DETECTOR_PIXELS:
            rec = Reconstruction(source.scan_shape, source.detector_shape, SETTINGS)
            out.result = run(source, rec, chunk_size=64, prefetch=0)
        else:
            for _ in source.chunks(64):
                pass
    finally:
        source.close()
    if escaped:
        raise escaped[0]
    return out
