import numpy as np
import pytest
from keras import ops

from keras_parcaps.layers import PrimaryCaps
from tests.layer_checks import run_layer_checks


@pytest.mark.parametrize(
    "kwargs, input_shape, output_shape",
    [
        (
            {"num_capsules": 3, "capsule_dim": 16, "kind": "matrix"},
            (None, 4, 4, 5),
            (None, 4, 4, 3, 17),
        ),
        (
            {
                "num_capsules": 2,
                "capsule_dim": 9,
                "kind": "matrix",
                "kernel_size": 3,
                "strides": 2,
                "padding": "same",
            },
            (None, 5, 5, 3),
            (None, 3, 3, 2, 10),
        ),
    ],
)
def test_layer_checks(kwargs, input_shape, output_shape):
    run_layer_checks(
        PrimaryCaps,
        kwargs,
        input_shape,
        output_shape,
        # the pose and the activation convolutions, kernel and bias each
        expected_num_trainable_weights=4,
        expected_num_non_trainable_weights=0,
    )


def test_matches_numpy_pointwise_convs(rng):
    x = rng.normal(size=(2, 3, 3, 5)).astype("float32")
    layer = PrimaryCaps(4, 25, kind="matrix")
    out = ops.convert_to_numpy(layer(x))
    w_pose, b_pose = [ops.convert_to_numpy(w) for w in layer.pose_conv.weights]
    w_act, b_act = [ops.convert_to_numpy(w) for w in layer.activation_conv.weights]
    poses = np.einsum("bhwc,cf->bhwf", x, w_pose[0, 0]) + b_pose
    poses = poses.reshape(2, 3, 3, 4, 25)
    acts = 1 / (1 + np.exp(-(np.einsum("bhwc,cf->bhwf", x, w_act[0, 0]) + b_act)))
    np.testing.assert_allclose(out[..., :25], poses, atol=1e-5)
    np.testing.assert_allclose(out[..., 25], acts, atol=1e-6)
    assert np.all((out[..., -1] > 0) & (out[..., -1] < 1))


def test_non_square_capsule_dim_is_rejected():
    with pytest.raises(ValueError, match="capsule_dim.*perfect square"):
        PrimaryCaps(4, 15, kind="matrix")
