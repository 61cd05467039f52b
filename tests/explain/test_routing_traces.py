"""Routing traces against numpy Procedure 1 and the layers' own outputs."""

import keras
import numpy as np
import pytest
from keras import ops

from keras_parcaps.explain import dr_routing_trace, em_routing_trace
from keras_parcaps.layers import DRCaps, EMClassCaps, EMConvCaps


def numpy_procedure_1_trace(u, kernel, share_weights, iterations):
    """Votes from the weights, then Sabour et al.'s Procedure 1 in float64,
    keeping `c` and `u_hat . v` of every iteration."""
    u = u.astype("float64")
    kernel = kernel.astype("float64")
    batch, in_dim = u.shape[0], u.shape[-1]
    if share_weights:
        u = u.reshape(batch, -1, kernel.shape[0], in_dim)
        u_hat = np.einsum("bptk,tkjd->bptjd", u, kernel)
    else:
        u_hat = np.einsum("bik,ikjd->bijd", u.reshape(batch, -1, in_dim), kernel)
    u_hat = u_hat.reshape(batch, -1, *kernel.shape[2:])
    b = np.zeros(u_hat.shape[:3])
    couplings, agreements = [], []
    for _ in range(iterations):
        c = np.exp(b) / np.exp(b).sum(-1, keepdims=True)
        s = np.einsum("bij,bijd->bjd", c, u_hat)
        norm2 = (s**2).sum(-1, keepdims=True)
        v = norm2 / (1 + norm2) * s / np.sqrt(norm2 + 1e-7)
        agreement = np.einsum("bijd,bjd->bij", u_hat, v)
        b = b + agreement
        couplings.append(c)
        agreements.append(agreement)
    return np.stack(couplings), np.stack(agreements), v


@pytest.mark.parametrize(
    "input_shape, share_weights, num_capsules",
    [((4, 6, 5), False, 3), ((4, 3, 3, 2, 4), True, 5), ((2, 2, 2, 3, 4), False, 1)],
)
def test_dr_trace_matches_numpy_procedure_1(
    rng, input_shape, share_weights, num_capsules
):
    layer = DRCaps(
        num_capsules,
        6,
        routing_iterations=3,
        share_weights=share_weights,
        kernel_initializer=keras.initializers.RandomNormal(stddev=0.5),
    )
    u = rng.normal(size=input_shape).astype("float32")
    v = ops.convert_to_numpy(layer(u))
    trace = dr_routing_trace(layer, u)
    kernel = ops.convert_to_numpy(layer.kernel)
    c_ref, a_ref, v_ref = numpy_procedure_1_trace(u, kernel, share_weights, 3)
    np.testing.assert_allclose(trace["coupling"], c_ref, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(trace["agreement"], a_ref, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(trace["outputs"][-1], v_ref, rtol=1e-4, atol=1e-5)
    # The recomputation reproduces the layer's own (fast-path) outputs.
    np.testing.assert_allclose(trace["outputs"][-1], v, atol=1e-5)
    np.testing.assert_allclose(trace["coupling"].sum(-1), 1.0, atol=1e-5)
    np.testing.assert_allclose(trace["coupling"][0], 1.0 / num_capsules, atol=1e-6)
    # The contributions add up to the pre-squash length |s_j|.
    s = np.einsum("bij,bijd->bjd", trace["coupling"][-1], trace["votes"])
    np.testing.assert_allclose(
        trace["contribution"].sum(1), np.linalg.norm(s, axis=-1), rtol=1e-4, atol=1e-5
    )


def test_dr_trace_rejects_other_layers():
    with pytest.raises(ValueError, match="must be a `DRCaps` layer"):
        dr_routing_trace(keras.layers.Dense(2), np.zeros((1, 2, 2)))


@pytest.mark.parametrize(
    "layer, input_shape",
    [
        (EMClassCaps(4, coordinate_addition=True), (3, 3, 2, 5, 17)),
        (EMConvCaps(3, kernel_size=3, strides=2, padding="same"), (2, 6, 5, 4, 10)),
        (EMConvCaps(2, kernel_size=2, strides=1), (2, 4, 4, 3, 17)),
    ],
)
def test_em_trace_reproduces_the_layer(rng, layer, input_shape):
    x = rng.uniform(size=input_shape).astype("float32")
    y = ops.convert_to_numpy(layer(x))
    trace = em_routing_trace(layer, x)
    iterations = layer.routing_iterations
    assert trace["assignments"].shape[0] == iterations
    np.testing.assert_allclose(trace["activations"][-1], y[..., -1], atol=1e-5)
    np.testing.assert_allclose(trace["poses"][-1], y[..., :-1], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(trace["assignments"].sum(-1), 1.0, atol=1e-5)
    n_out = trace["assignments"].shape[-1]
    np.testing.assert_allclose(trace["assignments"][0], 1.0 / n_out, atol=1e-6)
    np.testing.assert_allclose(trace["contribution"].sum(-2), 1.0, atol=1e-5)
    # The first M-step's activation only depends on the uniform assignments:
    # a_j = sigmoid(lambda_1 (beta_a - cost_j)), the pose a weighted mean.
    weights = trace["input_activations"][..., None] / n_out
    mean = np.einsum("...ij,...ijd->...jd", weights, trace["votes"]) / (
        weights.sum(-2)[..., None] + 1e-6
    )
    np.testing.assert_allclose(trace["poses"][0], mean, rtol=1e-4, atol=1e-5)
