import keras
import numpy as np
import pytest
from keras import ops

from keras_parcaps.layers import EMConvCaps
from tests.backend_utils import gradients
from tests.layer_checks import run_layer_checks
from tests.ops.test_em_routing import numpy_em_routing


def matrix_capsules(rng, shape):
    """Poses ~ N(0, 1), activations ~ U(0, 1): `shape[-1] = P*P + 1`."""
    poses = rng.normal(size=(*shape[:-1], shape[-1] - 1))
    acts = rng.uniform(size=(*shape[:-1], 1))
    return np.concatenate([poses, acts], axis=-1).astype("float32")


@pytest.mark.parametrize(
    "kwargs, input_shape, output_shape",
    [
        (
            {"num_capsules": 3, "kernel_size": 3, "strides": 2},
            (None, 5, 5, 2, 17),
            (None, 2, 2, 3, 17),
        ),
        (
            {
                "num_capsules": 2,
                "kernel_size": 3,
                "strides": 2,
                "padding": "same",
                "routing_iterations": 2,
            },
            (None, 5, 4, 2, 10),
            (None, 3, 2, 2, 10),
        ),
        (
            {"num_capsules": 1, "kernel_size": 1},
            (None, 2, 3, 3, 26),
            (None, 2, 3, 1, 26),
        ),
    ],
)
def test_layer_checks(kwargs, input_shape, output_shape):
    rng = np.random.default_rng(0)
    run_layer_checks(
        EMConvCaps,
        kwargs,
        input_shape,
        output_shape,
        input_fn=lambda b: matrix_capsules(rng, (b, *input_shape[1:])),
        # kernel, beta_a, beta_u
        expected_num_trainable_weights=3,
        expected_num_non_trainable_weights=0,
    )


def numpy_em_conv_caps(x, kernel, beta_a, beta_u, k, s, iterations, padding):
    """Loops over output positions: windows, votes M W, then EM per window."""
    batch, height, width, n_types, size = x.shape
    side = int(round(np.sqrt(size - 1)))
    if padding == "same":
        out_h, out_w = -(-height // s), -(-width // s)
        ph = max((out_h - 1) * s + k - height, 0)
        pw = max((out_w - 1) * s + k - width, 0)
        x = np.pad(
            x,
            [(0, 0), (ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2), (0, 0), (0, 0)],
        )
    else:
        out_h, out_w = (height - k) // s + 1, (width - k) // s + 1
    n_out = kernel.shape[2]
    out = np.zeros((batch, out_h, out_w, n_out, size))
    for oy in range(out_h):
        for ox in range(out_w):
            votes, acts = [], []
            for dy in range(k):
                for dx in range(k):
                    for t in range(n_types):
                        cap = x[:, oy * s + dy, ox * s + dx, t]
                        pose = cap[:, :-1].reshape(batch, side, side)
                        votes.append(
                            np.stack(
                                [
                                    (pose @ kernel[dy * k + dx, t, j]).reshape(
                                        batch, -1
                                    )
                                    for j in range(n_out)
                                ],
                                axis=1,
                            )
                        )
                        acts.append(cap[:, -1])
            pose, act = numpy_em_routing(
                np.stack(votes, 1), np.stack(acts, 1), beta_a, beta_u, iterations
            )
            out[:, oy, ox, :, :-1], out[:, oy, ox, :, -1] = pose, act
    return out


@pytest.mark.parametrize(
    "k, s, padding, shape",
    [(3, 2, "valid", (2, 5, 6, 2, 10)), (2, 1, "same", (1, 3, 3, 2, 17))],
)
def test_matches_numpy(rng, k, s, padding, shape):
    x = matrix_capsules(rng, shape)
    layer = EMConvCaps(
        3, kernel_size=k, strides=s, padding=padding, routing_iterations=2
    )
    layer.build(x.shape)
    kernel = rng.normal(size=layer.kernel.shape).astype("float32")
    beta_a = rng.normal(size=3).astype("float32") * 5
    beta_u = rng.normal(size=3).astype("float32")
    layer.set_weights([kernel, beta_a, beta_u])
    got = ops.convert_to_numpy(layer(x))
    expected = numpy_em_conv_caps(
        x.astype("float64"), kernel, beta_a, beta_u, k, s, 2, padding
    )
    np.testing.assert_allclose(got, expected, atol=1e-4, rtol=1e-4)


def test_weights_per_offset_type_and_output(rng):
    layer = EMConvCaps(1, kernel_size=3, strides=2)
    layer.build((None, 25, 25, 32, 17))
    assert layer.kernel.shape == (9, 32, 1, 4, 4)
    assert layer.beta_a.shape == (1,) and layer.beta_u.shape == (1,)
    assert layer.compute_output_shape((None, 25, 25, 32, 17)) == (None, 12, 12, 1, 17)


class _Scale(keras.layers.Layer):
    """Trainable ones in float32, output in `out_dtype`: its gradient is the
    capsule layer's input gradient (in `out_dtype`), summed in float32."""

    def __init__(self, out_dtype):
        super().__init__(dtype="float32")
        self.out_dtype = out_dtype

    def build(self, input_shape):
        self.scale = self.add_weight(shape=(input_shape[-1],), initializer="ones")

    def call(self, x):
        return ops.cast(x * self.scale, self.out_dtype)


def extreme_capsules(rng, shape):
    """All-zero poses, activations exactly 0 and 1, and poses of 1e4."""
    zeros = np.zeros(shape, "float32")
    ones = zeros.copy()
    ones[..., -1] = 1.0
    huge = matrix_capsules(rng, shape)
    huge[..., :-1] *= 1e4
    huge[..., -1] = rng.integers(0, 2, size=shape[:-1])
    mixed = matrix_capsules(rng, shape)
    mixed[0, ..., :-1] = 0.0
    mixed[..., -1] = rng.integers(0, 2, size=shape[:-1])
    return [zeros, ones, huge, mixed] + [
        matrix_capsules(np.random.default_rng(seed), shape) * 3 for seed in range(4)
    ]


def assert_finite_outputs_and_gradients(layer, shape, policy):
    keras.config.set_dtype_policy(policy)
    try:
        rng = np.random.default_rng(0)
        inputs = keras.Input(shape[1:])
        out_dtype = keras.config.dtype_policy().compute_dtype
        scale = _Scale(out_dtype)
        model = keras.Model(inputs, layer(scale(inputs)))
        for x in extreme_capsules(rng, shape):
            out = ops.convert_to_numpy(ops.cast(model(x), "float32"))
            assert np.all(np.isfinite(out)), policy
            grads = gradients(model, x, lambda y: ops.sum(ops.cast(y, "float32")))
            for weight, grad in zip(model.trainable_weights, grads):
                if weight is scale.scale and policy == "mixed_float16":
                    # The input gradient is cast to float16 on its way out:
                    # where a whole window has activation 0 it is
                    # |V| / epsilon (1e10 for poses of 1e4), finite in the
                    # float32 routing but beyond float16's range.
                    continue
                assert np.all(np.isfinite(grad)), (policy, weight.path)
    finally:
        keras.config.set_dtype_policy("float32")


@pytest.mark.parametrize("policy", ["float32", "mixed_float16", "mixed_bfloat16"])
def test_no_nan_or_inf(policy):
    keras.config.set_dtype_policy(policy)
    layer = EMConvCaps(2, kernel_size=3, strides=2, padding="same")
    keras.config.set_dtype_policy("float32")
    assert_finite_outputs_and_gradients(layer, (2, 5, 5, 3, 17), policy)


def test_mixed_precision_output_dtype(rng):
    layer = EMConvCaps(2, kernel_size=3, dtype="mixed_float16")
    out = layer(matrix_capsules(rng, (1, 3, 3, 2, 17)).astype("float16"))
    assert keras.backend.standardize_dtype(out.dtype) == "float16"
    assert keras.backend.standardize_dtype(layer.kernel.dtype) == "float32"


@pytest.mark.parametrize(
    "kwargs, shape, match",
    [
        ({"num_capsules": 2, "strides": 0}, None, "strides.*Received: strides=0"),
        ({"num_capsules": 2, "kernel_size": 0}, None, "kernel_size"),
        ({"num_capsules": 0}, None, "num_capsules"),
        ({"num_capsules": 2, "padding": "full"}, None, "padding"),
        ({"num_capsules": 2, "routing_iterations": 0}, None, "routing_iterations"),
        ({"num_capsules": 2, "final_lambda": 0.0}, None, "final_lambda"),
        ({"num_capsules": 2, "kernel_size": 5}, (None, 4, 6, 2, 17), "larger than"),
        ({"num_capsules": 2}, (None, 4, 4, 2, 16), "square"),
        ({"num_capsules": 2}, (None, 4, 4, 17), "shape"),
    ],
)
def test_bad_arguments(kwargs, shape, match):
    with pytest.raises(ValueError, match=match):
        EMConvCaps(**kwargs).build(shape or (None, 5, 5, 2, 17))
