import importlib
import math

import keras
import numpy as np
import pytest
from keras import ops

from keras_parcaps.ops import (
    em_e_step,
    em_m_step,
    em_routing,
    inverse_temperatures,
    routing_backend,
)
from tests.backend_utils import gradients
from tests.markers import on_backend

# The module (`kp.ops.em_routing` is also the function's name).
em_routing_module = importlib.import_module("keras_parcaps.ops.em_routing")

SCALE = 100.0  # Gritzman's layer norm factor, as documented in em_routing.


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def numpy_m_step(V, a, R, beta_a, beta_u, lam, eps=1e-6, prior=1.0):
    """M-step of one routing problem, V (n_in, n_out, D), written with loops.

    Each variance is the MAP estimate under a prior worth `prior` votes of
    the problem's mean squared vote `q`."""
    n_in, n_out, D = V.shape
    q = np.array([np.mean(V[:, :, h] ** 2) + eps for h in range(D)])
    mu, var, logits = np.zeros((n_out, D)), np.zeros((n_out, D)), np.zeros(n_out)
    for j in range(n_out):
        r = np.array([R[i, j] * a[i] for i in range(n_in)])
        total = r.sum()
        for h in range(D):
            mu[j, h] = sum(r[i] * V[i, j, h] for i in range(n_in)) / (total + eps)
            var[j, h] = (
                sum(r[i] * (V[i, j, h] - mu[j, h]) ** 2 for i in range(n_in))
                + prior * q[h]
            ) / (total + prior + eps) + eps
        cost = sum(
            (beta_u[j] + 0.5 * math.log(var[j, h] / q[h]))
            * total
            * SCALE
            * n_out
            / n_in
            for h in range(D)
        )
        logits[j] = lam * (beta_a[j] - cost)
    return mu, var, logits


def numpy_e_step(V, mu, var, logits):
    n_in, n_out, D = V.shape
    R = np.zeros((n_in, n_out))
    for i in range(n_in):
        log_num = np.zeros(n_out)
        for j in range(n_out):
            log_p = sum(
                -((V[i, j, h] - mu[j, h]) ** 2) / (2 * var[j, h])
                - 0.5 * math.log(2 * math.pi * var[j, h])
                for h in range(D)
            )
            log_num[j] = math.log(_sigmoid(logits[j])) + log_p
        p = np.exp(log_num - log_num.max())
        R[i] = p / p.sum()
    return R


def numpy_em_routing(V, a, beta_a, beta_u, iterations, final_lambda=0.01, prior=1.0):
    """Procedure 1 of Hinton et al. for V (batch, n_in, n_out, D)."""
    poses, acts = [], []
    for n in range(V.shape[0]):
        R = np.full(V.shape[1:3], 1.0 / V.shape[2])
        for t in range(iterations):
            lam = final_lambda * (1 - 0.95 ** (t + 1))
            mu, var, logits = numpy_m_step(
                V[n], a[n], R, beta_a, beta_u, lam, prior=prior
            )
            if t < iterations - 1:
                R = numpy_e_step(V[n], mu, var, logits)
        poses.append(mu)
        acts.append(_sigmoid(logits))
    return np.stack(poses), np.stack(acts)


def _problem(rng, batch=2, n_in=7, n_out=3, dim=4):
    V = rng.normal(size=(batch, n_in, n_out, dim))
    a = rng.uniform(size=(batch, n_in))
    R = rng.dirichlet(np.ones(n_out), size=(batch, n_in))
    beta_a = rng.normal(size=n_out) * 10
    beta_u = rng.normal(size=n_out)
    return V, a, R, beta_a, beta_u


def test_inverse_temperature_schedule():
    np.testing.assert_allclose(
        inverse_temperatures(3, 0.01), [0.01 * (1 - 0.95**k) for k in (1, 2, 3)]
    )
    np.testing.assert_allclose(inverse_temperatures(2, 0.5), [0.025, 0.04875])


def test_one_m_step_and_e_step_match_numpy(rng):
    V, a, R, beta_a, beta_u = _problem(rng)
    f32 = [x.astype("float32") for x in (V, a, R, beta_a, beta_u)]
    mu, var, logits = em_m_step(*f32, inverse_temperature=0.3)
    R_new = em_e_step(f32[0], mu, var, logits)
    for n in range(V.shape[0]):
        mu_ref, var_ref, logits_ref = numpy_m_step(
            V[n], a[n], R[n], beta_a, beta_u, 0.3
        )
        np.testing.assert_allclose(
            ops.convert_to_numpy(mu)[n], mu_ref, atol=1e-4, rtol=1e-4
        )
        np.testing.assert_allclose(
            ops.convert_to_numpy(var)[n], var_ref, atol=1e-4, rtol=1e-4
        )
        np.testing.assert_allclose(
            ops.convert_to_numpy(logits)[n], logits_ref, atol=1e-4, rtol=1e-4
        )
        R_ref = numpy_e_step(V[n], mu_ref, var_ref, logits_ref)
        np.testing.assert_allclose(ops.convert_to_numpy(R_new)[n], R_ref, atol=1e-4)


@pytest.mark.parametrize("prior", [0.0, 2.5])
def test_m_step_variance_prior_matches_numpy(rng, prior):
    V, a, R, beta_a, beta_u = _problem(rng, n_in=3, n_out=4)
    f32 = [x.astype("float32") for x in (V, a, R, beta_a, beta_u)]
    _, var, logits = em_m_step(*f32, inverse_temperature=0.3, prior_votes=prior)
    for n in range(V.shape[0]):
        _, var_ref, logits_ref = numpy_m_step(
            V[n], a[n], R[n], beta_a, beta_u, 0.3, prior=prior
        )
        np.testing.assert_allclose(ops.convert_to_numpy(var)[n], var_ref, rtol=1e-4)
        np.testing.assert_allclose(
            ops.convert_to_numpy(logits)[n], logits_ref, atol=1e-4, rtol=1e-4
        )


def test_variance_prior_keeps_few_input_activations_from_saturating(rng):
    """Class-Caps of a small parallel network: 4 inputs, 10 classes."""
    V = (rng.normal(size=(8, 4, 10, 16)) * 0.03).astype("float32")
    a = np.full((8, 4), 0.5, "float32")
    zeros = np.zeros(10, "float32")
    _, hinton = em_routing(V, a, zeros, zeros, prior_votes=0)
    _, ours = em_routing(V, a, zeros, zeros)
    hinton, ours = ops.convert_to_numpy(hinton), ops.convert_to_numpy(ours)
    # k = 0: the classes the E-step hands an input to sit at 1, those left
    # without one at sigmoid(0) = 0.5, in every problem.
    assert np.all(hinton.max(-1) > 0.999) and (hinton > 0.999).mean() > 0.25
    assert np.all(np.abs(hinton - 0.5).min(-1) < 0.01)
    # k = 1: graded, and the same as the loop-by-loop numpy estimate.
    assert np.all(ours.max(-1) < 0.9)
    _, ours_ref = numpy_em_routing(V, a, zeros, zeros, 3)
    np.testing.assert_allclose(ours, ours_ref, atol=1e-4)


@pytest.mark.parametrize("iterations", [1, 2, 3])
def test_routing_matches_numpy(rng, iterations):
    V, a, _, beta_a, beta_u = _problem(rng, batch=2, n_in=9, n_out=4, dim=9)
    pose, act, R = em_routing(
        V.astype("float32"),
        a.astype("float32"),
        beta_a.astype("float32"),
        beta_u.astype("float32"),
        routing_iterations=iterations,
        return_assignments=True,
    )
    pose_ref, act_ref = numpy_em_routing(V, a, beta_a, beta_u, iterations)
    np.testing.assert_allclose(
        ops.convert_to_numpy(pose), pose_ref, atol=1e-4, rtol=1e-4
    )
    np.testing.assert_allclose(ops.convert_to_numpy(act), act_ref, atol=1e-4, rtol=1e-4)
    np.testing.assert_allclose(ops.convert_to_numpy(R).sum(-1), 1.0, rtol=1e-5)


def test_routing_is_exact_for_votes_far_from_zero(rng):
    # The iterations expand sum_i r (V - mu)^2 into moments of the votes;
    # uncentered, votes of 100 +- 0.01 would lose every digit of the spread.
    V, a, _, beta_a, beta_u = _problem(rng, batch=2, n_in=9, n_out=4, dim=9)
    V = 100.0 + 0.01 * V
    pose, act = em_routing(
        V.astype("float32"),
        a.astype("float32"),
        beta_a.astype("float32"),
        beta_u.astype("float32"),
        routing_iterations=3,
    )
    pose_ref, act_ref = numpy_em_routing(V, a, beta_a, beta_u, 3)
    np.testing.assert_allclose(ops.convert_to_numpy(pose), pose_ref, rtol=1e-6)
    np.testing.assert_allclose(ops.convert_to_numpy(act), act_ref, atol=1e-4)


def test_leading_grid_axes_are_independent_problems(rng):
    V = rng.normal(size=(2, 3, 2, 5, 2, 4)).astype("float32")
    a = rng.uniform(size=(2, 3, 2, 5)).astype("float32")
    beta = np.zeros(2, "float32")
    pose, act = em_routing(V, a, beta, beta)
    assert tuple(pose.shape) == (2, 3, 2, 2, 4) and tuple(act.shape) == (2, 3, 2, 2)
    pose_ref, act_ref = numpy_em_routing(
        V.reshape(12, 5, 2, 4).astype("float64"), a.reshape(12, 5), beta, beta, 3
    )
    np.testing.assert_allclose(
        ops.convert_to_numpy(pose).reshape(12, 2, 4), pose_ref, atol=1e-4
    )
    np.testing.assert_allclose(
        ops.convert_to_numpy(act).reshape(12, 2), act_ref, atol=1e-4
    )


def test_single_output_is_activation_weighted_mean(rng):
    V = rng.normal(size=(2, 6, 1, 4)).astype("float32")
    a = rng.uniform(size=(2, 6)).astype("float32")
    pose, _, R = em_routing(V, a, np.zeros(1), np.zeros(1), return_assignments=True)
    np.testing.assert_allclose(ops.convert_to_numpy(R), 1.0)
    expected = (a[..., None] * V[:, :, 0]).sum(1) / (a.sum(1)[:, None] + 1e-6)
    np.testing.assert_allclose(ops.convert_to_numpy(pose)[:, 0], expected, atol=1e-5)


def test_activations_do_not_depend_on_pose_scale(rng):
    V, a, _, _, _ = _problem(rng, n_in=8, n_out=3, dim=16)
    beta = np.zeros(3, "float32")
    acts = [
        ops.convert_to_numpy(
            em_routing((V * s).astype("float32"), a.astype("float32"), beta, beta)[1]
        )
        for s in (1e-1, 1.0, 1e3)
    ]
    np.testing.assert_allclose(acts[0], acts[1], atol=5e-3)
    np.testing.assert_allclose(acts[2], acts[1], atol=5e-3)


@pytest.mark.parametrize(
    "votes, acts",
    [
        (np.zeros((2, 5, 3, 16)), np.ones((2, 5))),
        (np.ones((2, 5, 3, 16)) * 1e4, np.zeros((2, 5))),
        (
            np.random.default_rng(1).normal(size=(2, 5, 3, 16)) * 1e4,
            np.random.default_rng(2).integers(0, 2, size=(2, 5)),
        ),
    ],
)
def test_finite_for_extreme_inputs(votes, acts):
    pose, act, R = em_routing(
        votes.astype("float32"),
        acts.astype("float32"),
        np.zeros(3),
        np.zeros(3),
        return_assignments=True,
    )
    for x in (pose, act, R):
        assert np.all(np.isfinite(ops.convert_to_numpy(x)))


def test_bad_arguments():
    with pytest.raises(ValueError, match="routing_iterations"):
        em_routing(
            np.zeros((1, 2, 2, 4)), np.zeros((1, 2)), np.zeros(2), np.zeros(2), 0
        )
    with pytest.raises(ValueError, match="votes"):
        em_routing(np.zeros((2, 2, 4)), np.zeros((2,)), np.zeros(2), np.zeros(2))
    with pytest.raises(ValueError, match="prior_votes"):
        em_routing(
            np.zeros((1, 2, 2, 4)),
            np.zeros((1, 2)),
            np.zeros(2),
            np.zeros(2),
            prior_votes=-1.0,
        )


@pytest.mark.parametrize("iterations", [1, 2, 3])
def test_single_output_matches_numpy_all_iterations(rng, iterations):
    """One output type: the M-step runs once (every assignment is 1), which
    must equal Procedure 1's every-iteration result."""
    V, a, _, beta_a, beta_u = _problem(rng, batch=2, n_in=9, n_out=1, dim=9)
    pose, act = em_routing(
        V.astype("float32"),
        a.astype("float32"),
        beta_a.astype("float32"),
        beta_u.astype("float32"),
        routing_iterations=iterations,
    )
    pose_ref, act_ref = numpy_em_routing(V, a, beta_a, beta_u, iterations)
    np.testing.assert_allclose(ops.convert_to_numpy(pose), pose_ref, atol=1e-5)
    np.testing.assert_allclose(ops.convert_to_numpy(act), act_ref, atol=1e-5)


class _Routing(keras.layers.Layer):
    """EM routing of weights: votes, activations, `beta_a`, `beta_u`."""

    def __init__(self, votes, activations, iterations):
        super().__init__()
        n_out = votes.shape[-2]
        self.iterations = iterations
        self.inputs = [
            self.add_weight(shape=value.shape, initializer="zeros")
            for value in (votes, activations, np.zeros(n_out), np.zeros(n_out))
        ]
        for weight, value in zip(
            self.inputs,
            (votes, activations, np.linspace(-1, 1, n_out), np.full(n_out, 0.1)),
        ):
            weight.assign(value.astype("float32"))

    def call(self, x, training=None):
        pose, act = em_routing(
            *map(ops.convert_to_tensor, self.inputs), routing_iterations=self.iterations
        )
        return ops.sum(ops.square(pose)) + 10 * ops.sum(
            act * (1.0 + ops.arange(act.shape[-1], dtype="float32"))
        )


@pytest.mark.parametrize("n_out, iterations", [(1, 3), (3, 1), (3, 2), (3, 3)])
def test_fast_and_keras_ops_paths_agree(rng, n_out, iterations):
    """`routing_backend`'s fast path (compiled on TF and JAX, one stacked
    gradient of the votes on PyTorch) and the plain `keras.ops` path give
    the same values and gradients of every input."""
    V, a, _, _, _ = _problem(rng, batch=2, n_in=7, n_out=n_out, dim=4)
    results = []
    for enabled in (True, False):
        routing_backend.set_jit_compile(enabled)
        try:
            layer = _Routing(V + 1.0, a, iterations)
            value = ops.convert_to_numpy(layer(None))
            results.append((value, gradients(layer, None, lambda y: y)))
        finally:
            routing_backend.set_jit_compile(False)
    (value_a, grads_a), (value_b, grads_b) = results
    np.testing.assert_allclose(value_a, value_b, rtol=1e-6)
    for grad_a, grad_b in zip(grads_a, grads_b):
        assert np.abs(grad_b).max() > 0
        np.testing.assert_allclose(grad_a, grad_b, rtol=1e-4, atol=1e-6)


def _numpy_objective(V, a, beta_a, beta_u, iterations):
    """`_Routing`'s value, from the numpy Procedure 1 (float64)."""
    pose, act = numpy_em_routing(V, a, beta_a, beta_u, iterations)
    return np.sum(pose**2) + 10 * np.sum(act * (1.0 + np.arange(act.shape[-1])))


@pytest.mark.parametrize("iterations", [1, 2, 3])
def test_gradients_match_finite_differences_of_numpy(rng, iterations):
    """Every input's gradient against central differences of the numpy
    Procedure 1 in float64. The routing stops the gradient at the votes'
    center, since its result does not depend on it; the votes sit away from
    zero here, so a missing gradient through the center would show."""
    V, a, _, _, _ = _problem(rng, batch=1, n_in=5, n_out=3, dim=4)
    V = V + 3.0
    beta_a, beta_u = np.linspace(-1, 1, 3), np.full(3, 0.1)
    layer = _Routing(V, a, iterations)
    inputs = [V, a, beta_a, beta_u]
    np.testing.assert_allclose(
        float(ops.convert_to_numpy(layer(None))),
        _numpy_objective(*inputs, iterations),
        rtol=1e-5,
    )
    grads = gradients(layer, None, lambda y: y)
    step = 1e-6
    for k, (value, grad) in enumerate(zip(inputs, grads)):
        expected = np.zeros_like(value)
        for index in np.ndindex(value.shape):
            shifted = [x.copy() for x in inputs]
            shifted[k][index] += step
            up = _numpy_objective(*shifted, iterations)
            shifted[k][index] -= 2 * step
            down = _numpy_objective(*shifted, iterations)
            expected[index] = (up - down) / (2 * step)
        np.testing.assert_allclose(grad, expected, rtol=2e-3, atol=2e-3)


@on_backend("torch", "the layout of a transposed view is PyTorch's")
def test_flattened_votes_are_contiguous_on_pytorch():
    """Every matrix product over the votes would copy a strided view."""
    import torch

    votes = torch.randn(2, 3, 7, 5, 16)
    flat = em_routing_module._flatten(votes)
    assert flat.is_contiguous()
    np.testing.assert_array_equal(
        flat.numpy(), votes.numpy().reshape(6, 7, 5, 16).transpose(0, 2, 1, 3)
    )
