"""Routing-by-agreement algorithms, usable outside layers."""

from keras import ops

from keras_parcaps.ops.capsule_ops import squash


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
    if routing_iterations < 1:
        raise ValueError(
            "`routing_iterations` must be >= 1. "
            f"Received: routing_iterations={routing_iterations}"
        )
    votes = ops.cast(votes, "float32")
    n_out = votes.shape[2]
    if n_out == 1:
        outputs = squash(ops.sum(votes, axis=1))
        if return_coupling:
            return outputs, ops.ones_like(votes[..., 0])
        return outputs

    detached = ops.stop_gradient(votes) if stop_gradient else votes
    logits = ops.zeros_like(votes[..., 0])
    for i in range(routing_iterations):
        last = i == routing_iterations - 1
        coupling = ops.softmax(logits, axis=-1)
        current = votes if last else detached
        outputs = squash(ops.einsum("bij,bijd->bjd", coupling, current))
        if not last:
            logits = logits + ops.einsum("bijd,bjd->bij", detached, outputs)
    if return_coupling:
        return outputs, coupling
    return outputs
