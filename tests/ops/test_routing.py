import keras
import numpy as np
import pytest
from keras import ops

from keras_parcaps.ops import (
    dynamic_routing,
    dynamic_routing_from_inputs,
    routing,
    routing_backend,
    routing_formulation,
    squash,
)
from tests.backend_utils import outputs_and_gradients
from tests.ops.test_capsule_ops import numpy_squash


def numpy_procedure_1(u_hat, iterations):
    """Sabour et al. (2017), Procedure 1, written out with loops over i, j."""
    batch, n_in, n_out, _ = u_hat.shape
    v = None
    for n in range(batch):
        b = np.zeros((n_in, n_out))
        for r in range(iterations):
            c = np.exp(b) / np.exp(b).sum(axis=1, keepdims=True)
            s = np.zeros((n_out, u_hat.shape[-1]))
            for i in range(n_in):
                for j in range(n_out):
                    s[j] += c[i, j] * u_hat[n, i, j]
            v_n = numpy_squash(s)
            if r < iterations - 1:
                for i in range(n_in):
                    for j in range(n_out):
                        b[i, j] += u_hat[n, i, j] @ v_n[j]
        if v is None:
            v = np.zeros((batch, n_out, u_hat.shape[-1]))
            cs = np.zeros((batch, n_in, n_out))
        v[n], cs[n] = v_n, c
    return v, cs


@pytest.mark.parametrize("iterations", [1, 2, 3, 5])
def test_dynamic_routing_matches_procedure_1(rng, iterations):
    u_hat = rng.normal(size=(3, 7, 4, 5)).astype("float32")
    v, c = dynamic_routing(u_hat, iterations, return_coupling=True)
    v_ref, c_ref = numpy_procedure_1(u_hat.astype("float64"), iterations)
    np.testing.assert_allclose(ops.convert_to_numpy(v), v_ref, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(ops.convert_to_numpy(c), c_ref, rtol=1e-4, atol=1e-5)


def test_coupling_sums_to_one_and_norms_below_one(rng):
    u_hat = (rng.normal(size=(4, 30, 10, 16)) * 3).astype("float32")
    v, c = dynamic_routing(u_hat, 3, return_coupling=True)
    np.testing.assert_allclose(ops.convert_to_numpy(c).sum(-1), 1.0, rtol=1e-5)
    assert np.all(np.linalg.norm(ops.convert_to_numpy(v), axis=-1) < 1)


def test_single_output_has_coupling_one(rng):
    u_hat = rng.normal(size=(2, 9, 1, 4)).astype("float32")
    v, c = dynamic_routing(u_hat, 3, return_coupling=True)
    assert np.all(ops.convert_to_numpy(c) == 1)
    np.testing.assert_allclose(
        ops.convert_to_numpy(v), numpy_squash(u_hat.sum(axis=1)), rtol=1e-5
    )


def test_stop_gradient_keeps_forward_values(rng):
    u_hat = rng.normal(size=(2, 9, 3, 4)).astype("float32")
    np.testing.assert_allclose(
        ops.convert_to_numpy(dynamic_routing(u_hat, stop_gradient=True)),
        ops.convert_to_numpy(dynamic_routing(u_hat)),
        rtol=1e-6,
    )


def test_routing_is_float32_under_half_inputs(rng):
    u_hat = rng.normal(size=(2, 9, 3, 4)).astype("float16")
    assert ops.convert_to_numpy(dynamic_routing(u_hat)).dtype == np.float32


def test_bad_iterations():
    with pytest.raises(
        ValueError, match="routing_iterations.*Received: routing_iterations=0"
    ):
        dynamic_routing(np.zeros((1, 2, 2, 2), "float32"), 0)


# --- Formulations of routing from inputs and weights -------------------------


def _reference_routing(inputs, kernel, iterations, stop_gradient):
    """The formulation before issue 14: votes by one einsum, then the
    Procedure-1 loop over `(batch, n_in, n_out, dim)` votes by einsums."""
    types, in_dim, n_out, out_dim = kernel.shape
    flat_kernel = ops.reshape(kernel, (types, in_dim, n_out * out_dim))
    votes = ops.einsum("bptk,tko->bpto", inputs, flat_kernel)
    votes = ops.reshape(votes, (-1, inputs.shape[1] * types, n_out, out_dim))
    detached = ops.stop_gradient(votes) if stop_gradient else votes
    logits = ops.zeros_like(votes[..., 0])
    for i in range(iterations):
        last = i == iterations - 1
        coupling = ops.softmax(logits, axis=-1)
        outputs = squash(
            ops.einsum("bij,bijd->bjd", coupling, votes if last else detached)
        )
        if not last:
            logits = logits + ops.einsum("bijd,bjd->bij", detached, outputs)
    return outputs


class _Routing(keras.layers.Layer):
    """Inputs and kernel as weights, so one gradient call covers both."""

    def __init__(self, route, u, kernel):
        super().__init__()
        self.route = route
        self.u = self.add_weight(shape=u.shape, initializer="zeros", name="u")
        self.kernel = self.add_weight(
            shape=kernel.shape, initializer="zeros", name="kernel"
        )
        self.u.assign(u)
        self.kernel.assign(kernel)
        self.built = True

    def call(self, x, training=None):
        return self.route(self.u.value, self.kernel.value)


def _outputs_and_gradients(route, u, kernel, target):
    layer = _Routing(route, u, kernel)
    return outputs_and_gradients(
        layer, None, lambda v: ops.sum(ops.multiply(v, target))
    )


def _numpy_votes(u, kernel):
    """u_hat[b, p * types + t, j] = W_tj @ u_pt, by numpy."""
    votes = np.einsum("bptk,tkjd->bptjd", u, kernel)
    return votes.reshape(u.shape[0], -1, kernel.shape[2], kernel.shape[3])


# grid 1: unshared weights (Sabour's DigitCaps); grid 4: shared over a grid.
@pytest.mark.parametrize("grid", [1, 4])
@pytest.mark.parametrize("iterations", [1, 2, 3])
@pytest.mark.parametrize("stop_gradient", [False, True])
def test_formulations_equal_reference_and_procedure_1(
    rng, grid, iterations, stop_gradient
):
    u = rng.normal(size=(3, grid, 5, 4)).astype("float32")
    kernel = (rng.normal(size=(5, 4, 3, 6)) * 0.3).astype("float32")
    target = rng.normal(size=(3, 3, 6)).astype("float32")
    expected, _ = numpy_procedure_1(
        _numpy_votes(u.astype("float64"), kernel.astype("float64")), iterations
    )
    ref_out, ref_grads = _outputs_and_gradients(
        lambda x, w: _reference_routing(x, w, iterations, stop_gradient),
        u,
        kernel,
        target,
    )
    np.testing.assert_allclose(ref_out, expected, rtol=1e-4, atol=1e-5)
    for formulation in ("votes", "factored"):
        out, grads = _outputs_and_gradients(
            lambda x, w, f=formulation: dynamic_routing_from_inputs(
                x, w, iterations, stop_gradient, formulation=f
            ),
            u,
            kernel,
            target,
        )
        np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(out, ref_out, rtol=1e-5, atol=1e-6)
        for got, want in zip(grads, ref_grads, strict=True):
            assert np.abs(want).max() > 0
            np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("grid", [1, 4])
def test_single_output_equals_reference(rng, grid):
    u = rng.normal(size=(3, grid, 5, 4)).astype("float32")
    kernel = (rng.normal(size=(5, 4, 1, 6)) * 0.3).astype("float32")
    target = rng.normal(size=(3, 1, 6)).astype("float32")
    expected = numpy_squash(_numpy_votes(u, kernel).sum(axis=1))
    ref_out, ref_grads = _outputs_and_gradients(
        lambda x, w: _reference_routing(x, w, 3, False), u, kernel, target
    )
    for formulation in ("single", "votes", "factored"):
        out, grads = _outputs_and_gradients(
            lambda x, w, f=formulation: dynamic_routing_from_inputs(
                x, w, formulation=f
            ),
            u,
            kernel,
            target,
        )
        np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-6)
        for got, want in zip(grads, ref_grads, strict=True):
            np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize(
    "grid, formulation, stop_gradient",
    [(1, "votes", False), (4, "factored", True)],
)
def test_compiled_and_keras_ops_paths_agree(rng, grid, formulation, stop_gradient):
    """`routing_backend` compiles the loops (TF, JAX) or not: same values."""
    u = rng.normal(size=(3, grid, 5, 4)).astype("float32")
    kernel = (rng.normal(size=(5, 4, 3, 6)) * 0.3).astype("float32")
    target = rng.normal(size=(3, 3, 6)).astype("float32")
    results = []
    for enabled in (True, False):
        routing_backend.set_jit_compile(enabled)
        try:
            results.append(
                _outputs_and_gradients(
                    lambda x, w: dynamic_routing_from_inputs(
                        x, w, 3, stop_gradient, formulation=formulation
                    ),
                    u,
                    kernel,
                    target,
                )
            )
            results.append(
                _outputs_and_gradients(
                    lambda x, w: dynamic_routing(
                        ops.reshape(
                            ops.einsum("bptk,tkjd->bptjd", x, w), (3, -1, 3, 6)
                        ),
                        3,
                        stop_gradient,
                    ),
                    u,
                    kernel,
                    target,
                )
            )
        finally:
            routing_backend.set_jit_compile(False)
    for (out_a, grads_a), (out_b, grads_b) in [
        (results[0], results[2]),
        (results[1], results[3]),
    ]:
        np.testing.assert_allclose(out_a, out_b, rtol=1e-5, atol=1e-6)
        for a, b in zip(grads_a, grads_b, strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
    routing_backend.set_jit_compile(True)
    backend = keras.backend.backend()
    assert routing_backend.jit_compile_enabled() == (backend in ("tensorflow", "jax"))


@pytest.mark.parametrize("compiled", [True, False])
@pytest.mark.parametrize(
    "inputs_shape, kernel_shape, expected",
    [
        # One output capsule: one matmul, whatever the rest.
        ((None, 625, 2, 256), (2, 256, 1, 16), "single"),
        ((None, 1, 1250, 256), (1250, 256, 1, 16), "single"),
        # Shared over a grid, 2 * in_dim <= grid * out_dim: factored.
        ((None, 36, 32, 8), (32, 8, 10, 16), "factored"),
        ((None, 2, 5, 16), (5, 16, 3, 16), "factored"),
        # ... and just past the bound: votes.
        ((None, 2, 5, 17), (5, 17, 3, 16), "votes"),
        # Unshared, in_dim large: votes.
        ((None, 1, 1250, 256), (1250, 256, 15, 16), "votes"),
        # Unshared, 2 * in_dim <= out_dim (Sabour's DigitCaps): votes when
        # compiled, factored when not.
        ((None, 1, 1152, 8), (1152, 8, 10, 16), "votes | factored"),
    ],
)
def test_formulation_rule(inputs_shape, kernel_shape, expected, compiled):
    if "|" in expected:
        expected = expected.split(" | ")[0 if compiled else 1]
    assert routing_formulation(inputs_shape, kernel_shape, compiled) == expected
    default = routing_formulation(inputs_shape, kernel_shape)
    assert default == routing_formulation(
        inputs_shape, kernel_shape, routing_backend.jit_compile_enabled()
    )


def test_auto_follows_the_rule(monkeypatch, rng):
    """`formulation="auto"` calls the formulation the rule names."""
    called = []
    for name in ("_route_factored", "_route_votes", "_route_single"):
        original = getattr(routing, name)

        def spy(*args, _name=name, _original=original, **kwargs):
            called.append(_name)
            return _original(*args, **kwargs)

        monkeypatch.setattr(routing, name, spy)
    for shape, kernel_shape, expected in [
        ((2, 4, 3, 2), (3, 2, 5, 6), "_route_factored"),
        ((2, 1, 3, 4), (3, 4, 5, 6), "_route_votes"),
        ((2, 4, 3, 2), (3, 2, 1, 6), "_route_single"),
    ]:
        called.clear()
        u = rng.normal(size=shape).astype("float32")
        w = rng.normal(size=kernel_shape).astype("float32")
        dynamic_routing_from_inputs(u, w)
        assert called == [expected]


def test_bad_formulation(rng):
    u = rng.normal(size=(2, 1, 3, 2)).astype("float32")
    w = rng.normal(size=(3, 2, 5, 6)).astype("float32")
    with pytest.raises(ValueError, match="Received: formulation='single'"):
        dynamic_routing_from_inputs(u, w, formulation="single")
    with pytest.raises(ValueError, match="Received: formulation='tiled'"):
        dynamic_routing_from_inputs(u, w, formulation="tiled")
