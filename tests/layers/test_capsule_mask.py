import keras
import numpy as np
from keras import ops

from keras_parcaps.layers import CapsuleMask
from tests.layer_checks import run_layer_checks


def test_layer_checks():
    run_layer_checks(
        CapsuleMask,
        {},
        (None, 4, 3),
        (None, 12),
        expected_num_trainable_weights=0,
        expected_num_non_trainable_weights=0,
    )


def test_masks_all_but_longest(rng):
    caps = rng.normal(size=(5, 4, 3)).astype("float32")
    got = ops.convert_to_numpy(CapsuleMask()(caps)).reshape(5, 4, 3)
    longest = np.argmax(np.linalg.norm(caps, axis=-1), axis=-1)
    expected = np.zeros_like(caps)
    expected[np.arange(5), longest] = caps[np.arange(5), longest]
    np.testing.assert_array_equal(got, expected)


def test_masks_by_integer_or_one_hot_labels(rng):
    caps = rng.normal(size=(3, 4, 2)).astype("float32")
    labels = np.array([2, 0, 3])
    expected = np.zeros_like(caps)
    expected[np.arange(3), labels] = caps[np.arange(3), labels]
    for given in (labels, keras.utils.to_categorical(labels, 4)):
        got = ops.convert_to_numpy(CapsuleMask()(caps, labels=given))
        np.testing.assert_array_equal(got.reshape(3, 4, 2), expected)
