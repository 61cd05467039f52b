import time

import keras
import numpy as np
import pytest
from PIL import Image
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

import keras_parcaps as kp
from tests.markers import on_backend


def test_default_network():
    model = kp.models.build_em_capsnet()
    # conv1 5*5*32 + 32; PrimaryCaps 32*(32*16) + 512 + 32*32 + 32; two
    # EMConvCaps 9*32*32*16 + 64 each; EMClassCaps 32*10*16 + 20.
    assert model.count_params() == 832 + 17952 + 2 * 147520 + 5140
    shapes = [tuple(layer.output.shape) for layer in model.layers[1:6]]
    assert shapes == [
        (None, 12, 12, 32),
        (None, 12, 12, 32, 17),
        (None, 5, 5, 32, 17),
        (None, 3, 3, 32, 17),
        (None, 10, 17),
    ]
    assert tuple(model.output.shape) == (None, 10)
    assert model.get_layer("class_caps").coordinate_addition
    assert isinstance(model.loss, kp.losses.SpreadLoss)


def test_small_network_predicts_activations(rng):
    model = kp.models.build_em_capsnet(
        input_shape=(17, 17, 1),
        num_classes=3,
        A=4,
        B=2,
        C=2,
        D=2,
        capsule_size=9,
        routing_iterations=2,
    )
    scores = model.predict(rng.uniform(size=(2, 17, 17, 1)), verbose=0)
    assert scores.shape == (2, 3)
    assert np.all((scores >= 0) & (scores <= 1))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"capsule_size": 15}, "perfect square"),
        ({"input_shape": (16, 16, 1)}, "input_shape"),
        ({"A": 0}, "A"),
        ({"num_classes": 0}, "num_classes"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        kp.models.build_em_capsnet(**kwargs)


def _digits(size):
    digits = load_digits()
    images = np.stack(
        [
            np.asarray(
                Image.fromarray(image.astype("float32") / 16.0).resize(
                    (size, size), Image.BILINEAR
                )
            )
            for image in digits.images
        ]
    )[..., None]
    return train_test_split(
        images, digits.target, test_size=0.25, random_state=0, stratify=digits.target
    )


@pytest.mark.slow
# One thread each, 2026-12-01: 51 s on PyTorch, 66 s on TensorFlow, 77 s on
# JAX (which had carried it; the JAX suite is the longest).
@on_backend("torch", "it trains this network fastest")
def test_learns_digits():
    """scikit-learn's digits, upsampled to 20x20: >= 90% test accuracy."""
    start = time.time()
    x_train, x_test, y_train, y_test = _digits(20)
    model = kp.models.build_em_capsnet(
        input_shape=(20, 20, 1),
        A=16,
        B=8,
        C=8,
        D=8,
        routing_iterations=2,
        learning_rate=3e-3,
    )
    history = model.fit(
        x_train,
        keras.utils.to_categorical(y_train, 10),
        batch_size=16,
        epochs=3,
        verbose=0,
        callbacks=[kp.callbacks.SpreadMarginSchedule(ramp_length=3)],
    )
    margins = history.history["spread_margin"]
    assert margins[0] == pytest.approx(0.2) and margins[-1] > margins[0]
    scores = model.predict(x_test, verbose=0)
    accuracy = float(np.mean(np.argmax(scores, -1) == y_test))
    assert accuracy >= 0.9, (accuracy, history.history)
    print(f"digits test accuracy {accuracy:.3f} in {time.time() - start:.0f} s")
