"""The `DRCaps` layer: fully connected capsules with dynamic routing."""

import math

import keras
from keras import ops

from keras_parcaps._checks import check_positive_int
from keras_parcaps.ops.capsule_ops import squash
from keras_parcaps.ops.routing import dynamic_routing


@keras.saving.register_keras_serializable(package="keras_parcaps")
class DRCaps(keras.layers.Layer):
    """Fully connected vector capsules with dynamic routing.

    Every input capsule `u_i` votes for every output capsule `j` through a
    transformation `W_ij`: `u_hat_ij = W_ij u_i`. The votes are combined by
    routing-by-agreement (Sabour et al. 2017, Procedure 1), with the coupling
    softmax taken over the output capsules and the logits reset to zero on
    every call.

    With `share_weights=True` and a grid input, every grid position of one
    capsule type shares its `W` (Sabour's DigitCaps on a 6x6 grid of 32
    types). With `share_weights=False` (the default, the variant of the
    parallel-CapsNet paper) every input capsule has its own `W`, so the grid
    position is not encoded.

    Nothing is tiled over the batch. The layer routes by one of two exact
    formulations, whichever has the smaller largest intermediate:
    - Votes: one einsum against the unreplicated weights gives the votes,
      `batch x n_in x num_capsules x capsule_dim` floats, then
      `keras_parcaps.ops.dynamic_routing`.
    - Factored: the votes are never formed. `sum_i c_ij W_ij u_i` is taken
      as `sum_t W_tj (sum_p c_ptj u_pt)` over types `t` and grid positions
      `p`, and the agreement `u_hat_ij . v_j` as `u_i . (W_ij^T v_j)`, so the
      largest intermediate is `batch x n_types x num_capsules x in_dim`
      (the coupling aside). With shared weights on a grid this is
      `grid_area * capsule_dim / in_dim` times smaller than the votes: 72x
      for Sabour's DigitCaps.
    With a single output capsule the coupling is 1: the layer contracts
    inputs and weights in one matrix product, whose largest intermediate is
    the output itself. Routing runs in float32 under mixed precision.

    Args:
        num_capsules: Number of output capsules, at least 1.
        capsule_dim: Length of the output capsules, at least 1.
        routing_iterations: Number of routing iterations, at least 1.
            Default 3.
        share_weights: Whether the grid positions of an input capsule type
            share their transformation. Needs a grid input. Default `False`.
        stop_gradient: Whether the intermediate routing iterations see the
            votes with their gradient stopped. Default `False`.
        kernel_initializer: Initializer of the transformations. The default,
            a normal distribution with standard deviation 0.01, lets a deep
            capsule stack start training; Keras's default glorot init makes
            capsules so short that squash kills the gradient.
        kernel_regularizer: Optional regularizer of the transformations.
        **kwargs: Base layer keyword arguments, such as `name` and `dtype`.

    Input shape:
        `(batch, n_in, in_dim)` or, on a grid,
        `(batch, height, width, n_types, in_dim)`.

    Output shape:
        `(batch, num_capsules, capsule_dim)`.

    Example:

        >>> u = keras.random.normal((4, 6, 6, 32, 8))
        >>> v = DRCaps(num_capsules=10, capsule_dim=16, share_weights=True)(u)
        >>> tuple(v.shape)
        (4, 10, 16)

    Reference:
        - [Sabour et al., 2017](https://arxiv.org/abs/1710.09829)
        - [Vigueras-Guillen et al., 2021](https://arxiv.org/abs/2108.02644)
    """

    def __init__(
        self,
        num_capsules: int,
        capsule_dim: int,
        routing_iterations: int = 3,
        share_weights: bool = False,
        stop_gradient: bool = False,
        kernel_initializer=None,
        kernel_regularizer=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        check_positive_int("num_capsules", num_capsules)
        check_positive_int("capsule_dim", capsule_dim)
        check_positive_int("routing_iterations", routing_iterations)
        self.num_capsules = num_capsules
        self.capsule_dim = capsule_dim
        self.routing_iterations = routing_iterations
        self.share_weights = bool(share_weights)
        self.stop_gradient = bool(stop_gradient)
        if kernel_initializer is None:
            kernel_initializer = keras.initializers.RandomNormal(stddev=0.01)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.kernel_regularizer = keras.regularizers.get(kernel_regularizer)

    def build(self, input_shape):
        if len(input_shape) not in (3, 5):
            raise ValueError(
                "`DRCaps` expects capsules of shape (batch, n_in, in_dim) or "
                "(batch, height, width, n_types, in_dim). "
                f"Received: input_shape={input_shape}"
            )
        if any(dim is None for dim in input_shape[1:]):
            raise ValueError(
                "`DRCaps` needs every input dimension but the batch to be known. "
                f"Received: input_shape={input_shape}"
            )
        if self.share_weights and len(input_shape) != 5:
            raise ValueError(
                "`share_weights=True` shares W over grid positions and needs a "
                "grid input (batch, height, width, n_types, in_dim). "
                f"Received: input_shape={input_shape}"
            )
        in_dim = input_shape[-1]
        if self.share_weights:
            n_weights = input_shape[-2]
        else:
            n_weights = math.prod(input_shape[1:-1])
        # Layout (n_in, in_dim, n_out, out_dim): flattening the last two axes
        # is free, so every contraction below is one batched matmul.
        self.kernel = self.add_weight(
            name="kernel",
            shape=(n_weights, in_dim, self.num_capsules, self.capsule_dim),
            initializer=self.kernel_initializer,
            regularizer=self.kernel_regularizer,
            # Routing runs in float32: a float16 copy of W would lose the
            # small weights and overflow their gradients.
            autocast=False,
        )

    def call(self, inputs):
        inputs = ops.cast(inputs, "float32")
        kernel = ops.cast(self.kernel, "float32")
        n_weights, in_dim = kernel.shape[0], kernel.shape[1]
        n_in = math.prod(inputs.shape[1:-1])
        out_size = self.num_capsules * self.capsule_dim
        # (batch, grid, types, in_dim): W is shared over the grid axis.
        if self.share_weights:
            inputs = ops.reshape(inputs, (-1, n_in // n_weights, n_weights, in_dim))
        else:
            inputs = ops.reshape(inputs, (-1, 1, n_in, in_dim))

        if self.num_capsules == 1:
            # The coupling is 1, so v = squash(sum_i W_i u_i): one matmul
            # over (n_in * in_dim), without the votes.
            if self.share_weights:
                inputs = ops.sum(inputs, axis=1)
            inputs = ops.reshape(inputs, (-1, n_weights * in_dim))
            sums = ops.matmul(inputs, ops.reshape(kernel, (-1, out_size)))
            outputs = squash(ops.reshape(sums, (-1, 1, self.capsule_dim)))
            return ops.cast(outputs, self.compute_dtype)

        grid_area = inputs.shape[1]
        if 2 * in_dim <= grid_area * self.capsule_dim:
            route = _route_factored
        else:
            route = _route_votes
        outputs = route(inputs, kernel, self.routing_iterations, self.stop_gradient)
        return ops.cast(outputs, self.compute_dtype)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.num_capsules, self.capsule_dim)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "num_capsules": self.num_capsules,
                "capsule_dim": self.capsule_dim,
                "routing_iterations": self.routing_iterations,
                "share_weights": self.share_weights,
                "stop_gradient": self.stop_gradient,
                "kernel_initializer": keras.initializers.serialize(
                    self.kernel_initializer
                ),
                "kernel_regularizer": keras.regularizers.serialize(
                    self.kernel_regularizer
                ),
            }
        )
        return config


def _route_votes(inputs, kernel, routing_iterations, stop_gradient):
    """Routing over explicit votes; `inputs` (batch, grid, types, in_dim)."""
    n_types, in_dim, n_out, out_dim = kernel.shape
    flat_kernel = ops.reshape(kernel, (n_types, in_dim, n_out * out_dim))
    votes = ops.einsum("bptk,tko->bpto", inputs, flat_kernel)
    votes = ops.reshape(votes, (-1, inputs.shape[1] * n_types, n_out, out_dim))
    return dynamic_routing(
        votes, routing_iterations=routing_iterations, stop_gradient=stop_gradient
    )


def _route_factored(inputs, kernel, routing_iterations, stop_gradient):
    """The same routing without forming the votes (see `DRCaps`).

    `inputs` (batch, grid, types, in_dim), `kernel` (types, in_dim, n_out,
    out_dim); W is shared over the grid positions of a type.
    """
    n_out = kernel.shape[2]
    detached_inputs, detached_kernel = inputs, kernel
    if stop_gradient:
        detached_inputs = ops.stop_gradient(inputs)
        detached_kernel = ops.stop_gradient(kernel)
    # The first coupling is uniform: sum over the grid, then one contraction.
    last = routing_iterations == 1
    pooled = ops.sum(inputs if last else detached_inputs, axis=1)
    sums = ops.einsum(
        "btk,tkjd->bjd", pooled, kernel if last else detached_kernel
    ) / n_out
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
