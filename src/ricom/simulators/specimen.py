"""Built-in specimen simulator: SrTiO3 [001] 4D-STEM data with a known ground truth.

Owns: the smooth projected-potential model of SrTiO3 (optionally with a vacuum pore),
the probe (circular aperture, defocus, two-fold astigmatism), the phase-object
diffraction patterns on a pixelated detector (optionally rotated / flipped), Poisson
noise, and their delivery as a whole 4D array (`simulate`) or row band by row band
(`simulate_chunks`, used by the live demo source).

Geometry: the probe at scan index ``[iy, ix]`` sits at (x, y) = (ix·step, iy·step) Å;
(0, 0) is a Sr column.  With rotation 0 and no flip, detector x ∥ scan x and detector y
∥ scan y, and the COM of each pattern points up the potential gradient (+∇V).
"""
from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import asdict, dataclass

import numpy as np
from numpy.lib.stride_tricks import as_strided

from ricom.core.errors import SettingsError
from ricom.core.params import DetectorGeometry
from ricom.core.progress import Progress
from ricom.core.units import interaction_parameter, wavelength_A

LATTICE_A = 3.905
# Per atom and per unit-cell repeat (3.905 Å) along the beam: (amplitude V·Å, Gaussian
# standard deviation Å).  Fitted by least squares (amplitudes linear, widths by
# Levenberg–Marquardt) to abTEM's frozen-phonon-mean projected potential of 10 unit cells
# (data/quick_srtio3/potential_fine.npy, Lobato parametrisation, thermal smearing
# included); unit-cell-averaged rms residual 50 V·Å (peak 10.7 kV·Å), correlation 0.9988.
# The broad 2 Å Ti term stands in for the long-range tails (the 360 V·Å floor).
_GAUSSIANS = {
    "Sr": ((424.4, 0.1885), (180.4, 0.4418), (415.7, 0.0933)),  # Z = 38
    "Ti": ((453.3, 0.1335), (224.1, 0.3641), (20.38, 2.0)),  # Z = 22
    "O": ((82.26, 0.0957), (14.96, 0.5547), (156.2, 0.2257)),  # Z = 8
}
# Atom columns per unit cell: element and fractional (x, y) position.
_SITES = (("Sr", (0.0, 0.0)), ("Ti", (0.5, 0.5)), ("O", (0.5, 0.5)),
          ("O", (0.5, 0.0)), ("O", (0.0, 0.5)))
# Simulation grid points per detector pixel (2: grid Nyquist angle = 2× the detector
# half-width; 4 changes the quick_srtio3 COM maps by ≤ 1.3 % of their maximum).
_OVERSAMPLE = 2
_LOWER_LIMITS = {"step_A": 1e-4, "energy_keV": 1.0, "convergence_mrad": 0.1, "thickness_A": 0.0,
                 "pore_radius_A": 0.0, "astigmatism_A": 0.0, "defocus_A": -math.inf,
                 "astigmatism_angle_deg": -math.inf, "rotation_deg": -math.inf}


@dataclass(frozen=True)
class SimulationParams:
    """Everything that defines a simulated data set (lengths in Å, angles in mrad).

    Parameters
    ----------
    scan_shape, detector_shape : (int, int)
        (rows, columns) of the scan and of each pattern.
    step_A, energy_keV, convergence_mrad : float
        Scan step, beam energy, probe semi-angle.
    defocus_A : float
        Positive = underfocus (Kirkland's Δf; aberration coefficient C1 = −Δf).
    astigmatism_A, astigmatism_angle_deg : float
        Two-fold astigmatism |A1| and its axis, measured from scan +x towards scan +y.
    thickness_A : float
        Specimen thickness; the projected potential scales linearly with it.
    pore_radius_A : float
        Vacuum disc (zero potential) centred at ((sx−1)/2·step, (sy−1)/2·step); 0 = none.
    dose_e_per_probe : float or None
        None: float32 fractions of the beam per pixel; else Poisson counts with mean
        dose × fraction (uint16, or uint32 where a pixel could exceed 65535).
    rotation_deg, flip : float, bool
        Record the patterns such that the reconstruction's correction (mirror detector
        x if ``flip``, then rotate by θ: x_s = x cosθ − y sinθ, y_s = x sinθ + y cosθ, i.e.
        ``DetectorGeometry.transform``)
        restores the scan-frame COM.
    seed : int
        Seed of ``numpy.random.default_rng`` for the noise.
    """

    scan_shape: tuple[int, int] = (64, 64)
    detector_shape: tuple[int, int] = (64, 64)
    step_A: float = 0.2
    energy_keV: float = 300.0
    convergence_mrad: float = 20.0
    defocus_A: float = 0.0
    astigmatism_A: float = 0.0
    astigmatism_angle_deg: float = 0.0
    thickness_A: float = 39.05
    pore_radius_A: float = 0.0
    dose_e_per_probe: float | None = None
    rotation_deg: float = 0.0
    flip: bool = False
    seed: int = 0

    def __post_init__(self) -> None:
        for name, low in (("scan_shape", 1), ("detector_shape", 8)):
            shape = tuple(int(v) for v in getattr(self, name))
            object.__setattr__(self, name, shape)
            if len(shape) != 2 or min(shape) < low:
                raise SettingsError(f"{name} must be two integers ≥ {low}, got {shape}")
        for name, low in _LOWER_LIMITS.items():
            if not (math.isfinite(getattr(self, name)) and getattr(self, name) >= low):
                raise SettingsError(f"simulation parameter {name} = {getattr(self, name)!r} must be ≥ {low}")
        if self.dose_e_per_probe is not None and not (self.dose_e_per_probe > 0):
            raise SettingsError(f"dose_e_per_probe must be positive or None, got {self.dose_e_per_probe!r}")


@dataclass
class SimulatedData:
    """A simulated data set with its ground truth and calibration.

    Attributes
    ----------
    data : ndarray
        (scan_y, scan_x, det_y, det_x) patterns.
    potential : ndarray
        Model projected potential (V·Å) at the probe positions, (scan_y, scan_x).
    params : SimulationParams
    pixel_size_mrad, center_yx : float, (float, float)
        Detector pixel size; optical-axis index (row, col) = (det_y//2, det_x//2).
    """

    data: np.ndarray
    potential: np.ndarray
    params: SimulationParams
    pixel_size_mrad: float
    center_yx: tuple[float, float]

    def to_dict(self) -> dict:
        """JSON-serialisable metadata: parameters, calibration, units."""
        p = self.params
        return {"params": asdict(p), "pixel_size_mrad": float(self.pixel_size_mrad),
                "center_yx": [float(v) for v in self.center_yx], "wavelength_A": wavelength_A(p.energy_keV),
                "sigma_rad_per_VA": interaction_parameter(p.energy_keV),
                "specimen": f"SrTiO3 [001], a = {LATTICE_A} Å, Sr column at the scan origin",
                "array_order": "(scan_y, scan_x, det_y, det_x)",
                "units": {"data": "counts" if p.dose_e_per_probe else "fraction of beam per pixel",
                          "potential": "V·Å", "pixel_size_mrad": "mrad", "center_yx": "detector px"}}


def _sum_gaussians_1d(coords: np.ndarray, offset: float, width: float) -> np.ndarray:
    """Σ_i exp(−(c − (i + offset)·a)² / 2w²) over the lattice rows near ``coords``."""
    reach = 7.0 * width
    lo = math.floor((coords.min() - reach) / LATTICE_A - offset)
    hi = math.ceil((coords.max() + reach) / LATTICE_A - offset)
    centres = (np.arange(lo, hi + 1) + offset) * LATTICE_A
    d = coords[None, :] - centres[:, None]
    return np.exp(-d * d / (2 * width * width)).sum(axis=0)


def _potential(params: SimulationParams, y: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Model potential (V·Å) on the outer-product grid of coordinates ``y`` × ``x`` (Å)."""
    cells = params.thickness_A / LATTICE_A
    v = np.zeros((y.size, x.size))
    for element, (fx, fy) in _SITES:
        for amp, width in _GAUSSIANS[element]:
            # Gaussians on a rectangular lattice are separable: an outer product per term.
            v += amp * cells * np.outer(_sum_gaussians_1d(y, fy, width), _sum_gaussians_1d(x, fx, width))
    if params.pore_radius_A > 0:
        cy = (params.scan_shape[0] - 1) * params.step_A / 2
        cx = (params.scan_shape[1] - 1) * params.step_A / 2
        v[(y[:, None] - cy) ** 2 + (x[None, :] - cx) ** 2 < params.pore_radius_A**2] = 0.0
    return v


def projected_potential(params: SimulationParams, shape_yx, sampling_A: float) -> np.ndarray:
    """Projected potential (V·Å) on the grid ``[i, j]`` ↔ (x, y) = (j, i)·sampling_A.

    The origin is the scan origin (a Sr column); the pore, if any, is that of ``params``.
    """
    ny, nx = (int(v) for v in shape_yx)
    return _potential(params, np.arange(ny) * sampling_A, np.arange(nx) * sampling_A)


def _fft_size(target: float, minimum: int) -> int:
    """Even 2^a·3^b·5^c ≥ ``minimum`` nearest to ``target``."""
    smooth = sorted(2**a * 3**b * 5**c for a in range(1, 16) for b in range(10) for c in range(7))
    cands = [n for n in smooth if minimum <= n <= 2 * max(minimum, target) + 16]
    return min(cands, key=lambda n: (abs(n - target), n))


class _Optics:
    """Grid, probe and detector mapping shared by all patterns of one simulation."""

    def __init__(self, p: SimulationParams) -> None:
        self.lam = wavelength_A(p.energy_keV)
        self.sigma = interaction_parameter(p.energy_keV)
        alpha = p.convergence_mrad * 1e-3
        dy, dx = p.detector_shape
        window0 = self.lam * min(dy, dx) / (4 * alpha)  # field of view: 2α across half the detector
        n_min = _OVERSAMPLE * max(dy, dx)  # grid Nyquist angle ≥ twice the detector half-width
        s_max = window0 / n_min
        if p.step_A >= s_max:  # grid pixel s = step/m: probe positions are whole pixels
            self.m, self.q = math.ceil(p.step_A / s_max - 1e-9), 1
            self.s = p.step_A / self.m
        else:  # s = q·step: q sub-pixel probe shifts per axis
            self.m, self.q = 1, max(1, int(s_max / p.step_A))
            self.s = p.step_A * self.q
        self.rotated = bool(p.flip) or p.rotation_deg % 360 != 0
        crop = 2 * math.ceil(math.hypot(dy, dx) / 2) + 4 if self.rotated else 0
        self.n = n = _fft_size(window0 / self.s, max(n_min, crop))
        self.pixel_rad = self.lam / (n * self.s)
        self.center_yx = (float(dy // 2), float(dx // 2))
        self.cy, self.cx = (crop, crop) if self.rotated else (dy, dx)
        ky, kx = np.meshgrid(np.fft.fftfreq(n, self.s), np.fft.fftfreq(n, self.s), indexing="ij")
        theta = self.lam * np.hypot(kx, ky)
        phi = np.arctan2(ky, kx)
        aperture = np.clip((alpha - theta) / self.pixel_rad + 0.5, 0.0, 1.0)  # one-pixel soft edge
        chi = 2 * np.pi / self.lam * 0.5 * theta**2 * (
            -p.defocus_A + p.astigmatism_A * np.cos(2 * (phi - math.radians(p.astigmatism_angle_deg))))
        pk = aperture * np.exp(-1j * chi)
        # A phase ramp shifts the kept frequencies −c//2 … c−c//2−1 to FFT indices 0 … c−1.
        u = 2j * np.pi * np.arange(n) / n
        ramp = np.outer(np.exp(u * (self.cy // 2)), np.exp(u * (self.cx // 2)))
        shifts = (n // 2 + np.arange(self.q) / self.q) * self.s
        self.probes = np.empty((self.q, self.q, n, n), complex)
        for fy in range(self.q):
            for fx in range(self.q):
                w = np.fft.ifft2(pk * np.exp(-2j * np.pi * (ky * shifts[fy] + kx * shifts[fx])))
                self.probes[fy, fx] = w / np.sqrt(np.sum(np.abs(w) ** 2)) * ramp
        if self.rotated:
            self._rotation_map(p)
        self.dtype = np.float32
        if p.dose_e_per_probe:  # a specimen focuses at most some tens × the vacuum peak into a pixel
            peak = p.dose_e_per_probe * min(1.0, 50 * float(np.max(aperture**2) / np.sum(aperture**2)))
            self.dtype = np.uint16 if peak + 10 * math.sqrt(peak) + 10 < 65535 else np.uint32

    def _rotation_map(self, p: SimulationParams) -> None:
        """Bilinear weights: detector pixel k_d shows the true pattern at R(θ)·F·k_d."""
        dy, dx = p.detector_shape
        yy, xx = np.meshgrid(np.arange(dy) - dy // 2, np.arange(dx) - dx // 2, indexing="ij")
        xs, ys = DetectorGeometry(rotation_deg=p.rotation_deg, flip=p.flip).transform().apply(xx, yy)
        xs, ys = np.round(xs, 9) + self.cx // 2, np.round(ys, 9) + self.cy // 2
        x0, y0 = np.floor(xs).astype(int), np.floor(ys).astype(int)
        wx, wy = xs - x0, ys - y0  # bilinear weights of the four neighbours
        corners = ((0, 0), (0, 1), (1, 0), (1, 1))
        gather = np.stack([(y0 + a) * self.cx + (x0 + b) for a, b in corners], -1)
        self.gather = np.clip(gather, 0, self.cy * self.cx - 1).reshape(-1, 4)
        self.weights = np.stack([(wy if a else 1 - wy) * (wx if b else 1 - wx) for a, b in corners],
                                -1).reshape(-1, 4)

    def patterns(self, windows: np.ndarray, probes: np.ndarray, det_shape) -> np.ndarray:
        """|FFT(probe × transmission)|², only the kept frequencies, optical axis at det//2."""
        f = np.fft.fft(windows * probes, axis=2)[:, :, :self.cx]  # pruned 2D FFT
        f = np.fft.fft(f, axis=1)[:, :self.cy, :]
        out = (f.real**2 + f.imag**2) / self.n**2
        if self.rotated:
            flat = out.reshape(len(out), -1)
            out = np.einsum("kpc,pc->kp", flat[:, self.gather], self.weights).reshape(-1, *det_shape)
        return out.astype(np.float32)


def detector_calibration(params: SimulationParams) -> tuple[float, tuple[float, float]]:
    """Detector pixel size (mrad) and optical-axis index (row, col) that `simulate` uses."""
    optics = _Optics(params)
    return optics.pixel_rad * 1e3, optics.center_yx


def simulation_hints(params: SimulationParams) -> dict:
    """The calibration a simulation carries (`ricom.sources.base.Source.hints` keys)."""
    pixel_size_mrad, center_yx = detector_calibration(params)
    return {"step_A": params.step_A, "pixel_size_mrad": pixel_size_mrad, "energy_keV": params.energy_keV,
            "center_yx": tuple(center_yx)}


def simulate_chunks(params: SimulationParams, rows_per_chunk: int = 4,
                    _optics: _Optics | None = None, start_row: int = 0) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield ``(frames (k, det_y, det_x), flat positions (k,) int64)`` band of rows by band.

    Only the transmission function of the current band is held in memory, so scans of
    any size stream.  Noise (if any) is drawn from one generator in scan order, so the
    concatenated chunks equal `simulate` for the same parameters.  ``start_row`` begins
    the scan part-way down (a live simulation whose parameters change mid-scan); the
    noise then differs from `simulate`'s.
    """
    p, optics = params, _optics or _Optics(params)
    sy, sx = p.scan_shape
    n, m, q, s = optics.n, optics.m, optics.q, optics.s
    rng = np.random.default_rng(p.seed)
    ix = np.arange(sx)
    x0, fx = (ix * m) // q, (ix * m) % q
    grid_x = (np.arange(x0[-1] + n) - n // 2) * s
    batch, ar = max(1, 2**21 // (n * n)), np.arange(n)
    band_rows = max(1, int(rows_per_chunk))
    if not 0 <= int(start_row) < sy:
        raise SettingsError(f"start_row must lie in 0…{sy - 1}, got {start_row}")
    for r0 in range(int(start_row), sy, band_rows):
        rows = np.arange(r0, min(sy, r0 + band_rows))
        y0, fy = (rows * m) // q, (rows * m) % q
        grid_y = (np.arange(y0[0], y0[-1] + n) - n // 2) * s
        trans = np.exp(1j * optics.sigma * _potential(p, grid_y, grid_x))
        frames = np.empty((len(rows), sx, *p.detector_shape), np.float32)
        for i in range(len(rows)):
            band = trans[y0[i] - y0[0]:y0[i] - y0[0] + n]
            for b0 in range(0, sx, batch):
                sl = slice(b0, min(sx, b0 + batch))
                if q == 1:  # windows m pixels apart: a strided view, no copy
                    windows = as_strided(band[:, x0[sl.start]:], (sl.stop - sl.start, n, n),
                                         (band.strides[1] * m, *band.strides), writeable=False)
                else:
                    windows = band[:, x0[sl, None] + ar].transpose(1, 0, 2)
                probes = optics.probes[0, 0] if q == 1 else optics.probes[fy[i], fx[sl]]
                frames[i, sl] = optics.patterns(windows, probes, p.detector_shape)
        frames = frames.reshape(-1, *p.detector_shape)
        if p.dose_e_per_probe:
            counts = rng.poisson(p.dose_e_per_probe * np.maximum(frames, 0))
            frames = np.minimum(counts, np.iinfo(optics.dtype).max).astype(optics.dtype)
        positions = (rows[:, None] * sx + ix[None, :]).ravel().astype(np.int64)
        yield frames, positions


def simulate(params: SimulationParams = SimulationParams(), progress=False) -> SimulatedData:
    """Simulate a whole 4D data set.

    Parameters
    ----------
    params : SimulationParams
        Specimen, optics, detector and noise.
    progress : bool or ricom.core.progress.Progress
        True shows progress (a bar on a terminal, lines when piped); a `Progress` is
        told of every simulated pattern.

    Returns
    -------
    SimulatedData
        ``data`` is float32 (fraction of the beam per pixel) without dose, else counts.
    """
    optics = _Optics(params)
    sy, sx = params.scan_shape
    data = np.empty((sy * sx, *params.detector_shape), optics.dtype)
    chunks = simulate_chunks(params, 4, _optics=optics)
    tick = Progress("simulate", sy * sx) if progress is True else progress or None
    try:
        for frames, positions in chunks:
            data[positions] = frames
            if tick is not None:
                tick.update(len(positions))
    finally:
        if progress is True:
            tick.close()
    potential = projected_potential(params, params.scan_shape, params.step_A).astype(np.float32)
    return SimulatedData(data.reshape(sy, sx, *params.detector_shape), potential, params,
                         optics.pixel_rad * 1e3, optics.center_yx)


def frame_stack(data, scan_shape=None, who: str = "the simulator") -> tuple[np.ndarray, tuple[int, int] | None]:
    """Integer frames ``(n, rows, cols)`` a detector simulator serves, and the scan shape
    (given, or that of a 4D array); a one-line error for anything else.

    Examples
    --------
    >>> frames, scan = frame_stack(np.zeros((2, 3, 4, 4), np.uint16))
    >>> frames.shape, scan
    ((6, 4, 4), (2, 3))
    """
    frames = np.asarray(data)
    if frames.ndim == 4:
        scan_shape = scan_shape or frames.shape[:2]
        frames = frames.reshape(-1, *frames.shape[2:])
    if frames.ndim != 3 or frames.dtype.kind not in "uib" or len(frames) == 0:
        raise SettingsError(f"{who} serves integer (n, rows, cols) frames, got {frames.dtype} {frames.shape}")
    return frames, (tuple(int(v) for v in scan_shape) if scan_shape is not None else None)

