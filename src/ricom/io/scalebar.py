"""Scale bars: a round physical length that fits an image, and its label.

Owns `ScaleBar` and `scale_bar`, used by the PNG previews (`ricom.io.outputs.preview_png`)
and the GUI's image panels (`ricom.gui.imageview`), so that both pick the same length and
say it the same way: 1, 2 or 5 times a power of ten in Å, written in nm from 10 Å on.
"""
from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class ScaleBar:
    """A scale bar for an image whose pixels are ``step_A`` apart.

    Attributes
    ----------
    length_A : float
        Physical length of the bar in Å.
    length_px : float
        The same length in image (scan) pixels: ``length_A / step_A``.
    label : str
        What is written beside the bar (``"5 Å"``, ``"2 nm"``).
    """

    length_A: float
    length_px: float
    label: str


def scale_bar(step_A: float | None, width_px: int, fraction: float = 0.25) -> ScaleBar | None:
    """The longest round length (1, 2 or 5 × 10ⁿ Å) not longer than ``fraction`` of the width.

    Parameters
    ----------
    step_A : float or None
        Scan step in Å; None (uncalibrated) gives no bar.
    width_px : int
        Image width in pixels.
    fraction : float
        Largest share of the width the bar may take.

    Returns
    -------
    ScaleBar or None
        None when uncalibrated or when not even the shortest length fits.

    Examples
    --------
    >>> scale_bar(0.2, 64)
    ScaleBar(length_A=2.0, length_px=10.0, label='2 Å')
    >>> scale_bar(0.5, 256).label
    '2 nm'
    >>> scale_bar(None, 64) is None
    True
    """
    if step_A is None or step_A <= 0 or width_px <= 0:
        return None
    limit_A = fraction * width_px * step_A
    exponent = math.floor(math.log10(limit_A))
    best = None
    for e in (exponent - 1, exponent):
        for mantissa in (1, 2, 5):
            length = mantissa * 10.0 ** e
            if length <= limit_A * (1 + 1e-9):
                best = length
    if best is None:
        return None
    best = float(f"{best:.6g}")  # 2.0000000000000004 → 2.0
    return ScaleBar(best, best / step_A, length_label(best))


def length_label(length_A: float) -> str:
    """``"5 Å"`` below 10 Å, then in nm (``"2 nm"``), and in µm from 1 µm on.

    Examples
    --------
    >>> length_label(0.5), length_label(20.0), length_label(5000.0), length_label(20000.0)
    ('0.5 Å', '2 nm', '500 nm', '2 µm')
    """
    if length_A < 10:
        return f"{length_A:g} Å"
    if length_A < 10_000:
        return f"{length_A / 10:g} nm"
    return f"{length_A / 10_000:g} µm"
