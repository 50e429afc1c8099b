"""Slow, plain-NumPy reference implementations of the contract's formulas (for tests only).

Written straight from ../shared/CONTRACT.md, independently of the engine's code paths.
"""
from __future__ import annotations

import math

import numpy as np


def com_maps(data, center_yx, pixel_size=1.0):
    """COM_x = Σ I·(x − cx) / Σ I per pattern (0 for empty patterns), times pixel size."""
    data = np.asarray(data, np.float64)
    sy, sx, ny, nx = data.shape
    out_x = np.zeros((sy, sx))
    out_y = np.zeros((sy, sx))
    for iy in range(sy):
        for ix in range(sx):
            p = data[iy, ix]
            t = p.sum()
            if t > 0:
                out_x[iy, ix] = (p.sum(axis=0) * (np.arange(nx) - center_yx[1])).sum() / t * pixel_size
                out_y[iy, ix] = (p.sum(axis=1) * (np.arange(ny) - center_yx[0])).sum() / t * pixel_size
    return out_x, out_y


def rotate(cx, cy, rotation_deg=0.0, flip=False):
    """Flip detector x, then turn by θ from +x towards +y."""
    if flip:
        cx = -cx
    t = math.radians(rotation_deg)
    return cx * math.cos(t) - cy * math.sin(t), cx * math.sin(t) + cy * math.cos(t)


def ricom(cx, cy, n, h=1.0):
    """riCOM(r) = −(h²/2π) Σ_d COM(r + d)·d/|d|², d over the n×n square, zero outside."""
    sy, sx = cx.shape
    r = n // 2
    out = np.zeros((sy, sx))
    for iy in range(sy):
        for ix in range(sx):
            acc = 0.0
            for j in range(-r, r + 1):
                for i in range(-r, r + 1):
                    if i == 0 and j == 0:
                        continue
                    y, x = iy + j, ix + i
                    if 0 <= y < sy and 0 <= x < sx:
                        dx, dy = i * h, j * h
                        acc += (cx[y, x] * dx + cy[y, x] * dy) / (dx * dx + dy * dy)
            out[iy, ix] = -acc * h * h / (2 * math.pi)
    return out


def icom(cx, cy, h=1.0):
    ny, nx = cx.shape
    kx = np.fft.fftfreq(nx, h)[None, :]
    ky = np.fft.fftfreq(ny, h)[:, None]
    k2 = kx ** 2 + ky ** 2
    k2[0, 0] = 1.0
    f = -1j * (kx * np.fft.fft2(cx) + ky * np.fft.fft2(cy)) / (2 * np.pi * k2)
    f[0, 0] = 0.0
    return np.real(np.fft.ifft2(f))


def annulus_sum(data, center_yx, r_in, r_out):
    ny, nx = data.shape[-2:]
    yy, xx = np.indices((ny, nx))
    r = np.hypot(yy - center_yx[0], xx - center_yx[1])
    m = (r >= r_in) & (r < r_out)
    return (np.asarray(data, np.float64) * m).sum(axis=(-2, -1))


def pearson(a, b):
    a = np.ravel(a) - np.mean(a)
    b = np.ravel(b) - np.mean(b)
    return float((a * b).sum() / np.sqrt((a * a).sum() * (b * b).sum()))


def shifted_spot_patterns(field_x, field_y, det=(24, 24), center=(11.5, 11.5), sigma=1.5, amp=1000.0):
    """Patterns: a Gaussian spot displaced by (field_x, field_y) pixels from the centre."""
    ny, nx = det
    yy, xx = np.indices(det, dtype=np.float64)
    sy, sx = field_x.shape
    out = np.empty((sy, sx, ny, nx))
    for iy in range(sy):
        for ix in range(sx):
            out[iy, ix] = amp * np.exp(-((xx - center[1] - field_x[iy, ix]) ** 2
                                         + (yy - center[0] - field_y[iy, ix]) ** 2) / (2 * sigma ** 2))
    return out
