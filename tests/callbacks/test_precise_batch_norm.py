import keras
import numpy as np
import pytest

from keras_parcaps.callbacks import PreciseBatchNorm
from keras_parcaps.training import recalibrate_batch_norm


def _moving(layer):
    return (
        keras.ops.convert_to_numpy(layer.moving_mean),
        keras.ops.convert_to_numpy(layer.moving_variance),
    )


def test_recalibrate_batch_norm_against_numpy(rng):
    inner = keras.Sequential([keras.Input((3,)), keras.layers.BatchNormalization()])
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(3), inner])
    groups = [rng.normal(2.0, 3.0, (8, 3)).astype("float32") for _ in range(4)]
    batches = [(g, np.zeros((8, 1), "float32")) for g in groups]
    count = recalibrate_batch_norm(model, batches, num_batches=4, group=1)
    assert count == 1  # found inside the nested model
    norm = inner.layers[0]
    assert norm.momentum == 0.99  # restored
    features = [keras.ops.convert_to_numpy(model.layers[0](g)) for g in groups]
    mean, var = _moving(norm)
    np.testing.assert_allclose(
        mean, np.mean([f.mean(0) for f in features], 0), atol=1e-4
    )
    np.testing.assert_allclose(var, np.mean([f.var(0) for f in features], 0), rtol=1e-3)


@pytest.mark.parametrize("group", [None, 2])
def test_recalibrate_batch_norm_groups_and_iterables(rng, group):
    model = keras.Sequential([keras.Input((2,)), keras.layers.BatchNormalization()])
    batches = [rng.normal(1.0, 2.0, (4, 2)).astype("float32") for _ in range(5)]
    # An iterator of bare inputs; only the first 4 batches are read.
    recalibrate_batch_norm(model, iter(batches), num_batches=4, group=group)
    if group is None:  # small batches: one pass over all four
        passes = [np.concatenate(batches[:4])]
    else:
        passes = [np.concatenate(batches[:2]), np.concatenate(batches[2:4])]
    mean, var = _moving(model.layers[0])
    np.testing.assert_allclose(mean, np.mean([p.mean(0) for p in passes], 0), atol=1e-5)
    np.testing.assert_allclose(var, np.mean([p.var(0) for p in passes], 0), rtol=1e-4)


def test_recalibrate_batch_norm_rejects_bad_counts():
    model = keras.Sequential([keras.Input((2,)), keras.layers.BatchNormalization()])
    with pytest.raises(ValueError, match="num_batches"):
        recalibrate_batch_norm(model, [], num_batches=0)
    with pytest.raises(ValueError, match="group"):
        recalibrate_batch_norm(model, [], group=0)


def _normalizer(use_ema=False):
    model = keras.Sequential(
        [keras.Input((2,)), keras.layers.BatchNormalization(), keras.layers.Dense(1)]
    )
    model.compile(optimizer=keras.optimizers.SGD(0.01, use_ema=use_ema), loss="mse")
    return model


def test_fit_ends_with_the_statistics_of_random_batches_of_an_array(rng):
    x = rng.normal(3.0, 2.0, (40, 2)).astype("float32")
    x[20:] += 10.0  # sorted: the first batches alone would miss the shift
    model = _normalizer(use_ema=True)
    callback = PreciseBatchNorm(x, batch_size=8, num_batches=3, seed=1)
    model.fit(x, x[:, :1], batch_size=8, epochs=1, verbose=0, callbacks=[callback])
    rows = np.concatenate([callback.batches.rows[i] for i in range(3)])
    assert len(rows) == 24 and len(np.unique(rows)) == 24
    assert (rows >= 20).any() and (rows < 20).any()
    mean, var = _moving(model.layers[0])
    np.testing.assert_allclose(mean, x[rows].mean(0), rtol=1e-5)
    np.testing.assert_allclose(var, x[rows].var(0), rtol=1e-4)


def test_before_validation_sets_the_statistics_of_the_averaged_weights(rng):
    model = keras.Sequential(
        [keras.Input((2,)), keras.layers.Dense(2), keras.layers.BatchNormalization()]
    )
    model.compile(optimizer=keras.optimizers.SGD(0.1, use_ema=True), loss="mse")
    x = rng.normal(size=(32, 2)).astype("float32")
    seen = []

    class Spy(keras.callbacks.Callback):
        def on_test_begin(self, logs=None):
            weights = keras.ops.convert_to_numpy(self.model.layers[0].kernel)
            bias = keras.ops.convert_to_numpy(self.model.layers[0].bias)
            seen.append((x @ weights + bias, _moving(self.model.layers[1])[0]))

    callbacks = [
        PreciseBatchNorm(x, batch_size=32, before_validation=True),
        keras.callbacks.SwapEMAWeights(swap_on_epoch=True),
        Spy(),
    ]
    model.fit(
        x,
        x,
        batch_size=8,
        epochs=2,
        validation_data=(x, x),
        verbose=0,
        callbacks=callbacks,
    )
    for features, mean in seen:  # the averaged weights' features, exactly
        np.testing.assert_allclose(mean, features.mean(0), rtol=1e-4, atol=1e-5)


def test_precise_batch_norm_refuses_a_generator():
    with pytest.raises(ValueError, match="readable again after `fit`.*generator"):
        PreciseBatchNorm(x for x in [np.zeros((1, 2))])
    with pytest.raises(ValueError, match="num_batches"):
        PreciseBatchNorm(np.zeros((4, 2)), num_batches=0)
    assert not PreciseBatchNorm.can_read(iter([1]))
    assert PreciseBatchNorm.can_read(np.zeros((4, 2)))
    assert PreciseBatchNorm.can_read([(np.zeros((4, 2)), None)])
