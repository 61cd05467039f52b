import keras
import numpy as np
import pytest
from keras import ops

from keras_parcaps.losses import SpreadLoss, spread_loss


def numpy_spread_loss(y, a, m):
    """sum over wrong classes i of max(0, m - (a_t - a_i))^2, per sample."""
    out = np.zeros(len(a))
    for n in range(len(a)):
        t = int(np.argmax(y[n]))
        for i in range(a.shape[1]):
            if i != t:
                out[n] += max(0.0, m - (a[n, t] - a[n, i])) ** 2
    return out


@pytest.mark.parametrize("margin", [0.0, 0.2, 0.55, 0.9])
def test_matches_numpy(rng, margin):
    a = rng.uniform(size=(6, 5)).astype("float32")
    labels = rng.integers(0, 5, size=6)
    y = np.eye(5, dtype="float32")[labels]
    expected = numpy_spread_loss(y, a, margin)
    np.testing.assert_allclose(
        ops.convert_to_numpy(spread_loss(y, a, margin)), expected, rtol=1e-5, atol=1e-7
    )
    np.testing.assert_allclose(
        ops.convert_to_numpy(spread_loss(labels, a, margin)),
        expected,
        rtol=1e-5,
        atol=1e-7,
    )
    np.testing.assert_allclose(
        float(SpreadLoss(margin)(y, a)), expected.mean(), rtol=1e-5, atol=1e-7
    )


def test_zero_when_target_wins_by_the_margin():
    y = np.array([[0.0, 1.0, 0.0]], "float32")
    a = np.array([[0.05, 0.99, 0.09]], "float32")
    assert float(SpreadLoss(0.9)(y, a)) == 0.0
    assert float(SpreadLoss(0.95)(y, a)) > 0.0


def test_config_round_trip_and_serialization():
    loss = SpreadLoss(margin=0.35)
    clone = SpreadLoss.from_config(loss.get_config())
    assert clone.margin == 0.35
    restored = keras.losses.deserialize(keras.losses.serialize(loss))
    assert isinstance(restored, SpreadLoss) and restored.margin == 0.35


@pytest.mark.parametrize("margin", [-0.1, 1.5, "0.2"])
def test_bad_margin(margin):
    with pytest.raises(ValueError, match="margin"):
        SpreadLoss(margin)
