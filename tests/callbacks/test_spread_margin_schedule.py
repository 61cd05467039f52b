import os

import keras
import numpy as np
import pytest

from keras_parcaps.callbacks import SpreadMarginSchedule
from keras_parcaps.losses import SpreadLoss
from tests.losses.test_spread_loss import numpy_spread_loss


def _frozen_model(margin=0.2):
    """Fixed outputs (learning rate 0): the loss depends on the margin only."""
    inputs = keras.Input((3,))
    model = keras.Model(inputs, keras.layers.Dense(4, activation="sigmoid")(inputs))
    model.compile(optimizer=keras.optimizers.SGD(0.0), loss=SpreadLoss(margin))
    return model


def _data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(8, 3)).astype("float32")
    y = np.eye(4, dtype="float32")[rng.integers(0, 4, size=8)]
    return x, y


def test_margin_at():
    schedule = SpreadMarginSchedule(0.2, 0.9, ramp_length=7)
    np.testing.assert_allclose(
        [schedule.margin_at(t) for t in range(9)],
        [0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.9],
    )


def test_margin_moves_per_epoch_inside_the_compiled_step():
    model = _frozen_model()
    x, y = _data()
    a = model.predict(x, verbose=0)
    history = model.fit(
        x,
        y,
        batch_size=8,
        epochs=4,
        verbose=0,
        callbacks=[SpreadMarginSchedule(0.2, 0.9, ramp_length=3)],
    )
    margins = [0.2 + 0.7 * min(1, e / 3) for e in range(4)]
    np.testing.assert_allclose(history.history["spread_margin"], margins, rtol=1e-6)
    # The loss the train step computed used each epoch's margin.
    expected = [numpy_spread_loss(y, a, m).mean() for m in margins]
    np.testing.assert_allclose(history.history["loss"], expected, rtol=1e-4)
    assert model.loss.margin == pytest.approx(0.9)


def test_margin_moves_per_step_and_resumes_from_a_saved_model(tmp_path):
    model = _frozen_model()
    x, y = _data()
    a = model.predict(x, verbose=0)
    schedule = SpreadMarginSchedule(
        0.2, 0.9, ramp_length=8, unit="step", update_every=2
    )
    history = model.fit(
        x, y, batch_size=2, epochs=1, verbose=0, shuffle=False, callbacks=[schedule]
    )
    # Steps 0..3 use margins at steps 0, 0, 2, 2.
    per_step = [
        numpy_spread_loss(
            y[2 * k : 2 * k + 2], a[2 * k : 2 * k + 2], schedule.margin_at(2 * (k // 2))
        ).mean()
        for k in range(4)
    ]
    np.testing.assert_allclose(history.history["loss"][0], np.mean(per_step), rtol=1e-4)
    assert schedule.margin == pytest.approx(schedule.margin_at(2))

    path = os.path.join(tmp_path, "model.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    assert int(keras.ops.convert_to_numpy(loaded.optimizer.iterations)) == 4
    assert loaded.loss.margin == pytest.approx(schedule.margin_at(2))
    resumed = SpreadMarginSchedule(0.2, 0.9, ramp_length=8, unit="step", update_every=2)
    history = loaded.fit(
        x, y, batch_size=2, epochs=1, verbose=0, shuffle=False, callbacks=[resumed]
    )
    per_step = [
        numpy_spread_loss(
            y[2 * k : 2 * k + 2],
            a[2 * k : 2 * k + 2],
            resumed.margin_at(4 + 2 * (k // 2)),
        ).mean()
        for k in range(4)
    ]
    np.testing.assert_allclose(history.history["loss"][0], np.mean(per_step), rtol=1e-4)
    assert resumed.margin == pytest.approx(resumed.margin_at(6))


def test_epoch_schedule_resumes_with_initial_epoch():
    model = _frozen_model()
    x, y = _data()
    history = model.fit(
        x,
        y,
        batch_size=8,
        epochs=6,
        initial_epoch=4,
        verbose=0,
        callbacks=[SpreadMarginSchedule(0.2, 0.9, ramp_length=7)],
    )
    np.testing.assert_allclose(history.history["spread_margin"], [0.6, 0.7])


def test_needs_a_spread_loss():
    inputs = keras.Input((3,))
    model = keras.Model(inputs, keras.layers.Dense(2)(inputs))
    model.compile(optimizer="sgd", loss="mse")
    x = np.zeros((2, 3), "float32")
    with pytest.raises(ValueError, match="SpreadLoss"):
        model.fit(x, np.zeros((2, 2)), verbose=0, callbacks=[SpreadMarginSchedule()])


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"start": -0.1}, "start"),
        ({"end": 1.2}, "end"),
        ({"ramp_length": 0}, "ramp_length"),
        ({"unit": "batch"}, "unit"),
        ({"update_every": 0}, "update_every"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SpreadMarginSchedule(**kwargs)
