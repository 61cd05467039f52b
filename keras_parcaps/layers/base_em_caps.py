"""`BaseEMCaps`: what the matrix-capsule layers with EM routing share."""

import math

import keras
from keras import ops

from keras_parcaps._checks import check_positive_int, pose_side
from keras_parcaps.ops.em_routing import em_routing


def matrix_capsule_side(input_shape, layer_name: str) -> int:
    """`P` of the `(batch, ..., capsules, P*P + 1)` matrix capsules given."""
    size = input_shape[-1]
    if size is None or size < 2:
        raise ValueError(
            f"`{layer_name}` expects matrix capsules with P*P + 1 values "
            f"(pose, then activation). Received: input_shape={input_shape}"
        )
    try:
        return pose_side(size - 1, name="capsule_size")
    except ValueError as error:
        raise ValueError(
            f"`{layer_name}` expects matrix capsules whose pose has a square "
            f"number of entries (9, 16, 25 -> P = 3, 4, 5). "
            f"Received: input_shape={input_shape} (pose size {size - 1})"
        ) from error


def check_grid_input(input_shape, layer_name: str) -> None:
    if len(input_shape) != 5 or any(d is None for d in input_shape[1:]):
        raise ValueError(
            f"`{layer_name}` expects matrix capsules of shape (batch, height, "
            "width, capsules, P*P + 1) with every dimension but the batch "
            f"known. Received: input_shape={input_shape}"
        )


class BaseEMCaps(keras.layers.Layer):
    """Base of the matrix-capsule layers with EM routing (Hinton et al. 2018).

    Owns what `EMConvCaps` and `EMClassCaps` share, as Keras's `BaseConv`
    does for its convolutions: the routing arguments and their checks, the
    transformation weights with their default initializer, the learned
    `beta_a` and `beta_u` per output type, routing the votes and
    concatenating poses and activations, and the shared part of
    `get_config`. Subclasses check their own arguments, call
    `build_weights` in `build` and compute the votes in `compute_votes`,
    which `call` routes. Not meant to be used directly.

    Args:
        num_outputs: Number of output capsule types, at least 1.
        routing_iterations: Number of EM iterations, at least 1. Default 3.
        final_lambda: Limit of the inverse-temperature schedule.
            Default 0.01.
        epsilon: Added to the variances. Default 1e-6.
        kernel_initializer: Initializer of the transformations. The default,
            `None`, is a normal distribution with standard deviation
            `1 / sqrt(P)`, so that a vote (a sum of `P` products) keeps the
            scale of the pose: smaller weights shrink every vote variance
            and saturate the activations at the start of training.
        kernel_regularizer: Optional regularizer of the transformations.
        **kwargs: Base layer keyword arguments, such as `name` and `dtype`.
    """

    def __init__(
        self,
        num_outputs: int,
        routing_iterations: int = 3,
        final_lambda: float = 0.01,
        epsilon: float = 1e-6,
        kernel_initializer=None,
        kernel_regularizer=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        check_positive_int("routing_iterations", routing_iterations)
        if not final_lambda > 0:
            raise ValueError(
                f"`final_lambda` must be > 0. Received: final_lambda={final_lambda}"
            )
        if not epsilon > 0:
            raise ValueError(f"`epsilon` must be > 0. Received: epsilon={epsilon}")
        self.num_outputs = num_outputs
        self.routing_iterations = routing_iterations
        self.final_lambda = float(final_lambda)
        self.epsilon = float(epsilon)
        self.kernel_initializer = (
            None
            if kernel_initializer is None
            else keras.initializers.get(kernel_initializer)
        )
        self.kernel_regularizer = keras.regularizers.get(kernel_regularizer)

    def build_weights(self, kernel_shape, side: int) -> None:
        """Adds `kernel` (ending in `(num_outputs, P, P)`), `beta_a`, `beta_u`."""
        initializer = self.kernel_initializer or keras.initializers.RandomNormal(
            stddev=1.0 / math.sqrt(side)
        )
        self.kernel = self.add_weight(
            name="kernel",
            shape=tuple(kernel_shape),
            initializer=initializer,
            regularizer=self.kernel_regularizer,
            # Routing is float32: read the weights without the float16 cast.
            autocast=False,
        )
        self.beta_a = self.add_weight(
            name="beta_a",
            shape=(self.num_outputs,),
            initializer="zeros",
            autocast=False,
        )
        self.beta_u = self.add_weight(
            name="beta_u",
            shape=(self.num_outputs,),
            initializer="zeros",
            autocast=False,
        )

    def compute_votes(self, inputs):
        """The votes and input activations of `inputs`, for `route`.

        `kp.explain.em_routing_trace` replays the routing from them.

        Args:
            inputs: The layer's input capsules, float32.

        Returns:
            Votes `(..., n_in, num_outputs, P*P)` and activations
            `(..., n_in)`, float32.
        """
        raise NotImplementedError

    def call(self, inputs):
        votes, activations = self.compute_votes(ops.cast(inputs, "float32"))
        return self.route(votes, activations)

    def route(self, votes, activations):
        """EM routing, then `(..., num_outputs, P*P + 1)` in the compute dtype.

        Args:
            votes: `(..., n_in, num_outputs, P*P)` float32.
            activations: `(..., n_in)` float32.
        """
        poses, activations = em_routing(
            votes,
            activations,
            self.beta_a,
            self.beta_u,
            routing_iterations=self.routing_iterations,
            final_lambda=self.final_lambda,
            epsilon=self.epsilon,
        )
        outputs = ops.concatenate([poses, ops.expand_dims(activations, -1)], axis=-1)
        return ops.cast(outputs, self.compute_dtype)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "routing_iterations": self.routing_iterations,
                "final_lambda": self.final_lambda,
                "epsilon": self.epsilon,
                "kernel_initializer": None
                if self.kernel_initializer is None
                else keras.initializers.serialize(self.kernel_initializer),
                "kernel_regularizer": keras.regularizers.serialize(
                    self.kernel_regularizer
                ),
            }
        )
        return config
