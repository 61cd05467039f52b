import numpy as np
import pytest
from keras import ops

from keras_parcaps.ops import dynamic_routing
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
