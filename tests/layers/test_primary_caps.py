import numpy as np
import pytest
from keras import ops

from keras_parcaps.layers import PrimaryCaps
from tests.layer_checks import run_layer_checks
from tests.ops.test_capsule_ops import numpy_squash


@pytest.mark.parametrize(
    "kwargs, input_shape, output_shape",
    [
        (
            {"num_capsules": 4, "capsule_dim": 3, "kernel_size": 3, "strides": 2},
            (None, 9, 9, 2),
            (None, 4, 4, 4, 3),
        ),
        (
            {"num_capsules": 2, "capsule_dim": 5, "kernel_size": 3, "padding": "same"},
            (None, 6, 5, 3),
            (None, 6, 5, 2, 5),
        ),
    ],
)
def test_layer_checks(kwargs, input_shape, output_shape):
    run_layer_checks(
        PrimaryCaps,
        kwargs,
        input_shape,
        output_shape,
        expected_num_trainable_weights=2,
        expected_num_non_trainable_weights=0,
    )


def test_vector_capsules_are_squashed_conv_channels(rng):
    x = rng.normal(size=(2, 5, 5, 3)).astype("float32")
    layer = PrimaryCaps(num_capsules=2, capsule_dim=4, kernel_size=1)
    out = ops.convert_to_numpy(layer(x))
    kernel = ops.convert_to_numpy(layer.pose_conv.kernel)[0, 0]  # (3, 8)
    bias = ops.convert_to_numpy(layer.pose_conv.bias)
    conv = x @ kernel + bias  # a 1x1 convolution
    expected = numpy_squash(conv.reshape(2, 5, 5, 2, 4))
    np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-6)
    assert np.all(np.linalg.norm(out, axis=-1) < 1)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (
            {"num_capsules": 0, "capsule_dim": 8},
            "num_capsules.*Received: num_capsules=0",
        ),
        ({"num_capsules": 2, "capsule_dim": 0}, "capsule_dim.*Received: capsule_dim=0"),
        (
            {"num_capsules": 2, "capsule_dim": 8, "kind": "ring"},
            "kind.*Received: kind='ring'",
        ),
        ({"num_capsules": 2, "capsule_dim": 8, "padding": "full"}, "padding"),
        ({"num_capsules": 2, "capsule_dim": 8, "kind": "matrix"}, "capsule_dim=8"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        PrimaryCaps(**kwargs)


def test_bad_input_rank():
    with pytest.raises(ValueError, match="4D input"):
        PrimaryCaps(2, 4).build((None, 8, 8))
