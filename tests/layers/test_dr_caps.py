import keras
import numpy as np
import pytest
from keras import ops

from keras_parcaps.layers import DRCaps
from keras_parcaps.layers.dr_caps import _route_factored, _route_votes
from tests.backend_utils import gradients
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
        DRCaps, kwargs, input_shape, output_shape,
        expected_num_trainable_weights=1, expected_num_non_trainable_weights=0,
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


# in_dim 5 routes unshared weights over votes, in_dim 2 factored; shared
# weights on the 3x3 grid always route factored.
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


class _Routing(keras.layers.Layer):
    """Inputs and kernel as weights, so one gradient call covers both."""

    def __init__(self, route, u, kernel, stop_gradient, iterations):
        super().__init__()
        self.route, self.stop, self.iterations = route, stop_gradient, iterations
        self.u = self.add_weight(shape=u.shape, initializer="zeros", name="u")
        self.kernel = self.add_weight(
            shape=kernel.shape, initializer="zeros", name="kernel"
        )
        self.u.assign(u)
        self.kernel.assign(kernel)

    def call(self, x, training=None):
        return self.route(self.u.value, self.kernel.value, self.iterations, self.stop)


@pytest.mark.parametrize("grid", [1, 4])
@pytest.mark.parametrize("iterations", [1, 2, 3])
@pytest.mark.parametrize("stop_gradient", [False, True])
def test_factored_routing_equals_routing_over_votes(
    rng, grid, iterations, stop_gradient
):
    u = rng.normal(size=(3, grid, 5, 4)).astype("float32")
    kernel = rng.normal(size=(5, 4, 3, 6)).astype("float32") * 0.3
    target = rng.normal(size=(3, 3, 6)).astype("float32")
    results = []
    for route in (_route_votes, _route_factored):
        layer = _Routing(route, u, kernel, stop_gradient, iterations)
        outputs = ops.convert_to_numpy(layer(None))
        grads = gradients(layer, None, lambda v: ops.sum(ops.multiply(v, target)))
        results.append((outputs, grads))
    (votes_out, votes_grads), (factored_out, factored_grads) = results
    np.testing.assert_allclose(factored_out, votes_out, rtol=1e-5, atol=1e-6)
    for factored, votes in zip(factored_grads, votes_grads, strict=True):
        assert np.abs(votes).max() > 0
        np.testing.assert_allclose(factored, votes, rtol=1e-4, atol=1e-6)


def test_weight_counts():
    unshared = DRCaps(10, 16)
    unshared.build((None, 6, 6, 32, 8))
    assert unshared.kernel.shape == (1152, 8, 10, 16)
    shared = DRCaps(10, 16, share_weights=True)
    shared.build((None, 6, 6, 32, 8))
    assert shared.kernel.shape == (32, 8, 10, 16)


def test_default_init_is_small_normal():
    layer = DRCaps(10, 16)
    layer.build((None, 1152, 8))
    std = float(np.std(ops.convert_to_numpy(layer.kernel)))
    assert 0.009 < std < 0.011


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
