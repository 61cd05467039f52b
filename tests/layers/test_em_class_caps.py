import numpy as np
import pytest
from keras import ops

from keras_parcaps.layers import EMClassCaps
from tests.layer_checks import run_layer_checks
from tests.layers.test_em_conv_caps import (
    assert_finite_outputs_and_gradients,
    matrix_capsules,
)
from tests.ops.test_em_routing import numpy_em_routing


@pytest.mark.parametrize(
    "kwargs, input_shape, output_shape",
    [
        ({"num_classes": 3}, (None, 2, 2, 3, 17), (None, 3, 17)),
        (
            {"num_classes": 4, "coordinate_addition": True, "routing_iterations": 2},
            (None, 3, 2, 2, 10),
            (None, 4, 10),
        ),
    ],
)
def test_layer_checks(kwargs, input_shape, output_shape):
    rng = np.random.default_rng(0)
    run_layer_checks(
        EMClassCaps,
        kwargs,
        input_shape,
        output_shape,
        input_fn=lambda b: matrix_capsules(rng, (b, *input_shape[1:])),
        # kernel, beta_a, beta_u
        expected_num_trainable_weights=3,
        expected_num_non_trainable_weights=0,
    )


def numpy_em_class_caps(x, kernel, beta_a, beta_u, iterations, coordinates):
    batch, height, width, n_types, size = x.shape
    side = int(round(np.sqrt(size - 1)))
    votes, acts = [], []
    for r in range(height):
        for c in range(width):
            for t in range(n_types):
                pose = x[:, r, c, t, :-1].reshape(batch, side, side)
                v = np.stack(
                    [pose @ kernel[t, j] for j in range(kernel.shape[1])], axis=1
                )
                if coordinates:
                    v[:, :, 0, side - 1] += (r + 0.5) / height
                    v[:, :, 1, side - 1] += (c + 0.5) / width
                votes.append(v.reshape(batch, kernel.shape[1], -1))
                acts.append(x[:, r, c, t, -1])
    pose, act = numpy_em_routing(
        np.stack(votes, 1), np.stack(acts, 1), beta_a, beta_u, iterations
    )
    return np.concatenate([pose, act[..., None]], axis=-1)


@pytest.mark.parametrize("coordinates", [False, True])
@pytest.mark.parametrize("size", [10, 17])
def test_matches_numpy(rng, coordinates, size):
    x = matrix_capsules(rng, (2, 3, 2, 2, size))
    layer = EMClassCaps(4, routing_iterations=3, coordinate_addition=coordinates)
    layer.build(x.shape)
    kernel = rng.normal(size=layer.kernel.shape).astype("float32")
    beta_a = rng.normal(size=4).astype("float32") * 5
    beta_u = rng.normal(size=4).astype("float32")
    layer.set_weights([kernel, beta_a, beta_u])
    expected = numpy_em_class_caps(
        x.astype("float64"), kernel, beta_a, beta_u, 3, coordinates
    )
    np.testing.assert_allclose(
        ops.convert_to_numpy(layer(x)), expected, atol=1e-4, rtol=1e-4
    )


def test_coordinate_addition_touches_entries_3_and_7(rng):
    x = np.zeros((1, 2, 2, 1, 17), "float32")
    x[..., -1] = 1.0
    layer = EMClassCaps(1, coordinate_addition=True)
    pose = ops.convert_to_numpy(layer(x))[0, 0, :-1]
    # Zero poses vote zero; the mean of the added cell centres remains.
    expected = np.zeros(16)
    expected[3] = expected[7] = 0.5
    np.testing.assert_allclose(pose, expected, atol=1e-5)


def test_weights_shared_over_positions():
    layer = EMClassCaps(15)
    layer.build((None, 12, 12, 10, 17))
    assert layer.kernel.shape == (10, 15, 4, 4)
    assert layer.beta_a.shape == (15,) and layer.beta_u.shape == (15,)


@pytest.mark.parametrize("policy", ["float32", "mixed_float16", "mixed_bfloat16"])
def test_no_nan_or_inf(policy):
    import keras

    keras.config.set_dtype_policy(policy)
    layer = EMClassCaps(3, coordinate_addition=True)
    keras.config.set_dtype_policy("float32")
    assert_finite_outputs_and_gradients(layer, (2, 3, 3, 2, 17), policy)


@pytest.mark.parametrize(
    "kwargs, shape, match",
    [
        ({"num_classes": 0}, None, "num_classes"),
        ({"num_classes": 2, "routing_iterations": 0}, None, "routing_iterations"),
        ({"num_classes": 2, "epsilon": 0.0}, None, "epsilon"),
        ({"num_classes": 2}, (None, 4, 4, 2, 15), "square"),
        ({"num_classes": 2}, (None, 16, 17), "shape"),
    ],
)
def test_bad_arguments(kwargs, shape, match):
    with pytest.raises(ValueError, match=match):
        EMClassCaps(**kwargs).build(shape or (None, 3, 3, 2, 17))
