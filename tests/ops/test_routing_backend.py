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


class _ReadShared(keras.layers.Layer):
    def __init__(self, values):
        super().__init__()
        self.tensors = []
        for value in values:
            weight = self.add_weight(shape=value.shape, initializer="zeros")
            weight.assign(value)
            self.tensors.append(weight)

    def call(self, x, training=None):
        shared, first, second = (ops.convert_to_tensor(w) for w in self.tensors)
        return routing_backend.read_shared(_reads, shared, first, second)


@pytest.mark.parametrize("enabled", [True, False])
def test_read_shared_gradients_match_numpy(enabled):
    rng = np.random.default_rng(0)
    shared = rng.normal(size=(2, 5, 3)).astype("float32")
    first = rng.normal(size=(2, 4, 5)).astype("float32")
    second = rng.normal(size=(2, 6, 3)).astype("float32")
    routing_backend.set_jit_compile(enabled)
    try:
        layer = _ReadShared([shared, first, second])
        value = float(ops.convert_to_numpy(layer(None)))
        grad_shared, grad_first, grad_second = gradients(layer, None, lambda y: y)
    finally:
        routing_backend.set_jit_compile(True)

    plain = first @ shared
    transposed = second @ shared.transpose(0, 2, 1)
    expected = np.sum(plain**2) + np.sum(np.sin(transposed)) + 2 * np.sum(plain**2)
    np.testing.assert_allclose(value, expected, rtol=1e-5)
    # d/dP of (3 P^2) is 6 P; d/dT of sin(T) is cos(T).
    np.testing.assert_allclose(
        grad_shared,
        first.transpose(0, 2, 1) @ (6 * plain)
        + np.cos(transposed).transpose(0, 2, 1) @ second,
        rtol=1e-4,
        atol=1e-5,
    )
    np.testing.assert_allclose(
        grad_first, 6 * plain @ shared.transpose(0, 2, 1), rtol=1e-4, atol=1e-5
    )
    np.testing.assert_allclose(
        grad_second, np.cos(transposed) @ shared, rtol=1e-4, atol=1e-5
    )


def test_read_shared_without_gradients_reads_plainly():
    """Outside a gradient (inference), `read_shared` is `fn` with plain reads."""
    rng = np.random.default_rng(1)
    shared, first, second = (
        rng.normal(size=shape).astype("float32")
        for shape in ((2, 5, 3), (2, 4, 5), (2, 6, 3))
    )
    value = routing_backend.read_shared(_reads, shared, first, second)
    plain = first @ shared
    transposed = second @ shared.transpose(0, 2, 1)
    expected = 3 * np.sum(plain**2) + np.sum(np.sin(transposed))
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
