"""The `EMClassCaps` layer: class capsules with EM routing."""

import math

import keras
import numpy as np
from keras import ops

from keras_parcaps._checks import check_positive_int
from keras_parcaps.layers.em_conv_caps import check_grid_input, matrix_capsule_side
from keras_parcaps.ops.em_routing import em_routing


@keras.saving.register_keras_serializable(package="keras_parcaps")
class EMClassCaps(keras.layers.Layer):
    """Class capsules of matrix capsules with EM routing (Hinton et al. 2018).

    Every input capsule of type `i`, wherever it sits on the grid, votes for
    class `c` with `V_ic = M_i W_ic`: one `P x P` transformation per (input
    type, class), shared over positions. All `height * width * in_types`
    votes are routed to the classes by `kp.ops.em_routing`. With
    `coordinate_addition=True` the scaled coordinates of the capsule's grid
    cell centre, `(row + 0.5) / height` and `(col + 0.5) / width`, are added
    to the first two entries of the last column of each vote (flat entries
    `P - 1` and `2P - 1`: 3 and 7 for a 4x4 pose), so that the class poses
    can encode position although the weights are shared.

    The largest intermediates are the votes and the routing temporaries of
    their shape, `batch x height*width*in_types x num_classes x P*P` float32.
    Routing runs in float32 under mixed precision; the output is cast back
    to the compute dtype. The class scores are the activations,
    `outputs[..., -1]`.

    Args:
        num_classes: Number of class capsules, at least 1.
        routing_iterations: Number of EM iterations, at least 1. Default 3.
        coordinate_addition: Whether to add the scaled grid coordinates to
            the votes. Default `False` (the parallel-CapsNet paper's choice).
        final_lambda: Limit of the inverse-temperature schedule.
            Default 0.01.
        epsilon: Added to the variances. Default 1e-6.
        kernel_initializer: Initializer of the transformations. The default,
            `None`, is a normal distribution with standard deviation
            `1 / sqrt(P)`, which keeps the votes at the scale of the poses.
        kernel_regularizer: Optional regularizer of the transformations.
        **kwargs: Base layer keyword arguments, such as `name` and `dtype`.

    Input shape:
        `(batch, height, width, in_types, P*P + 1)`: row-major poses, then
        activations.

    Output shape:
        `(batch, num_classes, P*P + 1)`; the last entry is the class score.

    Example:

        >>> x = keras.random.uniform((2, 3, 3, 8, 17))
        >>> y = EMClassCaps(num_classes=5, coordinate_addition=True)(x)
        >>> tuple(y.shape)
        (2, 5, 17)

    Reference:
        - [Hinton et al., 2018](https://openreview.net/forum?id=HJWLfGWRb)
    """

    def __init__(
        self,
        num_classes: int,
        routing_iterations: int = 3,
        coordinate_addition: bool = False,
        final_lambda: float = 0.01,
        epsilon: float = 1e-6,
        kernel_initializer=None,
        kernel_regularizer=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        check_positive_int("num_classes", num_classes)
        check_positive_int("routing_iterations", routing_iterations)
        if not final_lambda > 0:
            raise ValueError(
                f"`final_lambda` must be > 0. Received: final_lambda={final_lambda}"
            )
        if not epsilon > 0:
            raise ValueError(f"`epsilon` must be > 0. Received: epsilon={epsilon}")
        self.num_classes = num_classes
        self.routing_iterations = routing_iterations
        self.coordinate_addition = bool(coordinate_addition)
        self.final_lambda = float(final_lambda)
        self.epsilon = float(epsilon)
        self.kernel_initializer = (
            None
            if kernel_initializer is None
            else keras.initializers.get(kernel_initializer)
        )
        self.kernel_regularizer = keras.regularizers.get(kernel_regularizer)

    def build(self, input_shape):
        check_grid_input(input_shape, "EMClassCaps")
        side = matrix_capsule_side(input_shape, "EMClassCaps")
        initializer = self.kernel_initializer or keras.initializers.RandomNormal(
            stddev=1.0 / math.sqrt(side)
        )
        self.kernel = self.add_weight(
            name="kernel",
            shape=(input_shape[3], self.num_classes, side, side),
            initializer=initializer,
            regularizer=self.kernel_regularizer,
            # Routing is float32: read the weights without the float16 cast.
            autocast=False,
        )
        self.beta_a = self.add_weight(
            name="beta_a",
            shape=(self.num_classes,),
            initializer="zeros",
            autocast=False,
        )
        self.beta_u = self.add_weight(
            name="beta_u",
            shape=(self.num_classes,),
            initializer="zeros",
            autocast=False,
        )

    def _coordinates(self, height: int, width: int, side: int):
        """`(height, width, 1, 1, P*P)`: the scaled cell centres at `P-1, 2P-1`."""
        offsets = np.zeros((height, width, 1, 1, side * side), "float32")
        rows = (np.arange(height) + 0.5) / height
        cols = (np.arange(width) + 0.5) / width
        offsets[..., side - 1] = rows[:, None, None, None]
        offsets[..., 2 * side - 1] = cols[None, :, None, None]
        return ops.convert_to_tensor(offsets)

    def call(self, inputs):
        inputs = ops.cast(inputs, "float32")
        _, height, width, in_types, size = inputs.shape
        side = math.isqrt(size - 1)
        poses = ops.reshape(inputs[..., :-1], (-1, height, width, in_types, side, side))
        activations = ops.reshape(inputs[..., -1], (-1, height * width * in_types))
        kernel = ops.cast(self.kernel, "float32")
        votes = ops.einsum("bhwipq,icqr->bhwicpr", poses, kernel)
        votes = ops.reshape(
            votes, (-1, height, width, in_types, self.num_classes, side * side)
        )
        if self.coordinate_addition:
            votes = votes + self._coordinates(height, width, side)
        votes = ops.reshape(
            votes, (-1, height * width * in_types, self.num_classes, side * side)
        )
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

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.num_classes, input_shape[-1])

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "num_classes": self.num_classes,
                "routing_iterations": self.routing_iterations,
                "coordinate_addition": self.coordinate_addition,
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
