"""The checks every layer passes, on every backend.

One place that knows how a layer is exercised, like Keras's own
`run_layer_test`: shapes with two batch sizes in one model, the number of
trainable and non-trainable weights, config round trip, `.keras` round trip,
one `fit` step, finite gradients for an all-zero input, the regularizer loss
(against numpy) for a layer that takes regularizers, and a training step
under the `mixed_bfloat16` policy (outputs in the compute dtype, weights in
float32).
"""

import inspect
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
    expected_num_trainable_weights=None,
    expected_num_non_trainable_weights=None,
    mixed_precision=True,
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
        expected_num_trainable_weights: Trainable weights of the built
            layer; `None` skips the count.
        expected_num_non_trainable_weights: Non-trainable weights of the
            built layer (such as BatchNormalization statistics).
        mixed_precision: Whether to run the `mixed_bfloat16` step.
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

    # Weight counts.
    if expected_num_trainable_weights is not None:
        assert len(layer.trainable_weights) == expected_num_trainable_weights, [
            w.path for w in layer.trainable_weights
        ]
    if expected_num_non_trainable_weights is not None:
        assert len(layer.non_trainable_weights) == expected_num_non_trainable_weights, [
            w.path for w in layer.non_trainable_weights
        ]
    assert len(layer.weights) == (
        len(layer.trainable_weights) + len(layer.non_trainable_weights)
    )

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

    _check_regularizer_losses(layer_cls, init_kwargs, input_shape, x)
    if mixed_precision:
        _check_mixed_precision(
            layer_cls, init_kwargs, input_shape, expected_output_shape, x
        )
    return model


def _check_regularizer_losses(layer_cls, init_kwargs, input_shape, x):
    """With an L2 regularizer on each regularizable weight, the layer's and a
    model's losses are `factor * sum(w ** 2)` of those weights (numpy)."""
    parameters = inspect.signature(layer_cls.__init__).parameters
    names = [
        name[: -len("_regularizer")]
        for name in ("kernel_regularizer", "bias_regularizer")
        if name in parameters and name not in init_kwargs
    ]
    if not names:
        return
    factors = {name: 0.25 * (i + 1) for i, name in enumerate(names)}
    layer = layer_cls(
        **init_kwargs,
        **{
            f"{name}_regularizer": keras.regularizers.L2(f)
            for name, f in factors.items()
        },
    )
    model = _model(layer, input_shape)
    model(x)
    # Every weight named `kernel` (or `bias`), the layer's own or those of
    # the layers it is made of, carries its regularizer.
    weights = [w for w in layer.weights if w.name in factors]
    assert weights, f"no weight named {sorted(factors)} in {layer.name}"
    expected = sum(
        factors[w.name] * np.sum(np.square(keras.ops.convert_to_numpy(w)), dtype=float)
        for w in weights
    )
    assert len(model.losses) == len(weights), (model.losses, [w.path for w in weights])
    total = sum(float(keras.ops.convert_to_numpy(loss)) for loss in model.losses)
    np.testing.assert_allclose(total, expected, rtol=1e-5)


def _check_mixed_precision(
    layer_cls, init_kwargs, input_shape, expected_output_shape, x
):
    """Under `mixed_bfloat16` (every backend runs it on a CPU): outputs in
    bfloat16, weights in float32, and one training step gives a finite loss
    and moves the weights."""
    layer = layer_cls(**init_kwargs, dtype="mixed_bfloat16")
    model = _model(layer, input_shape)
    out = model(x)
    assert (
        keras.backend.standardize_dtype(out.dtype)
        == layer.compute_dtype
        == ("bfloat16")
    ), out.dtype
    assert tuple(out.shape) == (len(x), *expected_output_shape[1:])
    for weight in layer.weights:
        assert weight.dtype == "float32", (weight.path, weight.dtype)
    before = [keras.ops.convert_to_numpy(w) for w in model.trainable_weights]
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    target = np.random.default_rng(1).normal(size=out.shape).astype("float32")
    loss = model.train_on_batch(x, target)
    assert np.isfinite(loss), loss
    after = [keras.ops.convert_to_numpy(w) for w in model.trainable_weights]
    if before:
        assert any(not np.allclose(b, a) for b, a in zip(before, after))
