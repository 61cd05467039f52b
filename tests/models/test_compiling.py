import keras
import numpy as np

from keras_parcaps.models import compile_model
from keras_parcaps.training import training_callbacks
from tests.moving_average import numpy_moving_average


def _dense_model():
    keras.utils.set_random_seed(0)
    return keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])


class _RawWeights(keras.callbacks.Callback):
    """The training weights after every step, before `fit` averages them."""

    def __init__(self):
        super().__init__()
        self.steps = []

    def on_train_batch_end(self, batch, logs=None):
        self.steps.append(
            [keras.ops.convert_to_numpy(v) for v in self.model.trainable_variables]
        )


def test_fit_leaves_the_moving_average_of_the_weights():
    # `fit` writes Keras's moving average into the model when it ends.
    model = compile_model(_dense_model(), loss="mse", metrics=[])
    rng = np.random.default_rng(0)
    x = rng.normal(size=(12, 3)).astype("float32")
    y = rng.normal(size=(12, 2)).astype("float32")
    raw = _RawWeights()
    model.fit(x, y, batch_size=2, epochs=1, shuffle=False, verbose=0, callbacks=[raw])
    assert len(raw.steps) == 6
    expected = numpy_moving_average(raw.steps)
    for variable, average in zip(model.trainable_variables, expected):
        np.testing.assert_allclose(
            keras.ops.convert_to_numpy(variable), average, rtol=1e-5, atol=1e-6
        )
    assert not np.allclose(
        keras.ops.convert_to_numpy(model.trainable_variables[0]), raw.steps[-1][0]
    )


def test_an_explicit_optimizer_is_kept():
    model = compile_model(_dense_model(), optimizer="nadam", loss="mse", metrics=[])
    assert not model.optimizer.use_ema


def test_validation_measures_the_averaged_weights():
    model = compile_model(_dense_model(), loss="mse", metrics=[])
    swaps = [
        c
        for c in training_callbacks(model)
        if isinstance(c, keras.callbacks.SwapEMAWeights)
    ]
    assert len(swaps) == 1
    plain = compile_model(_dense_model(), optimizer="nadam", loss="mse", metrics=[])
    assert not any(
        isinstance(c, keras.callbacks.SwapEMAWeights) for c in training_callbacks(plain)
    )


def test_validation_measures_the_averaged_weights_under_loss_scaling():
    # mixed_float16 wraps the averaging Nadam in a LossScaleOptimizer.
    keras.config.set_dtype_policy("mixed_float16")
    try:
        model = compile_model(_dense_model(), loss="mse", metrics=[])
    finally:
        keras.config.set_dtype_policy("float32")
    assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
    assert any(
        isinstance(c, keras.callbacks.SwapEMAWeights) for c in training_callbacks(model)
    )


def test_fit_predict_fit_save_with_the_averaging_optimizer(tmp_path):
    # On JAX, `fit` used to leave each weight sharing its array with the
    # optimizer's average; `predict` donates (frees) the weights' arrays, so
    # the next `fit` or `save` failed with "Array has been deleted".
    model = compile_model(_dense_model(), loss="mse", metrics=[])
    rng = np.random.default_rng(0)
    x = rng.normal(size=(8, 3)).astype("float32")
    y = rng.normal(size=(8, 2)).astype("float32")
    model.fit(x, y, batch_size=4, epochs=1, verbose=0)
    model.predict(x, verbose=0)
    model.evaluate(x, y, verbose=0)
    model.fit(x, y, batch_size=4, epochs=1, verbose=0)
    expected = model.predict(x, verbose=0)
    model.save(tmp_path / "model.keras")
    loaded = keras.saving.load_model(tmp_path / "model.keras")
    assert isinstance(loaded.optimizer, keras.optimizers.Nadam)
    assert loaded.optimizer.use_ema
    np.testing.assert_allclose(loaded.predict(x, verbose=0), expected, rtol=1e-6)
    loaded.fit(x, y, batch_size=4, epochs=1, verbose=0)


def test_a_learning_rate_schedule_is_followed_and_saved(tmp_path):
    # The decaying rate under which the capsule networks met issue 12's targets
    # on real cells goes in through `learning_rate`, as in Keras.
    schedule = keras.optimizers.schedules.CosineDecay(1e-3, decay_steps=10)
    model = compile_model(
        _dense_model(), loss="mse", metrics=[], learning_rate=schedule
    )
    rng = np.random.default_rng(0)
    x = rng.normal(size=(12, 3)).astype("float32")
    y = rng.normal(size=(12, 2)).astype("float32")
    model.fit(x, y, batch_size=2, epochs=1, verbose=0)
    expected = 1e-3 * 0.5 * (1 + np.cos(np.pi * 6 / 10))  # after 6 steps
    np.testing.assert_allclose(
        float(model.optimizer.learning_rate), expected, rtol=1e-5
    )
    model.save(tmp_path / "model.keras")
    loaded = keras.saving.load_model(tmp_path / "model.keras")
    assert loaded.optimizer.get_config()["learning_rate"]["class_name"] == "CosineDecay"
    np.testing.assert_allclose(
        float(loaded.optimizer.learning_rate), expected, rtol=1e-5
    )
