"""The capsule losses check their inputs, also inside compiled training steps."""

import keras
import numpy as np
import pytest

from keras_parcaps.callbacks import StopOnNonFiniteLoss
from keras_parcaps.losses import MarginLoss, SpreadLoss, margin_loss, spread_loss

LOSSES = [margin_loss, spread_loss]


@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("label", [5, 3, -1])
def test_numpy_labels_out_of_range_raise(loss, label):
    y_pred = np.full((2, 3), 0.5, "float32")
    with pytest.raises(ValueError, match=r"labels must be in \[0, 3\)"):
        loss(np.array([0, label]), y_pred)


@pytest.mark.parametrize("loss", LOSSES)
def test_tensor_labels_out_of_range_give_nan_for_that_sample(loss):
    y_pred = np.array([[0.9, 0.1, 0.2], [0.3, 0.8, 0.1], [0.2, 0.2, 0.7]], "float32")
    good = keras.ops.convert_to_numpy(loss(np.array([0, 1, 2]), y_pred))
    values = keras.ops.convert_to_numpy(
        loss(keras.ops.convert_to_tensor(np.array([0, 5, -1], "int32")), y_pred)
    )
    assert values[0] == pytest.approx(good[0])
    assert np.isnan(values[1]) and np.isnan(values[2])
    # In range, integer labels and their one-hot targets give the same loss.
    one_hot = np.eye(3, dtype="float32")
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(loss(one_hot, y_pred)), good, rtol=1e-6
    )
    # Keras's sparse layout (batch, 1) works too.
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(loss(np.array([[0], [1], [2]]), y_pred)),
        good,
        rtol=1e-6,
    )


@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("y_true_shape", [(2, 4), (3,), (2, 3, 1, 1)])
def test_shape_mismatch_names_y_true_and_y_pred(loss, y_true_shape):
    with pytest.raises(ValueError, match=r"y_true.shape=.*y_pred.shape=\(2, 3\)"):
        loss(np.zeros(y_true_shape, "float32"), np.zeros((2, 3), "float32"))


# PyTorch's jit_compile is torch.compile, not Keras's default there: it spends
# about 40 s on a CPU generating C++ for this two-step fit.
@pytest.mark.parametrize("loss", [MarginLoss(), SpreadLoss()])
@pytest.mark.parametrize(
    "jit_compile", [False] if keras.backend.backend() == "torch" else [False, True]
)
def test_out_of_range_label_stops_compiled_training(loss, jit_compile):
    model = keras.Sequential(
        [keras.Input((4,)), keras.layers.Dense(3, activation="sigmoid")]
    )
    model.compile(optimizer="sgd", loss=loss, jit_compile=jit_compile)
    x = np.ones((4, 4), "float32")
    history = model.fit(
        x,
        np.array([0, 1, 2, 1]),
        batch_size=2,
        verbose=0,
        callbacks=[StopOnNonFiniteLoss()],
    )
    assert np.isfinite(history.history["loss"]).all()
    with pytest.raises(FloatingPointError, match="epoch 1, step 2"):
        model.fit(
            x,
            np.array([0, 1, 2, 3]),
            batch_size=2,
            verbose=0,
            shuffle=False,
            callbacks=[StopOnNonFiniteLoss()],
        )
