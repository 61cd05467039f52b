"""`dr_routing_trace`: what a `DRCaps` layer's routing did, iteration by iteration."""

import math

import numpy as np
from keras import ops

from keras_parcaps.layers.dr_caps import DRCaps
from keras_parcaps.ops.routing import dynamic_routing


def _votes(layer: DRCaps, inputs):
    """`u_hat_ij = W_ij u_i`, `(batch, n_in, n_out, dim)` float32, from the
    layer's weights and `inputs` (not from the layer's own routing path)."""
    inputs = ops.cast(ops.convert_to_tensor(inputs), "float32")
    kernel = ops.cast(layer.kernel, "float32")
    n_weights, in_dim, n_out, dim = kernel.shape
    if layer.share_weights:
        # One W per capsule type, shared over the grid positions.
        inputs = ops.reshape(
            inputs, (-1, math.prod(inputs.shape[1:-2]), n_weights, in_dim)
        )
        votes = ops.einsum("bptk,tkjd->bptjd", inputs, kernel)
    else:
        inputs = ops.reshape(inputs, (-1, n_weights, in_dim))
        votes = ops.einsum("bik,ikjd->bijd", inputs, kernel)
    return ops.reshape(votes, (-1, math.prod(votes.shape[1:-2]), n_out, dim))


def dr_routing_trace(layer: DRCaps, inputs) -> dict:
    """Coupling coefficients and agreements of a `DRCaps` layer per iteration.

    Recomputes the layer's routing from its own weights and `inputs` with
    `keras_parcaps.ops.dynamic_routing` (Sabour et al. 2017, Procedure 1),
    leaving the layer and its fast path untouched. Iteration `k` (1-based)
    of Procedure 1 is a run of `dynamic_routing` with `routing_iterations=k`,
    whose last coupling and outputs are those of iteration `k` of the full
    routing: the logits start at zero on every call.

    With `v_j^(k)` the output capsules of iteration `k` and `u_hat_ij` the
    votes:
    - `coupling[k - 1]` is `c_ij` of iteration `k`, a softmax over the output
      capsules `j` (uniform at `k = 1`);
    - `agreement[k - 1]` is `u_hat_ij . v_j^(k)`, what iteration `k` adds to
      the routing logits;
    - `contribution` is `c_ij (u_hat_ij . v_j / |v_j|)` of the last
      iteration: the part of output `j`'s pre-squash length `|s_j|` that
      input `i` supplies, so it sums over `i` to `|s_j|` (negative for a
      vote that points away from `v_j`).

    Args:
        layer: A built `kp.layers.DRCaps`.
        inputs: The layer's input capsules, `(batch, n_in, in_dim)` or
            `(batch, height, width, n_types, in_dim)`.

    Returns:
        A dict of float32 numpy arrays: `votes` `(batch, n_in, n_out, dim)`,
        `coupling` and `agreement` `(iterations, batch, n_in, n_out)`,
        `outputs` `(iterations, batch, n_out, dim)`, `contribution`
        `(batch, n_in, n_out)` and `input_lengths` `(batch, n_in)`. Input
        capsules are numbered row-major over `(*grid, types)`.

    Example:

        >>> import keras
        >>> from keras_parcaps.layers import DRCaps
        >>> layer = DRCaps(num_capsules=3, capsule_dim=4)
        >>> u = keras.random.normal((2, 5, 8))
        >>> v = layer(u)
        >>> trace = dr_routing_trace(layer, u)
        >>> trace["coupling"].shape  # 3 iterations, 2 images, 5 inputs, 3 outputs
        (3, 2, 5, 3)
        >>> bool(np.allclose(trace["coupling"].sum(-1), 1.0))
        True
        >>> # The last iteration's outputs are the layer's own.
        >>> v = keras.ops.convert_to_numpy(v)
        >>> bool(np.allclose(trace["outputs"][-1], v, atol=1e-5))
        True
    """
    if not isinstance(layer, DRCaps):
        raise ValueError(f"`layer` must be a `DRCaps` layer. Received: layer={layer!r}")
    votes = _votes(layer, inputs)
    couplings, agreements, outputs = [], [], []
    for k in range(1, layer.routing_iterations + 1):
        v, c = dynamic_routing(votes, routing_iterations=k, return_coupling=True)
        couplings.append(ops.convert_to_numpy(c))
        agreements.append(ops.convert_to_numpy(ops.einsum("bijd,bjd->bij", votes, v)))
        outputs.append(ops.convert_to_numpy(v))
    votes = ops.convert_to_numpy(votes)
    v = outputs[-1]
    direction = v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), 1e-12)
    contribution = couplings[-1] * np.einsum("bijd,bjd->bij", votes, direction)
    inputs = np.asarray(ops.convert_to_numpy(inputs), "float32")
    inputs = inputs.reshape(len(votes), -1, inputs.shape[-1])
    return {
        "votes": votes,
        "coupling": np.stack(couplings),
        "agreement": np.stack(agreements),
        "outputs": np.stack(outputs),
        "contribution": contribution.astype("float32"),
        "input_lengths": np.linalg.norm(inputs, axis=-1),
    }
