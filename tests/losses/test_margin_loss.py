import keras
import numpy as np
import pytest
from keras import ops

from keras_parcaps.losses import MarginLoss, margin_loss


def numpy_margin_loss(y, lengths, m_plus=0.9, m_minus=0.1, lam=0.5):
    present = y * np.maximum(0, m_plus - lengths) ** 2
    absent = lam * (1 - y) * np.maximum(0, lengths - m_minus) ** 2
    return (present + absent).sum(-1)


def test_matches_numpy(rng):
    y = keras.utils.to_categorical(rng.integers(0, 6, size=8), 6)
    lengths = rng.uniform(0, 1, size=(8, 6)).astype("float32")
    np.testing.assert_allclose(
        ops.convert_to_numpy(margin_loss(y, lengths)),
        numpy_margin_loss(y, lengths),
        rtol=1e-5,
    )
    np.testing.assert_allclose(
        float(MarginLoss()(y, lengths)), numpy_margin_loss(y, lengths).mean(), rtol=1e-5
    )


def test_hand_computed_value():
    # Present class at 0.5: (0.9 - 0.5)^2 = 0.16; absent at 0.3: 0.5 * 0.2^2 = 0.02.
    assert float(MarginLoss()(np.array([[1.0, 0.0]]), np.array([[0.5, 0.3]]))) == (
        pytest.approx(0.18)
    )
    # Perfect scores cost nothing.
    assert float(MarginLoss()(np.array([[0.0, 1.0]]), np.array([[0.05, 0.95]]))) == 0


def test_integer_labels_equal_one_hot(rng):
    labels = rng.integers(0, 5, size=6)
    lengths = rng.uniform(size=(6, 5)).astype("float32")
    np.testing.assert_allclose(
        float(MarginLoss()(labels, lengths)),
        float(MarginLoss()(keras.utils.to_categorical(labels, 5), lengths)),
        rtol=1e-6,
    )


def test_config_round_trip():
    loss = MarginLoss(m_plus=0.95, m_minus=0.05, down_weight=0.25)
    clone = MarginLoss.from_config(loss.get_config())
    assert clone.get_config() == loss.get_config()
    assert keras.losses.deserialize(keras.losses.serialize(loss)).m_plus == 0.95


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"m_plus": 0.1, "m_minus": 0.9}, "m_plus=0.1, m_minus=0.9"),
        ({"down_weight": -1.0}, "down_weight=-1.0"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        MarginLoss(**kwargs)
