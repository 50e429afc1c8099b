"""`Matrix2` and `DetectorGeometry.transform` against independent NumPy computations."""
from __future__ import annotations

import math
import struct

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from ricom import DetectorGeometry, SettingsError
from ricom.core.geometry import Matrix2

ANGLES = [0.0, -0.0, 1e-300, 17.0, -75.0, 90.0, 123.0, 180.0, -180.0, 270.0, 359.9, 45.5, 1e6]


def numpy_rotation(deg: float) -> np.ndarray:
    t = np.deg2rad(deg)
    return np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]])


FLIP_X = np.array([[-1.0, 0.0], [0.0, 1.0]])


def old_matrix(rotation_deg: float, flip: bool) -> tuple[float, float, float, float]:
    """`DetectorGeometry.matrix` as it was written out before `Matrix2`."""
    t = math.radians(rotation_deg)
    c, s = math.cos(t), math.sin(t)
    fx = -1.0 if flip else 1.0
    return (c * fx, -s, s * fx, c)


def bits(values) -> list[bytes]:
    return [struct.pack("<d", v) for v in values]


def assert_close(a: Matrix2, b, atol=1e-12):
    b = b.as_array() if isinstance(b, Matrix2) else b
    np.testing.assert_allclose(a.as_array(), b, rtol=0, atol=atol)


@pytest.mark.parametrize("deg", [-75.0, 0.0, 17.0, 90.0, 123.0, 400.0])
def test_rotation_is_the_numpy_rotation_matrix(deg):
    assert_close(Matrix2.rotation(deg), numpy_rotation(deg), atol=1e-15)


@pytest.mark.parametrize(("deg", "vector", "expected"), [
    (90, (1, 0), (0, 1)),      # +x towards +y: clockwise on screen with row 0 at the top
    (90, (0, 1), (-1, 0)),
    (180, (1, 0), (-1, 0)),
    (-90, (1, 0), (0, -1)),
    (30, (1, 0), (math.sqrt(3) / 2, 0.5)),
])
def test_known_rotations(deg, vector, expected):
    np.testing.assert_allclose(Matrix2.rotation(deg).apply(*vector), expected, atol=1e-15)


def test_constructors():
    assert Matrix2.identity().as_tuple() == (1.0, 0.0, 0.0, 1.0)
    assert Matrix2.flip_x().apply(2.0, 3.0) == (-2.0, 3.0)
    assert Matrix2.scale(0.25).apply(4.0, -8.0) == (1.0, -2.0)
    np.testing.assert_array_equal(Matrix2.flip_x().as_array(), FLIP_X)
    assert Matrix2(1, 2, 3, 4).as_tuple() == (1.0, 2.0, 3.0, 4.0)
    assert all(type(v) is float for v in Matrix2(np.float32(1), 2, 3, 4).as_tuple())


def test_determinants():
    assert Matrix2(1.0, 2.0, 3.0, 4.0).det == -2.0
    assert Matrix2.rotation(33).det == pytest.approx(1.0, abs=1e-15)
    assert Matrix2.flip_x().det == -1.0
    assert Matrix2.scale(3.0).det == 9.0
    assert Matrix2(1.0, 2.0, 3.0, 4.0).det == pytest.approx(np.linalg.det(Matrix2(1, 2, 3, 4).as_array()))


def test_composition_applies_the_right_operand_first():
    # flip then rotate equals rotation @ flip_x, and equals the NumPy product
    r, f = Matrix2.rotation(30), Matrix2.flip_x()
    assert_close(r @ f, numpy_rotation(30) @ FLIP_X, atol=1e-15)
    x, y = np.array([1.0, 0.3, -2.0]), np.array([0.0, 1.5, 0.7])
    np.testing.assert_allclose((r @ f).apply(x, y), r.apply(*f.apply(x, y)), atol=1e-15)
    # and it is not the other order: flip after rotation mirrors the rotated vector
    assert not np.allclose((r @ f).as_array(), (f @ r).as_array())
    np.testing.assert_allclose((r @ f).apply(1.0, 0.0), (-math.cos(math.radians(30)), -0.5), atol=1e-15)


def test_inverse_round_trips():
    a = Matrix2(1.0, 2.0, 3.0, 4.0)
    assert a @ a.inverse() == Matrix2.identity() == a.inverse() @ a
    np.testing.assert_allclose(a.inverse().as_array(), np.linalg.inv(a.as_array()), atol=1e-15)
    assert_close(Matrix2.rotation(40).inverse(), Matrix2.rotation(-40), atol=1e-15)
    assert_close(Matrix2.flip_x().inverse(), Matrix2.flip_x(), atol=0)
    assert Matrix2.scale(4.0).inverse() == Matrix2.scale(0.25)


@pytest.mark.parametrize("singular", [Matrix2.scale(0.0), Matrix2(1.0, 2.0, 2.0, 4.0), Matrix2.scale(1e-200)])
def test_singular_maps_have_no_inverse(singular):
    with pytest.raises(SettingsError, match="no inverse"):
        singular.inverse()


@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_entries_must_be_finite(bad):
    with pytest.raises(SettingsError, match="finite"):
        Matrix2(1.0, bad, 0.0, 1.0)


def test_apply_broadcasts_like_the_numpy_product():
    m = Matrix2(0.3, -1.2, 2.0, 0.7)
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(4, 1)), rng.normal(size=(1, 5))
    xs, ys = m.apply(x, y)
    assert xs.shape == ys.shape == (4, 5)
    stacked = np.stack(np.broadcast_arrays(x, y))                # (2, 4, 5)
    expected = np.einsum("ij,j...->i...", m.as_array(), stacked)
    np.testing.assert_allclose(xs, expected[0], atol=1e-15)
    np.testing.assert_allclose(ys, expected[1], atol=1e-15)
    xs32, _ = m.apply(x.astype(np.float32), y.astype(np.float32))
    assert xs32.dtype == np.float32
    assert isinstance(m.apply(1, 2)[0], float)


def test_matrices_are_frozen_and_hashable():
    m = Matrix2.rotation(10)
    with pytest.raises(AttributeError):
        m.m00 = 0.0
    assert {m: 1}[Matrix2.rotation(10)] == 1


@pytest.mark.parametrize("flip", [False, True])
@pytest.mark.parametrize("deg", ANGLES)
def test_geometry_matrix_is_bit_identical_to_the_old_formula(deg, flip):
    geo = DetectorGeometry(rotation_deg=deg, flip=flip)
    assert bits(geo.matrix()) == bits(old_matrix(deg, flip))
    assert geo.transform().as_tuple() == geo.matrix()


@pytest.mark.parametrize("flip", [False, True])
@pytest.mark.parametrize("deg", [-75.0, 0.0, 17.0, 123.0])
def test_geometry_transform_is_rotation_after_flip(deg, flip):
    expected = numpy_rotation(deg) @ (FLIP_X if flip else np.eye(2))
    geo = DetectorGeometry(rotation_deg=deg, flip=flip)
    assert_close(geo.transform(), expected, atol=1e-15)
    assert_close(geo.transform().inverse() @ geo.transform(), Matrix2.identity(), atol=1e-15)


def test_geometry_conventions_in_words():
    """docs/conventions.md: θ = 90° sends detector +x to scan +y; flip mirrors x first."""
    np.testing.assert_allclose(DetectorGeometry(rotation_deg=90).transform().apply(1.0, 0.0), (0, 1), atol=1e-15)
    np.testing.assert_allclose(DetectorGeometry(flip=True).transform().apply(1.0, 2.0), (-1, 2), atol=0)
    np.testing.assert_allclose(DetectorGeometry(rotation_deg=90, flip=True).transform().apply(1.0, 0.0),
                               (0, -1), atol=1e-15)


angles = st.floats(-720, 720, allow_nan=False)
entries = st.floats(-10, 10, allow_nan=False)


@settings(max_examples=50, deadline=None)
@given(a=st.tuples(entries, entries, entries, entries), x=entries, y=entries)
def test_inverse_undoes_any_regular_map(a, x, y):
    m = Matrix2(*a)
    if m.det == 0:
        with pytest.raises(SettingsError):
            m.inverse()
        return
    cond = float(np.linalg.cond(m.as_array()))
    assume(abs(m.det) > 1e-12 and cond < 1e8)
    tol = 1e-14 * cond
    assert_close(m @ m.inverse(), Matrix2.identity(), atol=tol)
    assert_close(m.inverse() @ m, Matrix2.identity(), atol=tol)
    np.testing.assert_allclose(m.inverse().as_array(), np.linalg.inv(m.as_array()),
                               rtol=0, atol=tol * np.abs(np.linalg.inv(m.as_array())).max())
    back = m.inverse().apply(*m.apply(x, y))
    np.testing.assert_allclose(back, (x, y), rtol=0, atol=tol * max(1.0, abs(x), abs(y)))


@settings(max_examples=50, deadline=None)
@given(a=angles, b=angles, flip=st.booleans(), s=st.floats(0.01, 100), x=entries, y=entries)
def test_composition_matches_numpy_and_sequential_application(a, b, flip, s, x, y):
    f = Matrix2.flip_x() if flip else Matrix2.identity()
    m = Matrix2.scale(s) @ Matrix2.rotation(a) @ f @ Matrix2.rotation(b)
    expected = s * numpy_rotation(a) @ (FLIP_X if flip else np.eye(2)) @ numpy_rotation(b)
    assert_close(m, expected, atol=1e-12 * s)
    step = Matrix2.rotation(b).apply(x, y)
    step = f.apply(*step)
    step = Matrix2.rotation(a).apply(*step)
    step = Matrix2.scale(s).apply(*step)
    np.testing.assert_allclose(m.apply(x, y), step, atol=1e-11 * s * max(1.0, abs(x), abs(y)))
    # rotations compose by adding angles; a flip reverses the one after it
    assert_close(Matrix2.rotation(a) @ Matrix2.rotation(b), Matrix2.rotation(a + b), atol=1e-12)
    assert_close(Matrix2.flip_x() @ Matrix2.rotation(a) @ Matrix2.flip_x(), Matrix2.rotation(-a), atol=1e-12)

