import keras
import numpy as np
import pytest

from keras_parcaps.layers.resnext_block import ResNeXtBlock
from tests.layer_checks import run_layer_checks
from tests.layers.test_group_conv2d import numpy_group_conv


def _randomize(block, rng):
    for weight in block.weights:
        values = rng.normal(size=weight.shape)
        if "variance" in weight.path:
            values = rng.uniform(0.5, 2.0, size=weight.shape)
        weight.assign(values.astype("float32"))


def _np_norm(x, norm):
    gamma, beta, mean, variance = (
        keras.ops.convert_to_numpy(w)
        for w in (norm.gamma, norm.beta, norm.moving_mean, norm.moving_variance)
    )
    return gamma * (x - mean) / np.sqrt(variance + norm.epsilon) + beta


def _np_block(block, x, stride):
    """The block in inference mode, from numpy convolutions."""

    def kernel(layer):
        return keras.ops.convert_to_numpy(layer.kernel)

    relu = lambda v: np.maximum(v, 0)  # noqa: E731
    h = relu(
        _np_norm(
            np.einsum("bhwc,co->bhwo", x, kernel(block.reduce)[0, 0]), block.reduce_norm
        )
    )
    h = numpy_group_conv(
        h, kernel(block.grouped), 0.0, block.cardinality, stride, "same"
    )
    h = relu(_np_norm(h, block.grouped_norm))
    h = _np_norm(
        np.einsum("bhwc,co->bhwo", h, kernel(block.expand)[0, 0]), block.expand_norm
    )
    shortcut = x
    if block.shortcut is not None:
        shortcut = _np_norm(
            np.einsum(
                "bhwc,co->bhwo", x[:, ::stride, ::stride], kernel(block.shortcut)[0, 0]
            ),
            block.shortcut_norm,
        )
    return relu(h + shortcut)


@pytest.mark.parametrize("stride,channels", [(2, 4), (1, 16)])
def test_matches_numpy_in_inference(rng, stride, channels):
    x = rng.normal(size=(2, 5, 6, channels)).astype("float32")
    block = ResNeXtBlock([8, 8, 16], cardinality=4, kernel_size=3, strides=stride)
    block.build(x.shape)
    assert (block.shortcut is None) == (stride == 1 and channels == 16)
    _randomize(block, rng)
    out = keras.ops.convert_to_numpy(block(x, training=False))
    np.testing.assert_allclose(out, _np_block(block, x, stride), atol=1e-3, rtol=1e-4)


def _np_max_pool_2x2(x):
    """2x2 max-pooling, "same": an odd side is padded at its end."""
    _, h, w, _ = x.shape
    x = np.pad(x, ((0, 0), (0, h % 2), (0, w % 2), (0, 0)), constant_values=-np.inf)
    b, h, w, c = x.shape
    return x.reshape(b, h // 2, 2, w // 2, 2, c).max(axis=(2, 4))


@pytest.mark.parametrize("channels", [4, 16])
def test_pool_downsampling_matches_numpy_in_inference(rng, channels):
    x = rng.normal(size=(2, 5, 6, channels)).astype("float32")
    block = ResNeXtBlock(
        [8, 8, 16], cardinality=4, kernel_size=3, strides=2, downsample="pool"
    )
    block.build(x.shape)
    # The projection stays with a stride, so the weights are the strided block's.
    assert block.shortcut is not None
    _randomize(block, rng)
    out = keras.ops.convert_to_numpy(block(x, training=False))
    assert out.shape == (2, 3, 3, 16)
    want = _np_block(block, _np_max_pool_2x2(x), stride=1)
    np.testing.assert_allclose(out, want, atol=1e-3, rtol=1e-4)


def test_pool_downsampling_keeps_the_weights():
    shapes = {}
    for downsample in ("stride", "pool"):
        block = ResNeXtBlock(
            [64, 64, 128],
            cardinality=16,
            kernel_size=7,
            strides=2,
            downsample=downsample,
        )
        block.build((None, 32, 32, 64))
        shapes[downsample] = [tuple(w.shape) for w in block.weights]
        assert block.compute_output_shape((None, 31, 32, 64)) == (None, 16, 16, 128)
    assert shapes["pool"] == shapes["stride"]


def test_parameter_count():
    # [256, 256, 512], cardinality 64, 7x7: the paper's branch block.
    block = ResNeXtBlock([256, 256, 512], cardinality=64, kernel_size=7, strides=2)
    block.build((None, 50, 50, 256))
    convs = 256 * 256 + 7 * 7 * 4 * 256 + 256 * 512 + 256 * 512
    norms = 4 * (256 + 256 + 512 + 512)
    assert block.count_params() == convs + norms
    assert block.compute_output_shape((None, 50, 50, 256)) == (None, 25, 25, 512)


def test_layer_checks():
    run_layer_checks(
        ResNeXtBlock,
        dict(filters=[4, 4, 8], cardinality=2, kernel_size=3, strides=2),
        input_shape=(None, 5, 5, 3),
        expected_output_shape=(None, 3, 3, 8),
        # 4 convolution kernels (reduce, grouped, expand, projection) and 4
        # BatchNormalizations: gamma and beta trained, mean and variance not.
        expected_num_trainable_weights=12,
        expected_num_non_trainable_weights=8,
    )


def test_layer_checks_pool_downsampling():
    run_layer_checks(
        ResNeXtBlock,
        dict(filters=[4, 4, 8], cardinality=2, strides=2, downsample="pool"),
        input_shape=(None, 5, 5, 3),
        expected_output_shape=(None, 3, 3, 8),
        expected_num_trainable_weights=12,
        expected_num_non_trainable_weights=8,
    )


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(filters=[4, 8], cardinality=2), "filters"),
        (dict(filters=[4, 4, 0], cardinality=2), "filters"),
        (dict(filters=[4, 6, 8], cardinality=4), "cardinality"),
        (dict(filters=[4, 4, 8], cardinality=0), "cardinality"),
        (dict(filters=[4, 4, 8], cardinality=2, strides=0), "strides"),
        (dict(filters=[4, 4, 8], cardinality=2, downsample="avg"), "downsample"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ResNeXtBlock(**kwargs)
