import csv

import keras
import numpy as np
import pytest

import keras_parcaps as kp
from keras_parcaps.data import synthetic_cells
from keras_parcaps.training import compile_for_training, train
from keras_parcaps.training.builders import BUILDERS, get_builder
from tests.training.tiny_models import tiny_capsnet


def _log_epochs(out_dir):
    with open(out_dir / "log.csv") as file:
        return [int(row["epoch"]) for row in csv.DictReader(file)]


def test_train_writes_checkpoints_log_and_resumes(tmp_path):
    data = synthetic_cells(counts=4, image_size=24, seed=0)
    model = tiny_capsnet((24, 24, 3), data.num_classes)
    history = train(
        model,
        data,
        tmp_path,
        val_data=data.subset([0, 5, 9]),
        epochs=2,
        steps_per_epoch=3,
        verbose=0,
    )
    assert int(model.optimizer.iterations) == 6
    assert isinstance(model.optimizer, keras.optimizers.Nadam)
    assert len(history.history["loss"]) == 2
    assert {"acc", "wacc", "val_acc", "val_wacc"} <= set(history.history)
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == [
        "epoch_001.weights.h5",
        "epoch_002.weights.h5",
    ]
    assert _log_epochs(tmp_path) == [0, 1]
    assert (tmp_path / "model.keras").is_file()
    # A finished run resumes to its end: nothing more is trained.
    again = tiny_capsnet((24, 24, 3), data.num_classes)
    train(again, data, tmp_path, epochs=2, steps_per_epoch=3, verbose=0)
    assert int(again.optimizer.iterations) == 6
    for a, b in zip(model.weights, again.weights, strict=True):
        assert np.allclose(keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b))
    # Asking for more epochs continues from the last one.
    train(again, data, tmp_path, epochs=3, steps_per_epoch=3, verbose=0)
    assert int(again.optimizer.iterations) == 9
    assert _log_epochs(tmp_path) == [0, 1, 2]


def test_shuffled_batches_option(tmp_path):
    data = synthetic_cells(counts=3, image_size=24, seed=1)
    model = tiny_capsnet((24, 24, 3), data.num_classes)
    train(
        model,
        data,
        tmp_path,
        epochs=1,
        steps_per_epoch=2,
        batch_size=4,
        augment=False,
        verbose=0,
    )
    assert int(model.optimizer.iterations) == 2


def test_uncompiled_model_is_refused():
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    with pytest.raises(ValueError, match="compile it first"):
        compile_for_training(model, 2)


def test_builder_registry():
    build = get_builder(tiny_capsnet)
    model = build((24, 24, 3), 3)
    assert model.output_shape == (None, 3)
    by_path = get_builder("tests.training.tiny_models:tiny_capsnet")
    assert by_path((24, 24, 3), 2).output_shape == (None, 2)
    assert set(BUILDERS) >= {"parallel_dr", "dr", "em", "resnext50"}
    with pytest.raises(ValueError, match="Available here: .*sabour"):
        get_builder("no_such_model")

    def strict(input_shape, num_classes, depth=1):
        return (input_shape, num_classes, depth)

    with pytest.warns(UserWarning, match="n_branches"):
        build = get_builder(strict, depth=2, n_branches=3)
    assert build([8, 8, 3], 4) == ((8, 8, 3), 4, 2)


def test_spread_loss_models_get_the_margin_ramp(tmp_path):
    data = synthetic_cells(counts=2, image_size=24, seed=0)
    model = tiny_capsnet((24, 24, 3), data.num_classes)
    model.compile(optimizer="nadam", loss=kp.losses.SpreadLoss())
    train(model, data, tmp_path, epochs=3, steps_per_epoch=1, verbose=0)
    # Epochs 0, 1, 2 ran with margins 0.2, 0.3, 0.4 (Hinton's 0.1 per epoch).
    assert model.loss.margin == pytest.approx(0.4)
    # A schedule of the caller's own replaces the default one.
    schedule = kp.callbacks.SpreadMarginSchedule(start=0.5, end=0.9, ramp_length=2)
    train(
        model,
        data,
        tmp_path / "own",
        epochs=2,
        steps_per_epoch=1,
        verbose=0,
        callbacks=[schedule],
    )
    assert model.loss.margin == pytest.approx(0.7)


def _tiny_capsnet_with_batch_norm(input_shape, num_classes):
    """`tiny_capsnet` with a slow BatchNormalization after its first layer:
    its moving statistics barely leave their start in a few steps."""
    inputs = keras.Input(input_shape)
    x = keras.layers.Conv2D(16, 5, strides=2)(inputs)
    x = keras.layers.BatchNormalization(momentum=0.9999, name="norm")(x)
    x = keras.layers.Conv2D(32, 3, strides=2, activation="relu")(x)
    x = kp.layers.PrimaryCaps(4, 8, kernel_size=3, strides=2)(x)
    x = kp.layers.DRCaps(num_classes, 8)(x)
    model = keras.Model(inputs, kp.layers.CapsuleLength()(x))
    model.compile(optimizer="nadam", loss=kp.losses.MarginLoss())
    return model


@pytest.mark.parametrize("recalibrate_bn", [True, False])
def test_exact_statistics_reach_validation_and_the_saved_model(
    tmp_path, recalibrate_bn
):
    data = synthetic_cells(counts=4, image_size=24, seed=0)
    model = _tiny_capsnet_with_batch_norm((24, 24, 3), data.num_classes)
    norm = model.get_layer("norm")
    validated = []

    class Spy(keras.callbacks.Callback):
        def on_test_begin(self, logs=None):
            validated.append(keras.ops.convert_to_numpy(norm.moving_mean))

    train(
        model,
        data,
        tmp_path,
        val_data=data.subset([0, 5, 9]),
        epochs=2,
        steps_per_epoch=2,
        recalibrate_bn=recalibrate_bn,
        callbacks=[Spy()],
        verbose=0,
    )
    assert len(validated) == 2
    assert norm.momentum == 0.9999
    final = keras.ops.convert_to_numpy(norm.moving_mean)
    saved = keras.saving.load_model(tmp_path / "model.keras").get_layer("norm")
    np.testing.assert_allclose(keras.ops.convert_to_numpy(saved.moving_mean), final)
    # Training ends with the statistics of the training batches, not the
    # moving averages of four steps at momentum 0.9999 (near 0).
    assert np.abs(final).max() > 0.05
    if recalibrate_bn:
        # Validation saw them too, and the model keeps the last ones: both are
        # those of the averaged weights that validation measures and `fit`
        # leaves in the model (recalibrating the training weights before
        # `SwapEMAWeights` swapped the average in gave other statistics).
        np.testing.assert_allclose(final, validated[-1], rtol=1e-5, atol=1e-6)
    else:
        assert np.abs(validated[-1]).max() < 0.01
