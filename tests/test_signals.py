"""Derived signals on analytic fields."""
from __future__ import annotations

import numpy as np

from ricom.signals import derived as S


def periodic_field(h=0.5, n=32):
    y, x = np.mgrid[0:n, 0:n] * h
    L = n * h
    v = np.cos(2 * np.pi * x / L) * np.sin(4 * np.pi * y / L)
    gx = -2 * np.pi / L * np.sin(2 * np.pi * x / L) * np.sin(4 * np.pi * y / L)
    gy = 4 * np.pi / L * np.cos(2 * np.pi * x / L) * np.cos(4 * np.pi * y / L)
    return v, gx, gy


def test_icom_integrates_an_analytic_gradient():
    v, gx, gy = periodic_field()
    np.testing.assert_allclose(S.icom(gx, gy, 0.5), v - v.mean(), atol=1e-10)


def test_divergence_of_gradient_is_laplacian_and_curl_zero():
    v, gx, gy = periodic_field(h=0.1, n=128)
    L = 12.8
    lap = -((2 * np.pi / L) ** 2 + (4 * np.pi / L) ** 2) * v
    inner = (slice(2, -2), slice(2, -2))
    np.testing.assert_allclose(S.divergence(gx, gy, 0.1)[inner], lap[inner], atol=0.02 * np.abs(lap).max())
    assert np.abs(S.curl(gx, gy, 0.1)[inner]).max() < 0.02 * np.abs(lap).max()


def test_curl_of_rotation_field():
    y, x = np.mgrid[0:16, 0:16].astype(float)
    c = S.curl(-y, x)  # rigid rotation: curl = 2
    np.testing.assert_allclose(c, 2.0)
    np.testing.assert_allclose(S.divergence(-y, x), 0.0)


def test_field_magnitude_and_direction():
    assert S.field_magnitude(np.array([3.0]), np.array([4.0]))[0] == 5.0
    assert S.field_direction(np.array([0.0]), np.array([1.0]))[0] == np.pi / 2
