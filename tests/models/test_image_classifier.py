import warnings

import keras
import numpy as np
import pytest

import keras_parcaps as kp
from keras_parcaps.callbacks import PreciseBatchNorm
from keras_parcaps.data import OnePerClassBatches, synthetic_cells
from keras_parcaps.models import ImageClassifier


def _classifier(input_shape=(2,), outputs=1, **kwargs):
    inputs = keras.Input(input_shape)
    x = keras.layers.BatchNormalization(name="norm")(inputs)
    if len(input_shape) > 1:
        x = keras.layers.GlobalAveragePooling2D()(x)
    model = ImageClassifier(inputs, keras.layers.Dense(outputs)(x), **kwargs)
    model.compile(optimizer=keras.optimizers.Nadam(1e-3, use_ema=True), loss="mse")
    return model


def _moving(model):
    norm = model.get_layer("norm")
    return (
        keras.ops.convert_to_numpy(norm.moving_mean),
        keras.ops.convert_to_numpy(norm.moving_variance),
    )


def _data(rng, rows=40):
    x = rng.normal(3.0, 2.0, (rows, 2)).astype("float32")
    return x, x[:, :1].copy()


def test_fit_ends_with_the_exact_statistics_of_the_training_data(rng):
    x, y = _data(rng)
    model = _classifier()
    # Positional arguments as `keras.Model.fit` takes them: batch_size, epochs.
    model.fit(x, y, 8, 2, 0)
    mean, var = _moving(model)
    # 5 batches of 8: all 40 rows in one pass, not 10 steps of momentum 0.99.
    np.testing.assert_allclose(mean, x.mean(0), rtol=1e-5)
    np.testing.assert_allclose(var, x.var(0), rtol=1e-4)


def test_fit_on_one_per_class_batches(rng):
    data = synthetic_cells(counts=3, image_size=8, seed=0)
    batches = OnePerClassBatches(data, steps_per_epoch=4, seed=0)
    model = _classifier((8, 8, 3), outputs=data.num_classes)
    model.fit(batches, epochs=2, verbose=0)
    images = np.concatenate([batches[i][0] for i in range(len(batches))])
    mean, var = _moving(model)
    np.testing.assert_allclose(mean, images.mean((0, 1, 2)), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(var, images.var((0, 1, 2)), rtol=1e-3)


def test_fit_leaves_out_the_validation_split(rng):
    x, y = _data(rng)
    x[30:] += 100.0  # the rows `fit` validates on
    model = _classifier()
    model.fit(x, y, batch_size=8, validation_split=0.25, verbose=0)
    np.testing.assert_allclose(_moving(model)[0], x[:30].mean(0), rtol=1e-5)


def test_fit_on_a_generator_warns_and_keeps_the_moving_averages(rng):
    x, y = _data(rng, rows=8)

    def batches():
        while True:
            yield x, y

    model = _classifier()
    with pytest.warns(UserWarning, match="cannot read its training data again"):
        model.fit(batches(), steps_per_epoch=2, verbose=0)
    # Two steps at momentum 0.99 from 0: about 2% of the mean.
    np.testing.assert_allclose(_moving(model)[0], 0.0199 * x.mean(0), rtol=0.05)


def test_no_step_when_turned_off_or_given(rng):
    x, y = _data(rng)
    model = _classifier(precise_batch_norm=0)
    model.fit(x, y, batch_size=8, verbose=0)
    assert np.abs(_moving(model)[0]).max() < 0.2 * np.abs(x.mean(0)).min()

    calls = []

    class Counting(PreciseBatchNorm):
        def recalibrate(self):
            calls.append(1)
            super().recalibrate()

    model = _classifier()
    model.fit(x, y, batch_size=8, verbose=0, callbacks=[Counting(x, 8)])
    assert calls == [1]  # the model added none of its own
    np.testing.assert_allclose(_moving(model)[0], x.mean(0), rtol=1e-5)


def test_bad_precise_batch_norm_is_named():
    inputs = keras.Input((2,))
    with pytest.raises(
        ValueError, match="precise_batch_norm.*Received: precise_batch_norm=-1"
    ):
        ImageClassifier(inputs, keras.layers.Dense(1)(inputs), precise_batch_norm=-1)


def test_config_and_saving_keep_the_class_and_its_setting(tmp_path, rng):
    model = _classifier(precise_batch_norm=4, name="cells")
    x, y = _data(rng)
    model.fit(x, y, batch_size=8, verbose=0)
    config = model.get_config()
    assert config["precise_batch_norm"] == 4
    clone = ImageClassifier.from_config(config)
    assert isinstance(clone, ImageClassifier) and clone.precise_batch_norm == 4
    model.save(tmp_path / "cells.keras")
    loaded = keras.saving.load_model(tmp_path / "cells.keras")
    assert isinstance(loaded, ImageClassifier) and loaded.precise_batch_norm == 4
    np.testing.assert_allclose(
        loaded.predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-5, atol=1e-6
    )


def test_the_builders_return_image_classifiers():
    model = kp.models.build_dr(input_shape=(16, 16, 3), num_classes=3)
    assert isinstance(model, ImageClassifier)
    assert model.precise_batch_norm == 32


def test_no_step_and_no_warning_without_batch_normalization(rng):
    x, y = _data(rng, rows=8)
    inputs = keras.Input((2,))
    model = ImageClassifier(inputs, keras.layers.Dense(1)(inputs))
    model.compile(optimizer="sgd", loss="mse")

    def batches():
        while True:
            yield x, y

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.fit(batches(), steps_per_epoch=2, verbose=0)
    assert not [w for w in caught if "cannot read" in str(w.message)]
