"""`em_routing_trace`: what an EM layer's routing did, iteration by iteration."""

import numpy as np
from keras import ops

from keras_parcaps.layers.em_class_caps import EMClassCaps
from keras_parcaps.layers.em_conv_caps import EMConvCaps
from keras_parcaps.ops.em_routing import em_routing


def em_routing_trace(layer, inputs) -> dict:
    """Assignment probabilities and activations of an EM layer per iteration.

    Recomputes the routing of an `EMConvCaps` or `EMClassCaps` layer from its
    own weights and `inputs` with `keras_parcaps.ops.em_routing` (Hinton et
    al. 2018), leaving the layer untouched. Iteration `k` (1-based) is a run
    of `em_routing` with `routing_iterations=k`: its inverse temperatures are
    the first `k` of the full schedule, so its assignments and activations
    are those of iteration `k` of the full routing.

    - `assignments[k - 1]` is `R_ij` used by the M-step of iteration `k`, a
      distribution over the output capsules `j` (uniform at `k = 1`);
    - `activations[k - 1]` and `poses[k - 1]` are the output activations
      `a_j` and poses `mu_j` after that M-step;
    - `contribution` is `R_ij a_i / sum_i R_ij a_i` of the last iteration:
      input `i`'s weight in output `j`'s pose, which sums to 1 over `i`.

    Args:
        layer: A built `kp.layers.EMConvCaps` or `kp.layers.EMClassCaps`.
        inputs: The layer's input matrix capsules,
            `(batch, height, width, types, P*P + 1)`.

    Returns:
        A dict of float32 numpy arrays, with `L` the leading axes, `(batch,)`
        for `EMClassCaps` and `(batch, out_h, out_w)` for `EMConvCaps`:
        `votes` `(*L, n_in, n_out, P*P)`, `input_activations` `(*L, n_in)`,
        `assignments` `(iterations, *L, n_in, n_out)`, `activations`
        `(iterations, *L, n_out)`, `poses` `(iterations, *L, n_out, P*P)`
        and `contribution` `(*L, n_in, n_out)`. Input capsules are numbered
        row-major over `(height, width, types)` (`EMClassCaps`) or
        `(K*K window offsets, types)` (`EMConvCaps`).

    Example:

        >>> import keras
        >>> from keras_parcaps.layers import EMClassCaps
        >>> layer = EMClassCaps(num_classes=3)
        >>> x = keras.random.uniform((2, 2, 2, 4, 17))
        >>> y = keras.ops.convert_to_numpy(layer(x))
        >>> trace = em_routing_trace(layer, x)
        >>> trace["assignments"].shape  # 3 iterations, 2 images, 16 inputs, 3 classes
        (3, 2, 16, 3)
        >>> bool(np.allclose(trace["activations"][-1], y[..., -1], atol=1e-5))
        True
    """
    if not isinstance(layer, (EMConvCaps, EMClassCaps)):
        raise ValueError(
            "`layer` must be an `EMConvCaps` or `EMClassCaps` layer. "
            f"Received: layer={layer!r}"
        )
    votes, input_activations = layer.compute_votes(ops.cast(inputs, "float32"))
    input_activations = ops.convert_to_numpy(input_activations)
    assignments, activations, poses = [], [], []
    for k in range(1, layer.routing_iterations + 1):
        pose, activation, assignment = em_routing(
            votes,
            input_activations,
            layer.beta_a,
            layer.beta_u,
            routing_iterations=k,
            final_lambda=layer.final_lambda,
            epsilon=layer.epsilon,
            return_assignments=True,
        )
        assignments.append(ops.convert_to_numpy(assignment))
        activations.append(ops.convert_to_numpy(activation))
        poses.append(ops.convert_to_numpy(pose))
    weights = assignments[-1] * input_activations[..., None]
    total = weights.sum(axis=-2, keepdims=True)
    contribution = np.divide(
        weights, total, out=np.zeros_like(weights), where=total > 0
    )
    return {
        "votes": np.asarray(ops.convert_to_numpy(votes), "float32"),
        "input_activations": input_activations,
        "assignments": np.stack(assignments),
        "activations": np.stack(activations),
        "poses": np.stack(poses),
        "contribution": contribution,
    }
