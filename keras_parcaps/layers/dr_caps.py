"""The `DRCaps` layer: fully connected capsules with dynamic routing."""

import math

import keras
from keras import ops

from keras_parcaps._checks import check_positive_int
from keras_parcaps.ops.routing import dynamic_routing_from_inputs

# At initialization, the routed sums before squash are at most 1 long for
# inputs of the longest possible length, 1, and the first routing iteration
# moves a vote's logit by at most about this much (see `auto_kernel_stddev`).
ROUTING_STEP_AT_INIT = 0.2


def auto_kernel_stddev(n_in: int, num_capsules: int, capsule_dim: int) -> float:
    """Standard deviation of `DRCaps`'s `"auto"` kernel initializer.

    The first coupling is `1 / num_capsules`, so a sum over `n_in` votes of
    inputs of length `l` has a squared length near `n_in * stddev**2 * l**2 *
    capsule_dim / num_capsules**2`. Squashed inputs are at most 1 long; the
    standard deviation puts the sum at a length `s` for that bound, so it
    stays near `s` as the lower capsules lengthen during training. Two
    failures bound `s`, both measured on 3-layer networks:
    - Too short: squash shrinks short sums quadratically, so capsules fed
      by few or short inputs (Class-Caps over a few Mid-Caps, deep stacks)
      pass almost no gradient.
    - Too long: a routing iteration adds about `s * squash(s) * num_capsules
      / n_in` to the logit of a vote's own output. With 15 Class-Caps over 2
      Mid-Caps and `s = 1` that is 3.75: the coupling turns one-hot, a few
      outputs saturate at length 1 and training stalls on a constant
      prediction (loss flat at 1.2).
    So `s = 1` unless that step would exceed `ROUTING_STEP_AT_INIT`: then
    `s**3 = 2 * ROUTING_STEP_AT_INIT * n_in / num_capsules` (0.38 for 15
    Class-Caps over 2 Mid-Caps).

    Args:
        n_in: Number of input capsules.
        num_capsules: Number of output capsules.
        capsule_dim: Length of the output capsules.

    Returns:
        The standard deviation, a Python float.

    Example:

        >>> round(auto_kernel_stddev(1152, 10, 16), 4)
        0.0737
    """
    length = min(1.0, (2 * ROUTING_STEP_AT_INIT * n_in / num_capsules) ** (1 / 3))
    return length * num_capsules / math.sqrt(n_in * capsule_dim)


@keras.saving.register_keras_serializable(package="keras_parcaps")
class DRCaps(keras.layers.Layer):
    """Fully connected vector capsules with dynamic routing.

    Every input capsule `u_i` votes for every output capsule `j` through a
    transformation `W_ij`: `u_hat_ij = W_ij u_i`. The votes are combined by
    routing-by-agreement (Sabour et al. 2017, Procedure 1), with the coupling
    softmax taken over the output capsules and the logits reset to zero on
    every call.

    With `share_weights=True` and a grid input, every grid position of one
    capsule type shares its `W` (32 x 10 matrices on Sabour's 6x6 grid of
    32 types). With `share_weights=False` (the default) every input capsule
    has its own `W`: Sabour et al.'s DigitCaps (1,152 x 10 matrices, the
    variant of their published 8.2M parameters and of every popular
    CapsNet) and the parallel-CapsNet paper's capsule layers.

    The layer calls `kp.ops.dynamic_routing_from_inputs`, which routes by
    the exact formulation `kp.ops.routing_formulation` chooses for the
    shapes: one matrix product with a single output capsule, routing
    without forming the votes for shared weights on a grid, else the votes
    as one batched matrix product and the routing loop, compiled by the
    backend's JIT where it has one. Routing runs in float32 under mixed
    precision.

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
            `"auto"`, is a normal distribution whose standard deviation is
            computed in `build` from the number of input capsules (see
            `auto_kernel_stddev`), so that squash and routing both pass a
            gradient at the start of training, in a deep stack too; Keras's
            default glorot init makes capsules so short that squash kills
            the gradient.
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
        kernel_initializer="auto",
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
        if kernel_initializer is None or kernel_initializer == "auto":
            self.kernel_initializer = "auto"
        else:
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
        n_in = math.prod(input_shape[1:-1])
        n_weights = input_shape[-2] if self.share_weights else n_in
        initializer = self.kernel_initializer
        if initializer == "auto":
            initializer = keras.initializers.RandomNormal(
                stddev=auto_kernel_stddev(n_in, self.num_capsules, self.capsule_dim)
            )
        # Layout (n_in, in_dim, n_out, out_dim): flattening the last two axes
        # is free, so every contraction below is one batched matmul.
        self.kernel = self.add_weight(
            name="kernel",
            shape=(n_weights, in_dim, self.num_capsules, self.capsule_dim),
            initializer=initializer,
            regularizer=self.kernel_regularizer,
            # Routing runs in float32: a float16 copy of W would lose the
            # small weights and overflow their gradients.
            autocast=False,
        )

    def call(self, inputs):
        n_weights, in_dim = self.kernel.shape[0], self.kernel.shape[1]
        n_in = math.prod(inputs.shape[1:-1])
        # (batch, grid, types, in_dim): W is shared over the grid axis.
        inputs = ops.reshape(inputs, (-1, n_in // n_weights, n_weights, in_dim))
        outputs = dynamic_routing_from_inputs(
            inputs,
            self.kernel,
            routing_iterations=self.routing_iterations,
            stop_gradient=self.stop_gradient,
        )
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
                "kernel_initializer": self.kernel_initializer
                if self.kernel_initializer == "auto"
                else keras.initializers.serialize(self.kernel_initializer),
                "kernel_regularizer": keras.regularizers.serialize(
                    self.kernel_regularizer
                ),
            }
        )
        return config
