"""The display contrast (`ricom.io.contrast.percentile_levels`) against plain NumPy."""
from __future__ import annotations

import numpy as np
import pytest

from ricom.io.contrast import percentile_levels


@pytest.fixture
def image():
    rng = np.random.default_rng(7)
    img = rng.normal(3.0, 2.0, (300, 400))
    img[rng.random(img.shape) < 0.01] = np.nan
    img[0, :5] = np.inf
    img[1, :5] = -np.inf
    return img


@pytest.mark.parametrize(("low", "high"), [(0.5, 99.5), (0.0, 100.0), (10.0, 60.0)])
def test_percentiles_of_the_finite_values(image, low, high):
    expected = np.percentile(image[np.isfinite(image)], [low, high])
    assert percentile_levels(image, low, high) == (expected[0], expected[1])


def test_symmetric(image):
    lo, hi = np.percentile(image[np.isfinite(image)], [0.5, 99.5])
    m = max(abs(lo), abs(hi))
    assert percentile_levels(image, symmetric=True) == (-m, m)


def test_subsampled(image):
    flat = image.ravel()[:: image.size // 1000]
    expected = np.percentile(flat[np.isfinite(flat)], [1.0, 99.0])
    assert percentile_levels(image, 1.0, 99.0, max_samples=1000) == (expected[0], expected[1])
    assert percentile_levels(image, 1.0, 99.0, max_samples=image.size) == percentile_levels(image, 1.0, 99.0)


def test_in_the_image_dtype(image):
    img = image.astype(np.float32)
    expected = np.percentile(img[np.isfinite(img)], [0.5, 99.5])
    assert percentile_levels(img) == (float(expected[0]), float(expected[1]))


def test_constant_and_empty_images():
    assert percentile_levels(np.full((4, 4), 5.0)) == (5.0, 6.0)
    assert percentile_levels(np.full((4, 4), 5.0), flat_relative=1e-6) == (5.0, 5.0 + 5e-6)
    assert percentile_levels(np.zeros((4, 4)), flat_relative=1e-6) == (0.0, 1.0)
    assert percentile_levels(np.full((4, 4), np.nan)) == (0.0, 1.0)
    assert percentile_levels(np.zeros(0)) == (0.0, 1.0)
