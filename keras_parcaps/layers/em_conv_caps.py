"""The `EMConvCaps` layer: convolutional matrix capsules with EM routing."""

import math

import keras
from keras import ops

from keras_parcaps._checks import check_choice, check_positive_int
from keras_parcaps.layers.base_em_caps import (
    BaseEMCaps,
    check_grid_input,
    matrix_capsule_side,
)


@keras.saving.register_keras_serializable(package="keras_parcaps")
class EMConvCaps(BaseEMCaps):
    """Convolutional matrix capsules with EM routing (Hinton et al. 2018).

    Every output capsule sees a `kernel_size x kernel_size` window of the
    input grid. Each input capsule `i` in the window votes for output type
    `j` with `V_ij = M_i W_kij`, its `P x P` pose times one `P x P`
    transformation per (window offset `k`, input type, output type), shared
    over the grid. The votes of each window are routed to the
    `num_capsules` output types of its position by `kp.ops.em_routing`: the
    inverse temperature ramps as `final_lambda * (1 - 0.95 ** (i + 1))`,
    `beta_a` and `beta_u` are learned per output type, the E-step runs in log
    space, the variance carries an epsilon, and no gradient is stopped. The
    assignments of an input are normalised over the output types of each
    window it lies in (each window is its own routing problem); with a
    single output type, as in the parallel-CapsNet paper's Mid-Caps, every
    assignment is 1.

    Windows are cut by strided slicing, once per kernel offset (`K * K`
    slices, no loop over positions), and stacked. The largest intermediates
    are the votes and the routing temporaries of their shape,
    `batch x out_h x out_w x K*K*in_types x num_capsules x P*P` float32; the
    stacked windows are `K*K` times the input, `batch x out_h x out_w x
    K*K*in_types x (P*P + 1)`. Routing runs in float32 under mixed
    precision; the output is cast back to the compute dtype.

    Args:
        num_capsules: Number of output capsule types, at least 1.
        kernel_size: Side `K` of the square window, at least 1.
        strides: Stride of the window, at least 1.
        padding: `"valid"` or `"same"` (zero capsules, whose activation 0
            gives them no say in routing).
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

    Input shape:
        `(batch, height, width, in_types, P*P + 1)` with `P*P` in 9, 16, 25,
        ...: the row-major pose, then the activation.

    Output shape:
        `(batch, out_height, out_width, num_capsules, P*P + 1)`.

    Example:

        >>> x = keras.random.uniform((2, 7, 7, 8, 17))
        >>> y = EMConvCaps(num_capsules=4, kernel_size=3, strides=2)(x)
        >>> tuple(y.shape)
        (2, 3, 3, 4, 17)

    Reference:
        - [Hinton et al., 2018](https://openreview.net/forum?id=HJWLfGWRb)
        - [Gritzman, 2019](https://arxiv.org/abs/1907.00652)
    """

    def __init__(
        self,
        num_capsules: int,
        kernel_size: int = 3,
        strides: int = 1,
        padding: str = "valid",
        routing_iterations: int = 3,
        final_lambda: float = 0.01,
        epsilon: float = 1e-6,
        kernel_initializer=None,
        kernel_regularizer=None,
        **kwargs,
    ):
        check_positive_int("num_capsules", num_capsules)
        check_positive_int("kernel_size", kernel_size)
        check_positive_int("strides", strides)
        check_choice("padding", padding, ("valid", "same"))
        super().__init__(
            num_capsules,
            routing_iterations=routing_iterations,
            final_lambda=final_lambda,
            epsilon=epsilon,
            kernel_initializer=kernel_initializer,
            kernel_regularizer=kernel_regularizer,
            **kwargs,
        )
        self.num_capsules = num_capsules
        self.kernel_size = kernel_size
        self.strides = strides
        self.padding = padding

    def _output_size(self, size: int) -> int:
        if self.padding == "same":
            return -(-size // self.strides)
        return (size - self.kernel_size) // self.strides + 1

    def build(self, input_shape):
        check_grid_input(input_shape, "EMConvCaps")
        side = matrix_capsule_side(input_shape, "EMConvCaps")
        height, width = input_shape[1], input_shape[2]
        if self.padding == "valid" and self.kernel_size > min(height, width):
            raise ValueError(
                f"`kernel_size` ({self.kernel_size}) is larger than the input "
                f"grid ({height}x{width}) with padding='valid'. "
                f"Received: input_shape={input_shape}"
            )
        self.build_weights(
            (
                self.kernel_size * self.kernel_size,
                input_shape[3],
                self.num_capsules,
                side,
                side,
            ),
            side,
        )

    def _windows(self, inputs):
        """`(batch, out_h, out_w, K*K, in_types, P*P + 1)` by strided slicing."""
        height, width = inputs.shape[1], inputs.shape[2]
        out_h, out_w = self._output_size(height), self._output_size(width)
        k, s = self.kernel_size, self.strides
        if self.padding == "same":
            pad_h = max((out_h - 1) * s + k - height, 0)
            pad_w = max((out_w - 1) * s + k - width, 0)
            inputs = ops.pad(
                inputs,
                [
                    (0, 0),
                    (pad_h // 2, pad_h - pad_h // 2),
                    (pad_w // 2, pad_w - pad_w // 2),
                    (0, 0),
                    (0, 0),
                ],
            )
        span_h, span_w = (out_h - 1) * s + 1, (out_w - 1) * s + 1
        slices = [
            inputs[:, dy : dy + span_h : s, dx : dx + span_w : s]
            for dy in range(k)
            for dx in range(k)
        ]
        return ops.stack(slices, axis=3)

    def compute_votes(self, inputs):
        windows = self._windows(inputs)
        _, out_h, out_w, offsets, in_types, size = windows.shape
        side = math.isqrt(size - 1)
        poses = ops.reshape(
            windows[..., :-1], (-1, out_h, out_w, offsets, in_types, side, side)
        )
        activations = ops.reshape(
            windows[..., -1], (-1, out_h, out_w, offsets * in_types)
        )
        kernel = ops.cast(self.kernel, "float32")
        votes = ops.einsum("bhwkipq,kicqr->bhwkicpr", poses, kernel)
        votes = ops.reshape(
            votes,
            (-1, out_h, out_w, offsets * in_types, self.num_capsules, side * side),
        )
        return votes, activations

    def compute_output_shape(self, input_shape):
        return (
            input_shape[0],
            self._output_size(input_shape[1]),
            self._output_size(input_shape[2]),
            self.num_capsules,
            input_shape[-1],
        )

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "num_capsules": self.num_capsules,
                "kernel_size": self.kernel_size,
                "strides": self.strides,
                "padding": self.padding,
            }
        )
        return config
