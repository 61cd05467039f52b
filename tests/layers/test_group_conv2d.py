import keras
import numpy as np
import pytest

from keras_parcaps.layers.group_conv2d import GroupConv2D
from keras_parcaps.layers.group_conv2d_backend import default_implementation
from tests.backend_utils import gradients
from tests.layer_checks import run_layer_checks


def numpy_group_conv(x, kernel, bias, groups, stride, padding):
    """Direct loops over groups, output pixels and window offsets."""
    batch, height, width, channels = x.shape
    kh, kw, cin, filters = kernel.shape
    cout = filters // groups
    if padding == "same":
        out_h, out_w = -(-height // stride), -(-width // stride)
        pad_h = max((out_h - 1) * stride + kh - height, 0)
        pad_w = max((out_w - 1) * stride + kw - width, 0)
        x = np.pad(
            x,
            (
                (0, 0),
                (pad_h // 2, pad_h - pad_h // 2),
                (pad_w // 2, pad_w - pad_w // 2),
                (0, 0),
            ),
        )
    else:
        out_h, out_w = (height - kh) // stride + 1, (width - kw) // stride + 1
    out = np.zeros((batch, out_h, out_w, filters))
    for g in range(groups):
        xg = x[..., g * cin : (g + 1) * cin]
        kg = kernel[..., g * cout : (g + 1) * cout]
        for i in range(out_h):
            for j in range(out_w):
                patch = xg[
                    :, i * stride : i * stride + kh, j * stride : j * stride + kw
                ]
                out[:, i, j, g * cout : (g + 1) * cout] = np.einsum(
                    "bhwc,hwco->bo", patch, kg
                )
    return out + bias


def _model(implementation, input_shape, **kwargs):
    inputs = keras.Input(input_shape)
    layer = GroupConv2D(implementation=implementation, **kwargs)
    return keras.Model(inputs, layer(inputs)), layer


@pytest.mark.parametrize("stride,padding", [(1, "same"), (2, "same"), (2, "valid")])
def test_every_implementation_matches_numpy(rng, stride, padding):
    x = rng.normal(size=(2, 7, 6, 8)).astype("float32")
    kwargs = dict(filters=12, kernel_size=3, groups=4, strides=stride, padding=padding)
    outputs = {}
    for implementation in ("native", "split", "auto"):
        model, layer = _model(implementation, x.shape[1:], **kwargs)
        if implementation == "native":
            kernel = rng.normal(size=layer.kernel.shape).astype("float32")
            bias = rng.normal(size=layer.bias.shape).astype("float32")
        layer.kernel.assign(kernel)
        layer.bias.assign(bias)
        outputs[implementation] = model.predict(x, verbose=0)
    expected = numpy_group_conv(x, kernel, bias, 4, stride, padding)
    for implementation, out in outputs.items():
        np.testing.assert_allclose(out, expected, atol=1e-4, err_msg=implementation)


def test_implementations_have_equal_gradients(rng):
    x = rng.normal(size=(2, 6, 6, 8)).astype("float32")
    kwargs = dict(filters=8, kernel_size=3, groups=4, strides=2, padding="same")
    native, native_layer = _model("native", x.shape[1:], **kwargs)
    split, split_layer = _model("split", x.shape[1:], **kwargs)
    for a, b in zip(split_layer.weights, native_layer.weights):
        a.assign(rng.normal(size=b.shape).astype("float32"))
        b.assign(a)

    def loss(y):
        return keras.ops.sum(keras.ops.sin(y))

    for a, b in zip(gradients(native, x, loss), gradients(split, x, loss)):
        assert np.abs(a).max() > 0
        np.testing.assert_allclose(a, b, atol=1e-4)


def test_same_as_keras_conv2d_with_groups(rng):
    x = rng.normal(size=(2, 5, 5, 8)).astype("float32")
    ours = GroupConv2D(8, 3, groups=2, padding="same")
    theirs = keras.layers.Conv2D(8, 3, groups=2, padding="same")
    ours.build(x.shape)
    theirs.build(x.shape)
    for a, b in zip(ours.weights, theirs.weights):
        a.assign(keras.ops.convert_to_numpy(b))
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(ours(x)),
        keras.ops.convert_to_numpy(theirs(x)),
        atol=1e-5,
    )


def test_default_implementation_per_backend():
    # This machine has no accelerator: native on PyTorch, split under XLA.
    expected = {"torch": "native", "tensorflow": "split", "jax": "split"}
    assert default_implementation() == expected[keras.backend.backend()]


def test_layer_checks():
    run_layer_checks(
        GroupConv2D,
        dict(
            filters=4,
            kernel_size=3,
            groups=2,
            strides=2,
            padding="same",
            activation="relu",
        ),
        input_shape=(None, 5, 5, 4),
        expected_output_shape=(None, 3, 3, 4),
        expected_num_trainable_weights=2,  # kernel, bias
        expected_num_non_trainable_weights=0,
    )


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(filters=6, kernel_size=3, groups=4), "filters"),
        (dict(filters=4, kernel_size=3, groups=0), "groups"),
        (dict(filters=4, kernel_size=0, groups=2), "kernel_size"),
        (dict(filters=4, kernel_size=3, groups=2, padding="full"), "padding"),
        (
            dict(filters=4, kernel_size=3, groups=2, implementation="fft"),
            "implementation",
        ),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        GroupConv2D(**kwargs)


def test_channels_must_divide_into_groups():
    with pytest.raises(ValueError, match="groups"):
        GroupConv2D(4, 3, groups=4).build((None, 5, 5, 6))
