"""Immutable parameter objects of a reconstruction.

Owns the dataclasses that describe *how* to reconstruct: calibration (physical units),
detector geometry (centre, rotation, flip), the riCOM kernel, virtual detectors and the
whole `Settings` bundle.  They validate themselves on construction so that a bad value
fails early with a one-line message.

Conventions (see docs/conventions.md):

* detector vectors are ``(x, y)`` = (column, row) with row 0 at the top;
* ``flip`` mirrors the detector x axis (x → −x, columns reversed) *before* rotation;
* ``rotation_deg`` θ turns the (flipped) detector vector by θ from detector +x towards
  detector +y, i.e. ``x_s = x cos θ − y sin θ``, ``y_s = x sin θ + y cos θ``.  With
  row 0 at the top of the screen, that is clockwise on screen.  As a matrix:
  `DetectorGeometry.transform` (a `ricom.core.geometry.Matrix2`).
* band-pass cut-offs of the kernel are in cycles per scan pixel (0.5 = Nyquist).
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field, replace

from ricom.core.errors import InputError, Param, SettingsError
from ricom.core.geometry import Matrix2
from ricom.core.units import rad_to_volt_angstrom

MAX_KERNEL_SIZE = 2001


def max_kernel_size(scan_shape) -> int:
    """The largest useful kernel size for a scan: 2·max(rows, cols) + 1, at most `MAX_KERNEL_SIZE`.

    A larger kernel reaches no further scan position from any position.

    Examples
    --------
    >>> max_kernel_size((16, 9))
    33
    >>> max_kernel_size((4096, 4096)) == MAX_KERNEL_SIZE
    True
    """
    return min(MAX_KERNEL_SIZE, 2 * max(scan_shape) + 1)


BYTES_PER_POSITION = 256
"""Memory one scan position takes in a reconstruction, roughly: the moments (sums, counts,
stamps), the riCOM image, COM and descan maps, and the copies a snapshot and its derived
signals make (float64 each)."""


def memory_budget_bytes() -> int:
    """The memory a reconstruction may plan for: this machine's physical memory (16 GiB if unknown)."""
    try:
        return int(os.sysconf("SC_PHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (AttributeError, ValueError, OSError):
        return 16 * 2**30


def check_scan_memory(n_positions: int, what: str, from_file: bool = False, n_rings: int = 0) -> None:
    """A one-line error, before anything is allocated, if ``n_positions`` scan positions cannot fit in memory.

    Parameters
    ----------
    n_positions : int
        Scan positions (rows × columns).
    what : str
        The value and where it came from, for the message (``"scan shape 10⁶×10⁶ (given)"``).
    from_file : bool
        The size was read from the input (`InputError`), not given (`SettingsError`).
    n_rings : int
        Virtual-detector rings stored per position beside the moments.

    Examples
    --------
    >>> check_scan_memory(256 * 256, "scan shape 256×256")
    >>> check_scan_memory(10**12, "scan shape 1000000×1000000 (given)")
    Traceback (most recent call last):
    ...
    ricom.core.errors.SettingsError: scan shape 1000000×1000000 (given) has 1,000,000,000,000 positions, ...
    """
    need = int(n_positions) * (BYTES_PER_POSITION + 8 * int(n_rings))
    have = memory_budget_bytes()
    if need <= have:
        return
    error = InputError if from_file else SettingsError
    raise error(f"{what} has {int(n_positions):,} positions, whose images need about {need / 2**30:,.1f} GiB, more "
                f"than the {have / 2**30:,.1f} GiB of memory here; check ", Param("scan_shape"))


def check_com_mask(com_mask_px, detector_shape, center_yx=None) -> None:
    """A one-line `SettingsError` if the COM mask annulus leaves no pixel of the detector.

    With the centre unknown (auto, somewhere on the detector), only an inner radius beyond
    the detector's diagonal is certain to leave none.

    Examples
    --------
    >>> check_com_mask((0, 10), (64, 64), (31.5, 31.5))
    >>> check_com_mask((500, 600), (64, 64), (31.5, 31.5))
    Traceback (most recent call last):
    ...
    ricom.core.errors.SettingsError: COM mask 500–600 px lies outside the 64×64 detector ...
    """
    if com_mask_px is None:
        return
    lo = float(com_mask_px[0])
    dy, dx = detector_shape
    if center_yx is None:
        far, around = math.hypot(dy - 1, dx - 1), "any centre on it"
    else:
        cy, cx = center_yx
        far, around = math.hypot(max(cy, dy - 1 - cy), max(cx, dx - 1 - cx)), f"centre ({cy:g}, {cx:g})"
    if lo > far:
        raise SettingsError(f"COM mask {lo:g}–{float(com_mask_px[1]):g} px lies outside the {dy}×{dx} detector "
                            f"(its farthest pixel is {far:.1f} px from {around}), so every COM would be 0; give ",
                            Param("com_mask_px", form=True), f" with an inner radius below {far:.1f}")


def _positive_or_none(name: str, value: float | None) -> None:
    if value is not None and not (math.isfinite(value) and value > 0):
        raise SettingsError(f"{name} must be a positive number, got {value!r}")


def shape2(what: str, value) -> tuple[int, int]:
    """Two positive integers (rows, cols), or a one-line `SettingsError` naming ``what``.

    Examples
    --------
    >>> shape2("scan shape", (4.0, 5))
    (4, 5)
    """
    try:
        rows, cols = (int(v) for v in value)
    except (TypeError, ValueError):
        raise SettingsError(f"{what} must be two integers (rows, cols), got {value!r}") from None
    if rows < 1 or cols < 1:
        raise SettingsError(f"{what} must be positive, got {value!r}")
    return rows, cols


@dataclass(frozen=True)
class Calibration:
    """Physical calibration; every field is optional.

    Parameters
    ----------
    step_A : float, optional
        Scan step in Å.  Without it distances are in scan pixels.
    pixel_size_mrad : float, optional
        Detector pixel size in mrad.  Without it COM is in detector pixels.
    energy_keV : float, optional
        Beam energy.  With all three given, riCOM and iCOM are in V·Å.
    """

    step_A: float | None = None
    pixel_size_mrad: float | None = None
    energy_keV: float | None = None

    def __post_init__(self) -> None:
        _positive_or_none("step_A", self.step_A)
        _positive_or_none("pixel_size_mrad", self.pixel_size_mrad)
        _positive_or_none("energy_keV", self.energy_keV)

    def filled_from(self, hints: dict) -> Calibration:
        """This calibration with the fields it lacks taken from an input's hints.

        Examples
        --------
        >>> Calibration(step_A=0.5).filled_from({"step_A": 0.2, "energy_keV": 300})
        Calibration(step_A=0.5, pixel_size_mrad=None, energy_keV=300)
        """
        return Calibration(*(getattr(self, k) if getattr(self, k) is not None else hints.get(k)
                             for k in ("step_A", "pixel_size_mrad", "energy_keV")))

    @property
    def step(self) -> float:
        """Scan step used in formulas: Å if known, else 1 (scan pixels)."""
        return self.step_A if self.step_A is not None else 1.0

    @property
    def com_scale(self) -> float:
        """Factor from detector pixels to the COM output unit."""
        return self.pixel_size_mrad if self.pixel_size_mrad is not None else 1.0

    @property
    def com_unit(self) -> str:
        return "mrad" if self.pixel_size_mrad is not None else "px"

    @property
    def distance_unit(self) -> str:
        return "Å" if self.step_A is not None else "scan px"

    @property
    def potential_scale(self) -> float:
        """Factor from (COM unit × distance unit) to the riCOM/iCOM output unit."""
        if self.pixel_size_mrad is None:
            return 1.0
        if self.energy_keV is None:
            return 1e-3
        return 1e-3 * rad_to_volt_angstrom(self.energy_keV)

    @property
    def potential_unit(self) -> str:
        if self.pixel_size_mrad is not None and self.step_A is not None:
            return "V·Å" if self.energy_keV is not None else "rad·Å"
        if self.pixel_size_mrad is not None:
            return "rad·scan px"
        return f"px·{self.distance_unit}"


@dataclass(frozen=True)
class DetectorGeometry:
    """Where the pattern centre is and how the detector is oriented to the scan.

    Parameters
    ----------
    center_yx : (float, float) or None
        Pattern centre (row, column) in detector pixels; ``None`` estimates it as the
        mean COM of the patterns processed so far (or of a reference scan).
    rotation_deg : float
        Scan–detector rotation θ: the measured COM vector is turned by θ from detector
        +x towards detector +y (clockwise on screen) to give its scan-frame direction.
    flip : bool
        Mirror the detector x axis (x → −x) before the rotation.
    """

    center_yx: tuple[float, float] | None = None
    rotation_deg: float = 0.0
    flip: bool = False

    def __post_init__(self) -> None:
        if not math.isfinite(self.rotation_deg):
            raise SettingsError(f"rotation must be a finite angle in degrees, got {self.rotation_deg!r}")
        if self.center_yx is not None:
            cy, cx = (float(v) for v in self.center_yx)
            if not (math.isfinite(cy) and math.isfinite(cx)):
                raise SettingsError(f"centre must be two finite numbers, got {self.center_yx!r}")
            object.__setattr__(self, "center_yx", (cy, cx))

    def transform(self) -> Matrix2:
        """The map from detector (x, y) to scan (x, y): ``rotation(θ) @ flip_x()`` (flip first).

        ``transform().inverse()`` maps scan-frame vectors back onto the detector.

        Examples
        --------
        >>> to_scan = DetectorGeometry(rotation_deg=90.0).transform()
        >>> [round(v, 12) + 0.0 for v in to_scan.apply(1.0, 0.0)]   # detector +x is scan +y
        [0.0, 1.0]
        """
        rotation = Matrix2.rotation(self.rotation_deg)
        return rotation @ Matrix2.flip_x() if self.flip else rotation

    def matrix(self) -> tuple[float, float, float, float]:
        """`transform` as the row-major 4-tuple ``(m00, m01, m10, m11)`` the compiled engine takes."""
        return self.transform().as_tuple()


@dataclass(frozen=True)
class KernelSettings:
    """The n×n riCOM kernel and its optional band-pass.

    Parameters
    ----------
    size : int
        Odd kernel size n (3 ≤ n ≤ 2001).
    band_pass : (float, float) or None
        ``(k_min, k_max)`` in cycles per scan pixel (Nyquist = 0.5); frequencies with
        ``k_min ≤ |k| ≤ k_max`` pass.  Use `from_inverse_angstrom` for 1/Å.
    """

    size: int = 21
    band_pass: tuple[float, float] | None = None

    def __post_init__(self) -> None:
        n = self.size
        if isinstance(n, bool) or not isinstance(n, int) or n != int(n):
            raise SettingsError(f"kernel size must be an odd integer, got {n!r}")
        if n < 3 or n % 2 == 0:
            raise SettingsError(f"kernel size must be an odd integer ≥ 3, got {n}")
        if n > MAX_KERNEL_SIZE:
            raise SettingsError(f"kernel size {n} is too large; the maximum is {MAX_KERNEL_SIZE}")
        if self.band_pass is not None:
            lo, hi = (float(v) for v in self.band_pass)
            if not (math.isfinite(lo) and lo >= 0 and hi > lo):
                raise SettingsError(
                    f"band-pass needs 0 ≤ k_min < k_max (cycles per scan pixel), got {self.band_pass!r}")
            object.__setattr__(self, "band_pass", (lo, hi))

    @classmethod
    def from_inverse_angstrom(cls, size: int, k_min: float, k_max: float, step_A: float) -> KernelSettings:
        """Band-pass given in 1/Å: cycles per scan pixel = (1/Å) × step."""
        return cls(size=size, band_pass=(k_min * step_A, k_max * step_A))


@dataclass(frozen=True)
class VirtualDetector:
    """An annular virtual detector centred on the pattern centre.

    ``inner ≤ r < outer``; ``outer`` may be ``math.inf``.  ``unit`` is ``"px"`` (detector
    pixels), ``"mrad"`` (needs the calibration's pixel size) or ``"bf"`` (multiples of
    the bright-field disc radius, estimated from the first chunk of data).
    """

    name: str
    inner: float
    outer: float
    unit: str = "px"

    def __post_init__(self) -> None:
        if self.unit not in ("px", "mrad", "bf"):
            raise SettingsError(f"virtual detector unit must be 'px', 'mrad' or 'bf', got {self.unit!r}")
        if not (self.inner >= 0 and self.outer > self.inner):
            raise SettingsError(
                f"virtual detector {self.name!r} needs 0 ≤ inner < outer, got {self.inner}, {self.outer}")

    def radii_px(self, calibration: Calibration) -> tuple[float, float]:
        """Radii in detector pixels (not for ``unit="bf"``, which the engine resolves)."""
        if self.unit in ("px", "bf"):
            return self.inner, self.outer
        if calibration.pixel_size_mrad is None:
            raise SettingsError(f"virtual detector {self.name!r} is in mrad: give the detector pixel size (",
                                Param("pixel_size_mrad"), ")")
        d = calibration.pixel_size_mrad
        return self.inner / d, self.outer / d


@dataclass(frozen=True)
class Settings:
    """Everything that decides the images, bundled; change it with `with_`."""

    kernel: KernelSettings = field(default_factory=KernelSettings)
    geometry: DetectorGeometry = field(default_factory=DetectorGeometry)
    calibration: Calibration = field(default_factory=Calibration)
    virtual_detectors: tuple[VirtualDetector, ...] = ()
    com_mask_px: tuple[float, float] | None = None
    """Optional annulus (inner, outer) in detector pixels around the centre that limits
    the COM sums; ``None`` uses the whole detector."""

    def __post_init__(self) -> None:
        names = [v.name for v in self.virtual_detectors]
        if len(set(names)) != len(names):
            raise SettingsError(f"virtual detector names must be unique, got {names}")
        if self.com_mask_px is not None:
            lo, hi = self.com_mask_px
            if not (lo >= 0 and hi > lo):
                raise SettingsError(f"COM mask needs 0 ≤ inner < outer pixels, got {self.com_mask_px!r}")

    def with_(self, **changes) -> Settings:
        """A copy with some parts replaced (``kernel=``, ``geometry=``, ...)."""
        return replace(self, **changes)
