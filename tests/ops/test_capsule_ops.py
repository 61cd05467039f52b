import keras
import numpy as np
import pytest
from keras import ops

from keras_parcaps.ops import safe_norm, squash
from tests.backend_utils import gradients


def numpy_squash(s, axis=-1):
    norm2 = np.sum(s**2, axis=axis, keepdims=True)
    norm = np.sqrt(norm2)
    return np.where(norm > 0, norm2 / (1 + norm2) * s / np.maximum(norm, 1e-30), 0.0)


@pytest.mark.parametrize("axis", [-1, 1, 0])
def test_squash_matches_numpy(rng, axis):
    s = rng.normal(size=(4, 5, 6)) * rng.uniform(0.01, 10, size=(4, 5, 6))
    got = ops.convert_to_numpy(squash(s.astype("float32"), axis=axis))
    np.testing.assert_allclose(got, numpy_squash(s, axis=axis), rtol=1e-4, atol=1e-6)


def test_squash_keeps_direction_and_bounds_length(rng):
    s = rng.normal(size=(100, 8)).astype("float32") * 5
    v = ops.convert_to_numpy(squash(s))
    norms = np.linalg.norm(v, axis=-1)
    assert np.all(norms < 1)
    cosine = np.sum(v * s, -1) / (norms * np.linalg.norm(s, axis=-1))
    np.testing.assert_allclose(cosine, 1.0, atol=1e-5)
    # |v| = |s|^2 / (1 + |s|^2)
    s_norm = np.linalg.norm(s, axis=-1)
    np.testing.assert_allclose(norms, s_norm**2 / (1 + s_norm**2), rtol=1e-5)


def test_squash_is_safe_at_zero_and_huge():
    x = np.zeros((2, 3, 4), "float32")
    assert np.all(ops.convert_to_numpy(squash(x)) == 0)
    huge = np.full((2, 4), 1e18, "float32")
    np.testing.assert_allclose(
        np.linalg.norm(ops.convert_to_numpy(squash(huge)), axis=-1), 1.0, rtol=1e-5
    )
    dense = keras.Sequential(
        [keras.Input((4,)), keras.layers.Dense(4), keras.layers.Lambda(squash)]
    )
    grads = gradients(dense, np.zeros((2, 4), "float32"), ops.sum)
    assert all(np.all(np.isfinite(g)) for g in grads)


def test_safe_norm(rng):
    x = rng.normal(size=(3, 7)).astype("float32")
    np.testing.assert_allclose(
        ops.convert_to_numpy(safe_norm(x, epsilon=0.0)),
        np.linalg.norm(x, axis=-1),
        rtol=1e-5,
    )
    assert ops.convert_to_numpy(safe_norm(x, axis=0, keepdims=True)).shape == (1, 7)
    assert np.isclose(float(safe_norm(np.zeros(4, "float32"), epsilon=1e-6)), 1e-3)
