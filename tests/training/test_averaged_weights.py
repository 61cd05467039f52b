import keras
import numpy as np
import pytest

from keras_parcaps.models import compile_model
from keras_parcaps.training import averaged_weights
from tests.moving_average import numpy_moving_average


def _data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(4, 3)).astype("float32")
    return x, rng.normal(size=(4, 2)).astype("float32")


def _model(optimizer="auto"):
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    return compile_model(model, optimizer, loss="mse", metrics=[])


def _weights(model):
    return [keras.ops.convert_to_numpy(v) for v in model.trainable_variables]


def _steps(model, count):
    """`count` training steps; the training weights after each (numpy)."""
    x, y = _data()
    steps = []
    for _ in range(count):
        model.train_on_batch(x, y)
        steps.append(_weights(model))
    return steps


@pytest.mark.parametrize("policy", ["float32", "mixed_float16"])
def test_block_sees_the_average_and_training_goes_on_from_the_last_weights(policy):
    keras.config.set_dtype_policy(policy)
    try:
        model = _model()
    finally:
        keras.config.set_dtype_policy("float32")
    scaled = isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
    assert scaled == (policy == "mixed_float16")
    steps = _steps(model, 5)
    with averaged_weights(model) as inside:
        assert inside is model
        for got, want in zip(_weights(model), numpy_moving_average(steps)):
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
        assert not np.allclose(_weights(model)[0], steps[-1][0])
    for got, want in zip(_weights(model), steps[-1]):
        np.testing.assert_array_equal(got, want)
    # The average keeps going from where it was.
    steps += _steps(model, 2)
    with averaged_weights(model):
        for got, want in zip(_weights(model), numpy_moving_average(steps)):
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_weights_come_back_when_the_block_raises():
    model = _model()
    steps = _steps(model, 3)
    with pytest.raises(RuntimeError, match="inside"):
        with averaged_weights(model):
            raise RuntimeError("inside")
    for got, want in zip(_weights(model), steps[-1]):
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("steps", [0, 2])
def test_without_an_average_the_block_sees_the_weights_as_they_are(steps):
    model = _model("nadam")
    _steps(model, steps)
    before = _weights(model)
    with averaged_weights(model):
        for got, want in zip(_weights(model), before):
            np.testing.assert_array_equal(got, want)
    # Before the first step the averaging optimizer has no average yet.
    fresh = _model()
    before = _weights(fresh)
    with averaged_weights(fresh):
        for got, want in zip(_weights(fresh), before):
            np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("optimizer", ["auto", "keras"])
def test_predict_inside_the_block_during_fit(optimizer):
    # What a callback that scores the average every epoch does. On JAX
    # `predict` donates the weights' arrays; the block must not leave them
    # shared with the optimizer's average, or the next epoch fails.
    if optimizer == "keras":
        optimizer = keras.optimizers.Adam(1e-2, use_ema=True)
    model = _model(optimizer)
    x, y = _data()
    scores = []

    class Score(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            with averaged_weights(self.model):
                scores.append(self.model.predict(x, verbose=0))

    model.fit(x, y, batch_size=2, epochs=3, verbose=0, callbacks=[Score()])
    assert len(scores) == 3
    # `fit` ends with the average in the model: what the last block saw.
    np.testing.assert_allclose(model.predict(x, verbose=0), scores[-1], rtol=1e-5)
