"""2×2 linear maps of detector and scan vectors (`Matrix2`).

Owns the one representation of the geometry between the detector and the scan: a
frozen 2×2 matrix with constructors for rotation, flip and scale, composition with
``@``, its inverse, and application to NumPy arrays.  `ricom.core.params.DetectorGeometry`
builds its detector → scan map from it; calibration, the simulator and the frontends
use it instead of writing out sines and cosines.

Conventions (docs/conventions.md, "Rotation and flip"):

* a vector is ``(x, y)`` = (column, row) on the detector, row 0 at the top;
* `Matrix2.rotation` θ turns +x towards +y, i.e. ``x' = x cos θ − y sin θ``,
  ``y' = x sin θ + y cos θ``; with row 0 at the top of the screen that is clockwise
  on screen (90° takes +x to +y);
* `Matrix2.flip_x` mirrors the x axis (x → −x, columns reversed);
* ``A @ B`` applies ``B`` first, then ``A``.  The detector → scan map of a geometry is
  ``rotation(θ) @ flip_x()``: flip first, then rotate.  ``inverse()`` maps back.

Matrices are row-major: ``m00, m01`` is the row giving x', ``m10, m11`` the row giving
y'.  `Matrix2.as_tuple` is that 4-tuple, as the compiled engine takes it.

Examples
--------
>>> to_scan = Matrix2.rotation(90) @ Matrix2.flip_x()
>>> x, y = to_scan.apply(1.0, 0.0)        # detector +x: mirrored to −x, turned to −y
>>> round(x, 12) + 0.0, round(y, 12)
(0.0, -1.0)
>>> [round(v, 12) + 0.0 for v in to_scan.inverse().apply(x, y)]
[1.0, 0.0]
"""
from __future__ import annotations

import math
from dataclasses import astuple, dataclass

import numpy as np

from ricom.core.errors import SettingsError


@dataclass(frozen=True)
class Matrix2:
    """A 2×2 linear map of ``(x, y)`` vectors, row-major.

    Parameters
    ----------
    m00, m01, m10, m11 : float
        ``x' = m00·x + m01·y``, ``y' = m10·x + m11·y``.

    Examples
    --------
    >>> a = Matrix2(1.0, 2.0, 3.0, 4.0)
    >>> a.det
    -2.0
    >>> a @ a.inverse() == Matrix2.identity()
    True
    >>> a.apply(np.array([1.0, 0.0]), np.array([0.0, 1.0]))
    (array([1., 2.]), array([3., 4.]))
    """

    m00: float
    m01: float
    m10: float
    m11: float

    def __post_init__(self) -> None:
        values = tuple(float(v) for v in astuple(self))
        if not all(math.isfinite(v) for v in values):
            raise SettingsError(f"a 2×2 geometry matrix needs four finite numbers, got {astuple(self)!r}")
        for name, v in zip(("m00", "m01", "m10", "m11"), values, strict=True):
            object.__setattr__(self, name, v)

    # ------------------------------------------------------------ constructors
    @classmethod
    def identity(cls) -> Matrix2:
        """The map that changes nothing.

        Examples
        --------
        >>> Matrix2.identity().as_tuple()
        (1.0, 0.0, 0.0, 1.0)
        """
        return cls(1.0, 0.0, 0.0, 1.0)

    @classmethod
    def rotation(cls, deg: float) -> Matrix2:
        """Turn by ``deg`` degrees from +x towards +y (clockwise on screen, row 0 at the top).

        Examples
        --------
        >>> x, y = Matrix2.rotation(90).apply(1.0, 0.0)   # +x goes to +y
        >>> round(x, 12) + 0.0, y
        (0.0, 1.0)
        """
        t = math.radians(deg)
        c, s = math.cos(t), math.sin(t)
        return cls(c, -s, s, c)

    @classmethod
    def flip_x(cls) -> Matrix2:
        """Mirror the x axis: ``(x, y) → (−x, y)``.

        The off-diagonal zeros are negative zeros, so that ``A @ flip_x()`` negates the
        first column of a rotation bit for bit (as `DetectorGeometry.matrix` always has);
        as numbers they are zeros.

        Examples
        --------
        >>> Matrix2.flip_x().apply(2.0, 3.0)
        (-2.0, 3.0)
        >>> Matrix2.flip_x() == Matrix2(-1, 0, 0, 1)
        True
        """
        return cls(-1.0, -0.0, -0.0, 1.0)

    @classmethod
    def scale(cls, s: float) -> Matrix2:
        """Multiply both components by ``s``, e.g. detector pixels → mrad.

        Examples
        --------
        >>> Matrix2.scale(0.5).apply(2.0, -4.0)
        (1.0, -2.0)
        """
        return cls(s, 0.0, 0.0, s)

    # ------------------------------------------------------------ algebra
    def __matmul__(self, other: Matrix2) -> Matrix2:
        """``self @ other``: apply ``other`` first, then ``self``."""
        if not isinstance(other, Matrix2):
            return NotImplemented
        a, b = self, other
        return Matrix2(a.m00 * b.m00 + a.m01 * b.m10, a.m00 * b.m01 + a.m01 * b.m11,
                       a.m10 * b.m00 + a.m11 * b.m10, a.m10 * b.m01 + a.m11 * b.m11)

    @property
    def det(self) -> float:
        """Determinant: +1 for a rotation, −1 with a flip, s² for `scale` (s)."""
        return self.m00 * self.m11 - self.m01 * self.m10

    def inverse(self) -> Matrix2:
        """The map back: ``A.inverse() @ A`` is the identity (to rounding).

        Raises
        ------
        SettingsError
            If the map is singular (determinant 0), e.g. ``scale(0)``.

        Examples
        --------
        >>> Matrix2.scale(4.0).inverse() == Matrix2.scale(0.25)
        True
        """
        d = self.det
        if d == 0 or not math.isfinite(1.0 / d):
            raise SettingsError(f"the 2×2 map {self.as_tuple()} has no inverse (determinant {d!r}); "
                                "a scale or pixel size must not be zero")
        return Matrix2(self.m11 / d, -self.m01 / d, -self.m10 / d, self.m00 / d)

    # ------------------------------------------------------------ use
    def apply(self, x, y) -> tuple:
        """Map vectors ``(x, y)``: scalars or arrays of any broadcastable shapes.

        Returns
        -------
        x', y' : ndarray or float
            ``m00·x + m01·y`` and ``m10·x + m11·y``, broadcast together (the dtype of
            float32 input is kept); floats if both inputs are scalars.

        Examples
        --------
        >>> xs, ys = Matrix2.rotation(180).apply(np.array([[1.0], [2.0]]), np.zeros(3))
        >>> xs.shape, np.round(xs[:, 0], 12).tolist()
        ((2, 3), [-1.0, -2.0])
        """
        x, y = np.asarray(x), np.asarray(y)
        xs, ys = self.m00 * x + self.m01 * y, self.m10 * x + self.m11 * y
        if x.ndim == 0 and y.ndim == 0:
            return float(xs), float(ys)
        return xs, ys

    def as_tuple(self) -> tuple[float, float, float, float]:
        """Row-major ``(m00, m01, m10, m11)``, the four scalars the compiled engine takes."""
        return (self.m00, self.m01, self.m10, self.m11)

    def as_array(self) -> np.ndarray:
        """A new ``(2, 2)`` float64 array; ``as_array() @ [x, y]`` equals `apply`.

        Examples
        --------
        >>> Matrix2.flip_x().as_array() @ np.array([2.0, 3.0])
        array([-2.,  3.])
        """
        return np.array([[self.m00, self.m01], [self.m10, self.m11]], np.float64)
