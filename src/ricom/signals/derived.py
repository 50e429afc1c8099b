"""Images derived from the COM field: FFT-iCOM, divergence, curl, E-field.

Plain NumPy functions on 2D ``(scan_y, scan_x)`` maps.  COM is in its own unit (mrad or
detector pixels) and ``step`` is the scan step (Å or 1); multiply iCOM by the
calibration's ``potential_scale`` for V·Å, as the engine's snapshot does.
"""
from __future__ import annotations

import numpy as np


def icom(com_x: np.ndarray, com_y: np.ndarray, step: float = 1.0) -> np.ndarray:
    """FFT integration of the COM field (periodic), zero mean.

    ``IFFT[−i (kx F[COM_x] + ky F[COM_y]) / (2π |k|²)]`` with k in cycles per distance
    unit and the k = 0 term set to 0.  For ``COM = ∇V`` it returns ``V − mean(V)``.

    Examples
    --------
    >>> y, x = np.mgrid[0:16, 0:16] * 2 * np.pi / 16
    >>> v = np.cos(x) + np.sin(y)
    >>> gx, gy = -np.sin(x) * 2 * np.pi / 16, np.cos(y) * 2 * np.pi / 16
    >>> bool(np.allclose(icom(gx, gy), v, atol=1e-9))
    True
    """
    ny, nx = com_x.shape
    kx = np.fft.fftfreq(nx, step)[None, :]
    ky = np.fft.fftfreq(ny, step)[:, None]
    k2 = kx * kx + ky * ky
    k2[0, 0] = 1.0
    spec = -1j * (kx * np.fft.fft2(com_x) + ky * np.fft.fft2(com_y)) / (2 * np.pi * k2)
    spec[0, 0] = 0.0
    return np.real(np.fft.ifft2(spec))


def divergence(com_x: np.ndarray, com_y: np.ndarray, step: float = 1.0) -> np.ndarray:
    """∂COM_x/∂x + ∂COM_y/∂y (central differences; negative on atomic columns)."""
    return np.gradient(com_x, step, axis=1) + np.gradient(com_y, step, axis=0)


def curl(com_x: np.ndarray, com_y: np.ndarray, step: float = 1.0) -> np.ndarray:
    """∂COM_y/∂x − ∂COM_x/∂y (zero for a pure potential field, up to noise)."""
    return np.gradient(com_y, step, axis=1) - np.gradient(com_x, step, axis=0)


def field_magnitude(com_x: np.ndarray, com_y: np.ndarray) -> np.ndarray:
    """|COM| in the COM unit."""
    return np.hypot(com_x, com_y)


def field_direction(com_x: np.ndarray, com_y: np.ndarray) -> np.ndarray:
    """Direction of the COM vector in radians, atan2(y, x) in (−π, π]."""
    return np.arctan2(com_y, com_x)
