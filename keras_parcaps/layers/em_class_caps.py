"""The `EMClassCaps` layer: class capsules with EM routing."""

import math

import keras
import numpy as np
from keras import ops

from keras_parcaps._checks import check_positive_int
from keras_parcaps.layers.base_em_caps import (
    BaseEMCaps,
    check_grid_input,
    matrix_capsule_side,
)


@keras.saving.register_keras_serializable(package="keras_parcaps")
class EMClassCaps(BaseEMCaps):
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
        check_positive_int("num_classes", num_classes)
        super().__init__(
            num_classes,
            routing_iterations=routing_iterations,
            final_lambda=final_lambda,
            epsilon=epsilon,
            kernel_initializer=kernel_initializer,
            kernel_regularizer=kernel_regularizer,
            **kwargs,
        )
        self.num_classes = num_classes
        self.coordinate_addition = bool(coordinate_addition)

    def build(self, input_shape):
        check_grid_input(input_shape, "EMClassCaps")
        side = matrix_capsule_side(input_shape, "EMClassCaps")
        self.build_weights((input_shape[3], self.num_classes, side, side), side)

    def _coordinates(self, height: int, width: int, side: int):
        """`(height, width, 1, 1, P*P)`: the scaled cell centres at `P-1, 2P-1`."""
        offsets = np.zeros((height, width, 1, 1, side * side), "float32")
        rows = (np.arange(height) + 0.5) / height
        cols = (np.arange(width) + 0.5) / width
        offsets[..., side - 1] = rows[:, None, None, None]
        offsets[..., 2 * side - 1] = cols[None, :, None, None]
        return ops.convert_to_tensor(offsets)

    def compute_votes(self, inputs):
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
        return votes, activations

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.num_classes, input_shape[-1])

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "num_classes": self.num_classes,
                "coordinate_addition": self.coordinate_addition,
            }
        )
        return config
