"""Kernel construction, band-pass centring, frequency response and correlation."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

import reference as ref
from ricom.core.params import KernelSettings
from ricom.engine.kernels import band_pass, base_kernel, filtered_kernel, frequency_response
from ricom.engine.ricom_update import correlate, correlation_kernels


def test_base_kernel_is_d_over_d_squared():
    kx, ky = base_kernel(7)
    for j in range(-3, 4):
        for i in range(-3, 4):
            d2 = i * i + j * j
            assert kx[j + 3, i + 3] == (i / d2 if d2 else 0.0)
            assert ky[j + 3, i + 3] == (j / d2 if d2 else 0.0)


def slow_band_pass(kernel, k_min, k_max, grid):
    """Direct DFT with centred coordinates: K_f(d) = (1/G²) Σ_k M(k) Σ_d' K(d') e^{2πi k·(d − d')/G}."""
    n = kernel.shape[0]
    r = n // 2
    offs = np.arange(-r, r + 1)
    freqs = np.arange(grid)
    freqs = np.where(freqs > grid // 2, freqs - grid, freqs)
    fy, fx = np.meshgrid(freqs, freqs, indexing="ij")
    mask = (np.hypot(fx / grid, fy / grid) >= k_min) & (np.hypot(fx / grid, fy / grid) <= k_max)
    out = np.zeros((n, n))
    for a, dy in enumerate(offs):
        for b, dx in enumerate(offs):
            acc = 0.0
            for c, ey in enumerate(offs):
                for e, ex in enumerate(offs):
                    if kernel[c, e] == 0:
                        continue
                    phase = np.exp(2j * np.pi * (fx * (dx - ex) + fy * (dy - ey)) / grid)
                    acc += kernel[c, e] * (phase * mask).sum()
            out[a, b] = acc.real / grid ** 2
    return out


def test_band_pass_is_centred_like_the_direct_dft():
    kx, _ = base_kernel(5)
    np.testing.assert_allclose(band_pass(kx, 0.08, 0.3, grid=11), slow_band_pass(kx, 0.08, 0.3, 11), atol=1e-12)


def test_band_pass_keeps_odd_symmetry_and_all_pass_is_identity():
    kx, ky = base_kernel(15)
    fx = band_pass(kx, 0.05, 0.25)
    np.testing.assert_allclose(fx, -fx[::-1, ::-1], atol=1e-14)
    np.testing.assert_allclose(fx[:, 7], 0.0, atol=1e-14)  # K_x is zero on the x = 0 column
    np.testing.assert_allclose(band_pass(ky, 0.0, 1.0), ky, atol=1e-14)


def test_band_pass_removes_frequencies_outside_the_band():
    kx, _ = base_kernel(31)
    g = 63
    f = band_pass(kx, 0.1, 0.2, grid=g)
    big = np.zeros((g, g))
    big[16:47, 16:47] = f
    spec = np.abs(np.fft.fft2(np.fft.ifftshift(big)))
    k = np.hypot(*np.meshgrid(np.fft.fftfreq(g), np.fft.fftfreq(g)))
    inside = spec[(k >= 0.12) & (k <= 0.18)].mean()
    outside = spec[(k < 0.05) | (k > 0.3)].mean()
    assert outside < 0.2 * inside


def test_frequency_response_follows_the_line_integration_approximation():
    for n in (11, 61):
        spec = frequency_response(KernelSettings(n), 512)
        resp, approx = np.array(spec["response"]), np.array(spec["approximation"])
        assert abs(int(np.argmax(resp)) - int(np.argmax(approx))) <= 3
        assert ref.pearson(resp[1:], approx[1:]) > 0.9
        assert spec["k"][1] == pytest.approx(1 / 512)


def test_smaller_kernels_peak_at_higher_frequency():
    peaks = [np.argmax(frequency_response(KernelSettings(n), 256)["response"]) for n in (61, 21, 7)]
    assert peaks[0] < peaks[1] < peaks[2]


def test_band_pass_suppresses_both_ends_of_the_response():
    plain = np.array(frequency_response(KernelSettings(61), 256)["response"])
    bp = np.array(frequency_response(KernelSettings(61, (0.05, 0.25)), 256)["response"])
    k = np.arange(len(bp)) / 256
    assert bp[(k > 0) & (k < 0.02)].max() < 0.5 * plain[(k > 0) & (k < 0.02)].max()
    assert bp[k > 0.35].max() < 0.1 * plain[k > 0.35].max()


def test_fft_correlation_equals_direct_sum(rng):
    cx, cy = rng.normal(size=(2, 9, 13))
    for n in (3, 7, 25):
        wx, wy = correlation_kernels(KernelSettings(n), 0.7)
        np.testing.assert_allclose(correlate(cx, cy, wx, wy), ref.ricom(cx, cy, n, 0.7), atol=1e-12)


def test_ricom_of_a_potential_gradient_resembles_the_potential():
    y, x = np.mgrid[0:32, 0:32]
    v = np.exp(-((x - 15.5) ** 2 + (y - 15.5) ** 2) / 8.0)
    gy, gx = np.gradient(v)
    wx, wy = correlation_kernels(KernelSettings(15), 1.0)
    img = correlate(gx, gy, wx, wy)
    assert ref.pearson(img, v) > 0.9
    assert img[15:17, 15:17].mean() > 0  # positive potential stays positive


def test_filtered_kernel_without_band_is_base():
    a = filtered_kernel(KernelSettings(9))
    b = base_kernel(9)
    assert all(np.array_equal(p, q) for p, q in zip(a, b, strict=True))


def test_kernel_cli_writes_json_and_plot(tmp_path):
    from ricom.cli.main import main
    js, png = tmp_path / "s.json", tmp_path / "s.png"
    assert main(["kernel", "--size", "61", "--filter", "0.05", "0.25", "--plot", str(png), "--json", str(js)]) == 0
    spec = json.loads(js.read_text())
    assert set(spec) >= {"k", "response", "approximation"}
    assert len(spec["k"]) == len(spec["response"]) == len(spec["approximation"])
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert math.isclose(max(spec["k"]), 0.5, abs_tol=0.01)
