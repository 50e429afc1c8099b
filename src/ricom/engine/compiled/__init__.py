"""Every compiled hot loop of the engine, in one place (numba, ``nogil``, cached).

The engine calls these on whole chunks: per-pattern reductions (total, first moments,
ring sums; `frames`), accumulation of those moments into the per-position state
(`moments`) and the same for single-electron events (`events`), and the riCOM update —
calibrated COM and the kernel scatter (`ricom_update`).  Nothing here allocates per
pattern or calls back into Python.  Buffers and parameters travel as the named tuples
`MomentBuffers`, `ComFrame` and `EventLookups`.

State layout: ``state[m, p]`` holds moment ``m`` of scan position ``p``: row 0 total
counts, 1 Σ I·x, 2 Σ I·y (x, y in detector pixels from the top-left pixel), rows 3… ring
sums of the virtual-detector rings.
"""
from ricom.engine.compiled._common import (
    FIRST_RING,
    SUM_X,
    SUM_Y,
    TOTAL,
    ComFrame,
    EventLookups,
    MomentBuffers,
    load,
)
from ricom.engine.compiled.events import accumulate_events
from ricom.engine.compiled.frames import (
    frame_moments_bits,
    frame_moments_rings_u16,
    frame_moments_u16,
    frame_moments_weighted,
    frame_ring_sums,
    sum_patterns,
)
from ricom.engine.compiled.moments import accumulate
from ricom.engine.compiled.ricom_update import (
    add_pending,
    clear_pending,
    com_at,
    com_maps,
    scatter_touched,
    take_deltas,
    touched_box,
)

__all__ = [
    "FIRST_RING",
    "SUM_X",
    "SUM_Y",
    "TOTAL",
    "ComFrame",
    "EventLookups",
    "MomentBuffers",
    "accumulate",
    "accumulate_events",
    "add_pending",
    "clear_pending",
    "com_at",
    "com_maps",
    "frame_moments_bits",
    "frame_moments_rings_u16",
    "frame_moments_u16",
    "frame_moments_weighted",
    "frame_ring_sums",
    "load",
    "scatter_touched",
    "sum_patterns",
    "take_deltas",
    "touched_box",
]
