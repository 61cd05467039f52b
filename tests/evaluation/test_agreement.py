import keras
import numpy as np
import pytest

from keras_parcaps.evaluation import agreement, predict_orientations


def _numpy_agreement(classes):
    return np.mean([len(set(classes[:, i])) == 1 for i in range(classes.shape[1])])


def test_agreement_against_numpy(rng):
    classes = rng.integers(0, 2, (8, 40))
    classes[:, :10] = 1
    assert np.isclose(agreement(classes), _numpy_agreement(classes))
    scores = np.eye(3)[classes]
    assert agreement(scores) == agreement(classes)
    with pytest.raises(ValueError, match="orientations"):
        agreement(np.zeros(3))


def test_invariant_model_agrees_fully_and_other_does_not(rng):
    # Zero-mean float images go to the model as they are.
    images = rng.normal(size=(24, 8, 8, 3)).astype("float32")
    # Global average pooling ignores where pixels are: invariant by design.
    invariant = keras.Sequential(
        [
            keras.Input((8, 8, 3)),
            keras.layers.Conv2D(4, 1, activation="relu"),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(3),
        ]
    )
    # A dense layer on the flattened image sees the orientation.
    sensitive = keras.Sequential(
        [
            keras.Input((8, 8, 3)),
            keras.layers.Flatten(),
            keras.layers.Dense(3),
        ]
    )
    views = predict_orientations(invariant, images)
    assert views.shape == (8, 24, 3)
    assert np.allclose(views, views[:1], atol=1e-5)
    assert agreement(views) == 1.0
    assert agreement(predict_orientations(sensitive, images)) < 0.5
