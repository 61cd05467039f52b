"""The checks every layer passes, on every backend.

One place that knows how a layer is exercised: shapes with two batch sizes
in one model, config round trip, `.keras` round trip, one `fit` step, and
finite gradients for an all-zero input.
"""

import os
import tempfile

import keras
import numpy as np

from tests.backend_utils import gradients


class _InputShift(keras.layers.Layer):
    """Adds a trainable zero offset, so its gradient is the input gradient."""

    def build(self, input_shape):
        self.shift = self.add_weight(shape=input_shape[1:], initializer="zeros")

    def call(self, inputs):
        return inputs + self.shift


def _model(layer, input_shape):
    inputs = keras.Input(shape=input_shape[1:])
    return keras.Model(inputs, layer(inputs))


def run_layer_checks(
    layer_cls,
    init_kwargs,
    input_shape,
    expected_output_shape,
    input_fn=None,
    batch_sizes=(2, 3),
):
    """Runs the standard layer checks and returns the functional model.

    Args:
        layer_cls: The layer class.
        init_kwargs: Constructor arguments.
        input_shape: Input shape with `None` as batch.
        expected_output_shape: Output shape with `None` as batch.
        input_fn: `fn(batch_size) -> np.ndarray` making inputs; standard
            normal by default.
        batch_sizes: Two batch sizes fed to one model.
    """
    rng = np.random.default_rng(0)
    if input_fn is None:

        def input_fn(batch):
            return rng.normal(size=(batch, *input_shape[1:])).astype("float32")

    layer = layer_cls(**init_kwargs)
    model = _model(layer, input_shape)

    # Static shape inference and dynamic batch sizes in one model.
    assert tuple(layer.compute_output_shape(input_shape)) == tuple(
        expected_output_shape
    )
    assert tuple(model.output.shape) == tuple(expected_output_shape)
    for batch in batch_sizes:
        out = model.predict(input_fn(batch), verbose=0)
        assert out.shape == (batch, *expected_output_shape[1:])
        assert np.all(np.isfinite(out))

    # Config round trip.
    config = layer.get_config()
    clone = layer_cls.from_config(config)
    assert clone.get_config() == config

    # .keras round trip: same outputs.
    x = input_fn(batch_sizes[0])
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "model.keras")
        model.save(path)
        loaded = keras.models.load_model(path)
    np.testing.assert_allclose(
        loaded.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6
    )

    # Finite gradients, for the weights and the input, at an all-zero input.
    inputs = keras.Input(shape=input_shape[1:])
    shifted = keras.Model(inputs, layer(_InputShift()(inputs)))
    zeros = np.zeros_like(x)
    grads = gradients(shifted, zeros, lambda y: keras.ops.sum(keras.ops.square(y)))
    for weight, grad in zip(shifted.trainable_weights, grads):
        assert np.all(np.isfinite(grad)), f"non-finite gradient for {weight.path}"

    # One fit step moves the weights.
    before = [keras.ops.convert_to_numpy(w) for w in model.trainable_weights]
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    target = rng.normal(size=(batch_sizes[0], *expected_output_shape[1:]))
    history = model.fit(x, target.astype("float32"), epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    after = [keras.ops.convert_to_numpy(w) for w in model.trainable_weights]
    if before:
        assert any(not np.allclose(b, a) for b, a in zip(before, after))
    return model
