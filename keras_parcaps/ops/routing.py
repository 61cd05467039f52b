"""Dynamic routing between capsules (Sabour et al. 2017), usable outside layers.

Two entry points:
- `dynamic_routing(votes)`: routing over given votes `u_hat`.
- `dynamic_routing_from_inputs(inputs, kernel)`: the votes are the input
  capsules times their transformations `W`; this chooses among exact
  formulations of the same function by `routing_formulation`'s rule, and
  some never form the votes.

Everything runs in float32 whatever the input dtype. The routing loops run
compiled by the backend's JIT where it has one (`routing_backend`).

The routing loop works on votes laid out `(batch, n_out, n_in, dim)`: the
weighted sum `s_j = sum_i c_ij u_hat_ij` is then a `(1, n_in) x (n_in, dim)`
matrix product per batch item and output capsule, and the agreement
`u_hat_ij . v_j` an `(n_in, dim) x (dim, 1)` one, both over contiguous
memory and without an intermediate of the votes' size (an elementwise
product followed by a sum writes one per iteration, and its gradient
another).
"""

from keras import ops

from keras_parcaps.ops import routing_backend
from keras_parcaps.ops.capsule_ops import squash

FORMULATIONS = ("single", "factored", "votes")


def _check_iterations(routing_iterations):
    if not isinstance(routing_iterations, int) or routing_iterations < 1:
        raise ValueError(
            "`routing_iterations` must be >= 1. "
            f"Received: routing_iterations={routing_iterations}"
        )


def _route(votes, routing_iterations, stop_gradient):
    """Procedure 1 on `(batch, n_out, n_in, dim)` votes.

    Returns the outputs `(batch, n_out, dim)` and the last coupling
    `(batch, n_out, n_in)`.
    """
    n_out = votes.shape[1]
    if n_out == 1:
        # The coupling is 1: one sum, no routing.
        return squash(ops.sum(votes, axis=2)), ops.ones_like(votes[..., 0])
    detached = ops.stop_gradient(votes) if stop_gradient else votes
    logits = None
    for i in range(routing_iterations):
        last = i == routing_iterations - 1
        current = votes if last else detached
        if logits is None:
            # The logits start at zero: the first coupling is uniform.
            coupling = ops.ones_like(current[..., 0]) / n_out
        else:
            coupling = ops.softmax(logits, axis=1)
        # A product even for the uniform coupling: with every read of the
        # votes a product, XLA writes their transposed copy once, not once
        # per kind of read (JAX, Sabour's DigitCaps: 226 -> 191-197 ms).
        sums = ops.squeeze(ops.matmul(ops.expand_dims(coupling, 2), current), 2)
        outputs = squash(sums)
        if not last:
            agreement = ops.squeeze(
                ops.matmul(detached, ops.expand_dims(outputs, -1)), -1
            )
            logits = agreement if logits is None else logits + agreement
    return outputs, coupling


def dynamic_routing(
    votes,
    routing_iterations: int = 3,
    stop_gradient: bool = False,
    return_coupling: bool = False,
):
    """Dynamic routing between capsules (Sabour et al. 2017, Procedure 1).

    Routing runs in float32 whatever the dtype of `votes`; the outputs are
    float32. The routing logits start at zero on every call. With a single
    output capsule the coupling is 1 and no routing work is done.

    Args:
        votes: Predictions `u_hat` of the lower capsules for the upper ones,
            shape `(batch, n_in, n_out, dim)`.
        routing_iterations: Number of routing iterations, at least 1.
        stop_gradient: If `True`, gradients flow through the votes only in
            the last iteration: the intermediate iterations see a copy of the
            votes with the gradient stopped.
        return_coupling: If `True`, also return the coupling coefficients of
            the last iteration.

    Returns:
        The output capsules `v`, shape `(batch, n_out, dim)`, and, if
        `return_coupling`, the coupling coefficients `c`, shape
        `(batch, n_in, n_out)`, which sum to 1 over the output capsules.

    Example:

        >>> import numpy as np
        >>> votes = np.random.default_rng(0).normal(size=(2, 6, 3, 4))
        >>> v, c = dynamic_routing(votes.astype("float32"), return_coupling=True)
        >>> tuple(v.shape), tuple(c.shape)
        ((2, 3, 4), (2, 6, 3))
    """
    _check_iterations(routing_iterations)
    votes = ops.cast(votes, "float32")
    outputs, coupling = routing_backend.run(
        _route_transposed,
        votes,
        routing_iterations=routing_iterations,
        stop_gradient=bool(stop_gradient),
    )
    if return_coupling:
        return outputs, coupling
    return outputs


def _route_transposed(votes, routing_iterations, stop_gradient):
    """`_route` on `(batch, n_in, n_out, dim)` votes; coupling `(b, in, out)`."""
    outputs, coupling = _route(
        ops.transpose(votes, (0, 2, 1, 3)), routing_iterations, stop_gradient
    )
    return outputs, ops.transpose(coupling, (0, 2, 1))


def routing_formulation(inputs_shape, kernel_shape, compiled=None) -> str:
    """The formulation `dynamic_routing_from_inputs` uses for these shapes.

    With `grid` positions sharing the `W` of each of `types` input capsule
    types (`grid = 1` for unshared weights), `in_dim`-long inputs and
    `n_out` outputs of length `out_dim`, the rule is:
    - `"single"` if `n_out == 1`: the coupling is 1, so the output is
      `squash(sum_i W_i u_i)`, one matrix product over `n_in * in_dim`
      without the votes.
    - `"factored"` if `2 * in_dim <= grid * out_dim`, and either `grid > 1`
      or the routing runs uncompiled: the votes are never formed, and the
      largest intermediate, `batch x types x n_out x in_dim`, is at least
      2x smaller than the votes (72x for shared weights at Sabour's
      DigitCaps shape). Compiled (XLA), unshared weights route faster over
      the votes, whose loop XLA fuses: 3.2x at Sabour's unshared DigitCaps
      shape on TensorFlow and 2.3x on JAX, against 0.75x uncompiled on
      PyTorch (`docs/benchmarks.md`).
    - `"votes"` otherwise: the votes, one batched matrix product over the
      input capsules, then the routing loop.

    Args:
        inputs_shape: `(batch, grid, types, in_dim)`.
        kernel_shape: `(types, in_dim, n_out, out_dim)`.
        compiled: Whether the routing runs compiled; by default whether
            `routing_backend` compiles it on this backend (TensorFlow, JAX).

    Returns:
        One of `"single"`, `"factored"`, `"votes"`.

    Example:

        >>> routing_formulation((None, 36, 32, 8), (32, 8, 10, 16))
        'factored'
        >>> routing_formulation((None, 1, 1152, 8), (1152, 8, 10, 16), compiled=True)
        'votes'
    """
    if compiled is None:
        compiled = routing_backend.jit_compile_enabled()
    grid, in_dim = inputs_shape[1], inputs_shape[-1]
    n_out, out_dim = kernel_shape[2], kernel_shape[3]
    if n_out == 1:
        return "single"
    if 2 * in_dim <= grid * out_dim and (grid > 1 or not compiled):
        return "factored"
    return "votes"


def dynamic_routing_from_inputs(
    inputs,
    kernel,
    routing_iterations: int = 3,
    stop_gradient: bool = False,
    formulation: str = "auto",
):
    """Dynamic routing of `inputs` transformed by `kernel` (the votes' source).

    The votes are `u_hat_ij = W_ij u_i`, with the `W` of an input capsule
    type shared over the grid positions; this returns exactly
    `dynamic_routing(u_hat)`, computed by one of three formulations (see
    `routing_formulation`). Runs in float32.

    Args:
        inputs: Input capsules `(batch, grid, types, in_dim)`; `grid = 1`
            when every input capsule has its own `W`.
        kernel: `W`, `(types, in_dim, n_out, out_dim)`.
        routing_iterations: Number of routing iterations, at least 1.
        stop_gradient: If `True`, the intermediate iterations see the votes
            with their gradient stopped.
        formulation: `"auto"` (the rule of `routing_formulation`),
            `"single"` (only with `n_out == 1`), `"factored"` or `"votes"`.

    Returns:
        The output capsules `(batch, n_out, out_dim)`, float32.

    Example:

        >>> import numpy as np
        >>> u = np.random.default_rng(0).normal(size=(2, 4, 3, 5))
        >>> w = np.random.default_rng(1).normal(size=(3, 5, 6, 8))
        >>> v = dynamic_routing_from_inputs(u.astype("float32"), w.astype("float32"))
        >>> tuple(v.shape)
        (2, 6, 8)
    """
    _check_iterations(routing_iterations)
    inputs = ops.cast(inputs, "float32")
    kernel = ops.cast(kernel, "float32")
    if len(inputs.shape) != 4 or len(kernel.shape) != 4:
        raise ValueError(
            "`inputs` must be (batch, grid, types, in_dim) and `kernel` "
            "(types, in_dim, n_out, out_dim). "
            f"Received: inputs.shape={tuple(inputs.shape)}, "
            f"kernel.shape={tuple(kernel.shape)}"
        )
    if formulation == "auto":
        formulation = routing_formulation(inputs.shape, kernel.shape)
    if formulation not in FORMULATIONS or (
        formulation == "single" and kernel.shape[2] != 1
    ):
        raise ValueError(
            "`formulation` must be 'auto', 'factored', 'votes', or 'single' "
            f"with one output capsule. Received: formulation={formulation!r} "
            f"with n_out={kernel.shape[2]}"
        )
    if formulation == "single":
        return _route_single(inputs, kernel)
    route = _route_factored if formulation == "factored" else _route_votes
    return routing_backend.run(
        route,
        inputs,
        kernel,
        routing_iterations=routing_iterations,
        stop_gradient=bool(stop_gradient),
    )


def _route_single(inputs, kernel):
    """One output capsule: `squash(sum_i W_i u_i)`, one matrix product."""
    types, in_dim, _, out_dim = kernel.shape
    if inputs.shape[1] > 1:
        inputs = ops.sum(inputs, axis=1)
    sums = ops.matmul(
        ops.reshape(inputs, (-1, types * in_dim)),
        ops.reshape(kernel, (types * in_dim, out_dim)),
    )
    return squash(ops.reshape(sums, (-1, 1, out_dim)))


def _route_votes(inputs, kernel, routing_iterations, stop_gradient):
    """The votes as one batched matmul over types, then `_route`."""
    types, in_dim, n_out, out_dim = kernel.shape
    grid = inputs.shape[1]
    # (types, batch * grid, in_dim) x (types, in_dim, n_out * out_dim)
    flat = ops.reshape(ops.transpose(inputs, (2, 0, 1, 3)), (types, -1, in_dim))
    votes = ops.matmul(flat, ops.reshape(kernel, (types, in_dim, n_out * out_dim)))
    # -> (batch, n_out, grid * types, out_dim), input capsule i = p * types + t
    votes = ops.reshape(votes, (types, -1, grid, n_out, out_dim))
    votes = ops.transpose(votes, (1, 3, 2, 0, 4))
    votes = ops.reshape(votes, (-1, n_out, grid * types, out_dim))
    outputs, _ = _route(votes, routing_iterations, stop_gradient)
    return outputs


def _route_factored(inputs, kernel, routing_iterations, stop_gradient):
    """The same routing without forming the votes.

    `sum_i c_ij W_ij u_i` is taken as `sum_t W_tj (sum_p c_ptj u_pt)` over
    types `t` and grid positions `p`, and the agreement `u_hat_ij . v_j` as
    `u_i . (W_tj^T v_j)`.
    """
    n_out = kernel.shape[2]
    detached_inputs, detached_kernel = inputs, kernel
    if stop_gradient:
        detached_inputs = ops.stop_gradient(inputs)
        detached_kernel = ops.stop_gradient(kernel)
    # The first coupling is uniform: sum over the grid, then one contraction.
    last = routing_iterations == 1
    pooled = ops.sum(inputs if last else detached_inputs, axis=1)
    sums = (
        ops.einsum("btk,tkjd->bjd", pooled, kernel if last else detached_kernel) / n_out
    )
    outputs = squash(sums)
    logits = None
    for i in range(1, routing_iterations):
        # The agreement u_hat_ij . v_j is u_i . (W_ij^T v_j).
        pulled = ops.einsum("tkjd,bjd->btjk", detached_kernel, outputs)
        agreement = ops.einsum("btjk,bptk->bptj", pulled, detached_inputs)
        logits = agreement if logits is None else logits + agreement
        coupling = ops.softmax(logits, axis=-1)
        last = i == routing_iterations - 1
        u = inputs if last else detached_inputs
        w = kernel if last else detached_kernel
        weighted = ops.einsum("bptj,bptk->btjk", coupling, u)
        outputs = squash(ops.einsum("btjk,tkjd->bjd", weighted, w))
    return outputs
