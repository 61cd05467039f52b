import keras
import numpy as np
import pytest
from keras import ops

from keras_parcaps.ops import routing_backend
from tests.backend_utils import gradients
from tests.markers import on_backend


def _reads(read, first, second):
    """Reads `shared` three times, in both orientations."""
    plain = read(first)
    transposed = read(second, transpose=True)
    again = read(2.0 * first)
    return (
        ops.sum(ops.square(plain))
        + ops.sum(ops.sin(transposed))
        + ops.sum(again * plain)
    )


def _reads_pair(reads, first, second, third):
    """Reads each of two tensors as `_reads` does, both with `first`."""
    return _reads(reads[0], first, second) + _reads(reads[1], first, third)


def _expected(shared, first, second):
    """`_reads`'s value and gradients (shared, first, second), by hand."""
    plain = first @ shared
    transposed = second @ shared.transpose(0, 2, 1)
    value = 3 * np.sum(plain**2) + np.sum(np.sin(transposed))
    # d/dP of (3 P^2) is 6 P; d/dT of sin(T) is cos(T).
    grad_shared = (
        first.transpose(0, 2, 1) @ (6 * plain)
        + np.cos(transposed).transpose(0, 2, 1) @ second
    )
    return (
        value,
        grad_shared,
        6 * plain @ shared.transpose(0, 2, 1),
        (np.cos(transposed) @ shared),
    )


class _ReadShared(keras.layers.Layer):
    """`read_shared` of its first `count` weights, the others the operands."""

    def __init__(self, values, count):
        super().__init__()
        self.count = count
        self.tensors = []
        for value in values:
            weight = self.add_weight(shape=value.shape, initializer="zeros")
            weight.assign(value)
            self.tensors.append(weight)

    def call(self, x, training=None):
        tensors = [ops.convert_to_tensor(w) for w in self.tensors]
        shared, operands = tensors[: self.count], tensors[self.count :]
        if self.count == 1:
            return routing_backend.read_shared(_reads, shared[0], *operands)
        return routing_backend.read_shared(_reads_pair, tuple(shared), *operands)


def _operands(rng, count):
    """`count` tensors read (3 and 2 columns), `first`, and one `second` each."""
    shared = [rng.normal(size=(2, 5, 3 - k)).astype("float32") for k in range(count)]
    first = rng.normal(size=(2, 4, 5)).astype("float32")
    seconds = [rng.normal(size=(2, 6, 3 - k)).astype("float32") for k in range(count)]
    return shared, first, seconds


@pytest.mark.parametrize("count", [1, 2])
@pytest.mark.parametrize("enabled", [True, False])
def test_read_shared_gradients_match_numpy(enabled, count):
    shared, first, seconds = _operands(np.random.default_rng(0), count)
    routing_backend.set_jit_compile(enabled)
    try:
        layer = _ReadShared([*shared, first, *seconds], count)
        value = float(ops.convert_to_numpy(layer(None)))
        grads = gradients(layer, None, lambda y: y)
    finally:
        routing_backend.set_jit_compile(True)
    expected = [_expected(s, first, second) for s, second in zip(shared, seconds)]
    np.testing.assert_allclose(value, sum(e[0] for e in expected), rtol=1e-5)
    close = {"rtol": 1e-4, "atol": 1e-5}
    for grad, e in zip(grads[:count], expected):
        np.testing.assert_allclose(grad, e[1], **close)
    np.testing.assert_allclose(grads[count], sum(e[2] for e in expected), **close)
    for grad, e in zip(grads[count + 1 :], expected):
        np.testing.assert_allclose(grad, e[3], **close)


@pytest.mark.parametrize("count", [1, 2])
def test_read_shared_without_gradients_reads_plainly(count):
    """Outside a gradient (inference), `read_shared` is `fn` with plain reads."""
    shared, first, seconds = _operands(np.random.default_rng(1), count)
    fn = _reads if count == 1 else _reads_pair
    value = routing_backend.read_shared(
        fn, shared[0] if count == 1 else tuple(shared), first, *seconds
    )
    expected = sum(_expected(s, first, second)[0] for s, second in zip(shared, seconds))
    np.testing.assert_allclose(float(ops.convert_to_numpy(value)), expected, rtol=1e-5)


@on_backend("torch", "the stacked gradient is PyTorch's path")
@pytest.mark.parametrize("enabled", [True, False])
def test_pytorch_takes_the_stacked_path_while_recording(enabled):
    """The documented rule: PyTorch, recording a gradient, fast path on."""
    import torch

    rng = np.random.default_rng(2)
    shared, first, second = (
        torch.tensor(rng.normal(size=shape).astype("float32"), requires_grad=True)
        for shape in ((2, 5, 3), (2, 4, 5), (2, 6, 3))
    )
    routing_backend.set_jit_compile(enabled)
    try:
        value = routing_backend.read_shared(_reads, shared, first, second)
        with torch.no_grad():
            plain = routing_backend.read_shared(_reads, shared, first, second)
    finally:
        routing_backend.set_jit_compile(True)
    stacked = type(value.grad_fn).__name__ == "StackedReadsBackward"
    assert stacked == enabled
    assert plain.grad_fn is None


@on_backend("tensorflow", "XLA compiles a `jit_compile=True` step whole there")
def test_tensorflow_inlines_the_loop_in_a_jit_compiled_step(compiled_routing):
    """The documented rule: a routing loop inside a function that XLA
    compiles whole runs inlined, and compiled on its own only otherwise (a
    nested compiled function made XLA compile the step at every step)."""
    import keras_parcaps as kp

    rng = np.random.default_rng(3)
    x = rng.normal(size=(4, 6, 8)).astype("float32")
    y = keras.utils.to_categorical([0, 1, 2, 0], 3)
    losses = {}
    for jit_compile in (True, False):
        keras.utils.set_random_seed(0)
        inputs = keras.Input(x.shape[1:])
        outputs = kp.layers.CapsuleLength()(kp.layers.DRCaps(3, 4)(inputs))
        model = keras.Model(inputs, outputs)
        model.compile(
            optimizer="sgd", loss=kp.losses.MarginLoss(), jit_compile=jit_compile
        )
        routing_backend._compiled.clear()
        losses[jit_compile] = [float(model.train_on_batch(x, y)) for _ in range(2)]
        assert bool(routing_backend._compiled) == (not jit_compile)
    np.testing.assert_allclose(losses[True], losses[False], rtol=1e-5)
