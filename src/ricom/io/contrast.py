"""Display contrast: the limits an image is shown between.

Owns `percentile_levels`, the one percentile contrast of the package: PNG previews
(`ricom.io.outputs.preview_png`), notebook figures (`ricom.jupyter`), report figures
(`ricom.tools.report_figures`) and the GUI's image panels (`ricom.gui.imageview`) all use it.
"""
from __future__ import annotations

import numpy as np


def percentile_levels(data, low: float = 0.5, high: float = 99.5, symmetric: bool = False, *,
                      max_samples: int | None = None, flat_relative: float = 0.0) -> tuple[float, float]:
    """Display limits ``(lo, hi)`` at the ``low``/``high`` percentiles of the finite values.

    Parameters
    ----------
    data : array_like
        The image (any shape); NaN and ±inf are left out.  The percentiles are computed
        in its own dtype.
    low, high : float
        Percentiles (0…100) of the lower and upper limit.
    symmetric : bool
        Limits ``(-m, m)`` with ``m`` the larger magnitude of the two percentiles (for
        signed images such as COM shifts).
    max_samples : int, optional
        Use every k-th value only, k = size // ``max_samples``, when the image has more
        values than this (between ``max_samples`` and twice as many are used).
    flat_relative : float
        When the limits coincide (a constant image), ``hi = lo + |lo|·flat_relative``, or
        ``lo + 1`` where that is 0 (the default: always ``lo + 1``).

    Returns
    -------
    (float, float)
        ``lo < hi``; ``(0.0, 1.0)`` when there is no finite value.

    Examples
    --------
    >>> import numpy as np
    >>> percentile_levels(np.arange(101.0), 1, 99)
    (1.0, 99.0)
    >>> percentile_levels([[np.nan, 2.0], [2.0, np.inf]])  # constant: one unit wide
    (2.0, 3.0)
    >>> percentile_levels([-3.0, 0.0, 2.0], 0, 100, symmetric=True)
    (-3.0, 3.0)
    """
    flat = np.asarray(data).ravel()
    if max_samples is not None and flat.size > max_samples:
        flat = flat[:: flat.size // max_samples]
    flat = flat[np.isfinite(flat)]
    if flat.size == 0:
        return 0.0, 1.0
    lo, hi = (float(v) for v in np.percentile(flat, [low, high]))
    if symmetric:
        m = max(abs(lo), abs(hi))
        lo, hi = -m, m
    if not hi > lo:
        hi = lo + (abs(lo) * flat_relative or 1.0)
    return lo, hi
