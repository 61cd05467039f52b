import keras
import numpy as np
import pytest
from keras import ops

from keras_parcaps.layers import DRCaps
from tests.layer_checks import run_layer_checks
from tests.ops.test_routing import numpy_procedure_1


@pytest.mark.parametrize(
    "kwargs, input_shape, output_shape",
    [
        ({"num_capsules": 4, "capsule_dim": 6}, (None, 10, 5), (None, 4, 6)),
        (
            {"num_capsules": 3, "capsule_dim": 4, "share_weights": True},
            (None, 3, 3, 2, 5),
            (None, 3, 4),
        ),
        ({"num_capsules": 1, "capsule_dim": 8}, (None, 2, 2, 3, 5), (None, 1, 8)),
        (
            {"num_capsules": 1, "capsule_dim": 8, "share_weights": True},
            (None, 2, 2, 3, 5),
            (None, 1, 8),
        ),
        (
            {
                "num_capsules": 2,
                "capsule_dim": 3,
                "stop_gradient": True,
                "routing_iterations": 2,
            },
            (None, 6, 4),
            (None, 2, 3),
        ),
    ],
)
def test_layer_checks(kwargs, input_shape, output_shape):
    run_layer_checks(
        DRCaps,
        kwargs,
        input_shape,
        output_shape,
        expected_num_trainable_weights=1,
        expected_num_non_trainable_weights=0,
    )


def _numpy_votes(u, kernel, share_weights):
    """u_hat[b, i, j] = W_ij @ u_i with the layer's (n_w, in, out, dim) kernel."""
    batch = u.shape[0]
    in_dim = u.shape[-1]
    if share_weights:
        types = u.shape[-2]
        u = u.reshape(batch, -1, types, in_dim)
        votes = np.einsum("bptk,tkjd->bptjd", u, kernel)
    else:
        votes = np.einsum("bik,ikjd->bijd", u.reshape(batch, -1, in_dim), kernel)
    return votes.reshape(batch, -1, kernel.shape[2], kernel.shape[3])


# Unshared weights route over votes; shared weights on the 3x3 grid route
# factored (2 * in_dim <= 9 * 6); one output capsule is one matmul.
@pytest.mark.parametrize("share_weights", [False, True])
@pytest.mark.parametrize("num_capsules", [1, 4])
@pytest.mark.parametrize("in_dim", [5, 2])
def test_matches_numpy_procedure_1(rng, share_weights, num_capsules, in_dim):
    u = rng.normal(size=(2, 3, 3, 2, in_dim)).astype("float32")
    layer = DRCaps(num_capsules, 6, routing_iterations=3, share_weights=share_weights)
    layer.build(u.shape)
    kernel = rng.normal(size=layer.kernel.shape).astype("float32") * 0.5
    layer.kernel.assign(kernel)
    got = ops.convert_to_numpy(layer(u))
    expected, _ = numpy_procedure_1(
        _numpy_votes(u.astype("float64"), kernel, share_weights), 3
    )
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)
    assert np.all(np.linalg.norm(got, axis=-1) < 1)


def test_weight_counts():
    unshared = DRCaps(10, 16)
    unshared.build((None, 6, 6, 32, 8))
    assert unshared.kernel.shape == (1152, 8, 10, 16)
    shared = DRCaps(10, 16, share_weights=True)
    shared.build((None, 6, 6, 32, 8))
    assert shared.kernel.shape == (32, 8, 10, 16)


@pytest.mark.parametrize(
    "n_in, num_capsules, expected_std",
    [
        # Routed sums of length 1 at init: std = n_out / sqrt(n_in * dim).
        (1152, 10, 10 / np.sqrt(1152 * 16)),
        # 15 Class-Caps over 2 Mid-Caps: length (2 * 0.2 * 2 / 15) ** (1/3).
        (2, 15, (0.8 / 15) ** (1 / 3) * 15 / np.sqrt(2 * 16)),
    ],
)
def test_auto_init_follows_the_rule(n_in, num_capsules, expected_std):
    layer = DRCaps(num_capsules, 16)
    assert layer.get_config()["kernel_initializer"] == "auto"
    layer.build((None, n_in, 8))
    std = float(np.std(ops.convert_to_numpy(layer.kernel)))
    assert abs(std - expected_std) < 0.05 * expected_std


def test_auto_init_routed_sums_near_unit_length(rng):
    """What the rule is for: squashed inputs of length 1 give outputs whose
    pre-squash length is about 1 (squash(1) = 0.5)."""
    u = rng.normal(size=(64, 288, 8))
    u /= np.linalg.norm(u, axis=-1, keepdims=True)
    lengths = np.linalg.norm(
        ops.convert_to_numpy(DRCaps(10, 16, routing_iterations=1)(u)), axis=-1
    )
    assert 0.35 < np.median(lengths) < 0.65


def test_old_config_with_explicit_initializer_loads():
    """A `.keras` file of the old layer stored its initializer serialized."""
    config = DRCaps(10, 16).get_config()
    config["kernel_initializer"] = keras.initializers.serialize(
        keras.initializers.RandomNormal(stddev=0.01)
    )
    layer = DRCaps.from_config(config)
    layer.build((None, 1152, 8))
    assert 0.009 < float(np.std(ops.convert_to_numpy(layer.kernel))) < 0.011


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (
            {"num_capsules": 0, "capsule_dim": 4},
            "num_capsules.*Received: num_capsules=0",
        ),
        (
            {"num_capsules": 2, "capsule_dim": -1},
            "capsule_dim.*Received: capsule_dim=-1",
        ),
        (
            {"num_capsules": 2, "capsule_dim": 4, "routing_iterations": 0},
            "routing_iterations.*Received: routing_iterations=0",
        ),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        DRCaps(**kwargs)


def test_bad_input_rank():
    with pytest.raises(ValueError, match="input_shape"):
        DRCaps(2, 4).build((None, 8))
    with pytest.raises(ValueError, match="share_weights"):
        DRCaps(2, 4, share_weights=True).build((None, 10, 8))


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_mixed_precision_routes_in_float32(rng, policy):
    import keras

    from tests.backend_utils import gradients

    keras.config.set_dtype_policy(policy)
    inputs = keras.Input((3, 3, 4, 8))
    outputs = DRCaps(5, 16, share_weights=True)(inputs)
    model = keras.Model(inputs, outputs)
    layer = model.layers[-1]
    assert layer.kernel.dtype == "float32"
    x = (rng.normal(size=(2, 3, 3, 4, 8)) * 1e3).astype("float32")
    out = ops.convert_to_numpy(model(x))
    assert out.dtype == np.dtype(policy.split("_")[1])
    assert np.all(np.isfinite(out))
    grads = gradients(model, x, lambda y: ops.sum(ops.cast(y, "float32")))
    assert all(np.all(np.isfinite(g)) for g in grads)


@pytest.mark.parametrize("share_weights", [False, True])
def test_compiled_routing_in_a_model(rng, compiled_routing, share_weights):
    """The default outside tests: routing compiled by the backend's JIT
    inside a model that is not, equal to the keras.ops path, and trainable."""
    from keras_parcaps.ops import routing_backend

    u = rng.normal(size=(4, 2, 2, 3, 8)).astype("float32")
    inputs = keras.Input(u.shape[1:])
    model = keras.Model(inputs, DRCaps(3, 4, share_weights=share_weights)(inputs))
    compiled = ops.convert_to_numpy(model(u))
    routing_backend.set_jit_compile(False)
    plain = ops.convert_to_numpy(model(u))
    routing_backend.set_jit_compile(True)
    np.testing.assert_allclose(compiled, plain, rtol=1e-5, atol=1e-6)
    before = ops.convert_to_numpy(model.trainable_weights[0])
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    history = model.fit(u, rng.normal(size=(4, 3, 4)), epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    assert not np.allclose(before, ops.convert_to_numpy(model.trainable_weights[0]))
