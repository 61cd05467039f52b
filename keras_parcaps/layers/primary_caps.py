"""The `PrimaryCaps` layer: the first capsules, cut from a feature map."""

import keras
from keras import ops

from keras_parcaps._checks import check_choice, check_positive_int, pose_side
from keras_parcaps.ops.capsule_ops import squash


@keras.saving.register_keras_serializable(package="keras_parcaps")
class PrimaryCaps(keras.layers.Layer):
    """Primary capsules: a convolution whose channels become capsules.

    With `kind="vector"` (Sabour et al. 2017) one convolution produces
    `num_capsules * capsule_dim` channels per grid point, which are split into
    `num_capsules` vectors of length `capsule_dim` and squashed.

    With `kind="matrix"` (Hinton et al. 2018) a pose convolution produces
    `num_capsules` row-major `P x P` pose matrices (`capsule_dim = P * P`) and
    an activation convolution with a sigmoid produces one activation per
    capsule; they are packed as `capsule_dim + 1` values per capsule.

    Args:
        num_capsules: Number of capsule types per grid point, at least 1.
        capsule_dim: Length of a vector capsule, or number of pose entries
            `P * P` of a matrix capsule (then a perfect square: 9, 16, 25).
        kernel_size: Size of the convolution window, an int or a pair.
        strides: Strides of the convolution, an int or a pair.
        padding: `"valid"` or `"same"`.
        kind: `"vector"` or `"matrix"`.
        kernel_initializer: Initializer of the convolution kernels.
        kernel_regularizer: Optional regularizer of the convolution kernels.
        **kwargs: Base layer keyword arguments, such as `name` and `dtype`.

    Input shape:
        4D tensor `(batch, height, width, channels)`.

    Output shape:
        `(batch, new_height, new_width, num_capsules, capsule_dim)` for vector
        capsules, `(batch, new_height, new_width, num_capsules,
        capsule_dim + 1)` for matrix capsules (pose, then activation).

    Example:

        >>> x = keras.random.normal((2, 20, 20, 64))
        >>> caps = PrimaryCaps(num_capsules=32, capsule_dim=8, kernel_size=9,
        ...                    strides=2)(x)
        >>> tuple(caps.shape)
        (2, 6, 6, 32, 8)

    Reference:
        - [Sabour et al., 2017](https://arxiv.org/abs/1710.09829)
        - [Hinton et al., 2018](https://openreview.net/forum?id=HJWLfGWRb)
    """

    def __init__(
        self,
        num_capsules: int,
        capsule_dim: int,
        kernel_size=1,
        strides=1,
        padding: str = "valid",
        kind: str = "vector",
        kernel_initializer="glorot_uniform",
        kernel_regularizer=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        check_positive_int("num_capsules", num_capsules)
        check_positive_int("capsule_dim", capsule_dim)
        check_choice("kind", kind, ("vector", "matrix"))
        check_choice("padding", padding, ("valid", "same"))
        if kind == "matrix":
            pose_side(capsule_dim, name="capsule_dim")
        self.num_capsules = num_capsules
        self.capsule_dim = capsule_dim
        self.kernel_size = kernel_size
        self.strides = strides
        self.padding = padding
        self.kind = kind
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.kernel_regularizer = keras.regularizers.get(kernel_regularizer)
        conv_kwargs = dict(
            kernel_size=kernel_size,
            strides=strides,
            padding=padding,
            kernel_initializer=self.kernel_initializer,
            kernel_regularizer=self.kernel_regularizer,
            dtype=self.dtype_policy,
        )
        self.pose_conv = keras.layers.Conv2D(
            num_capsules * capsule_dim, name="pose_conv", **conv_kwargs
        )
        self.activation_conv = None
        if kind == "matrix":
            self.activation_conv = keras.layers.Conv2D(
                num_capsules,
                activation="sigmoid",
                name="activation_conv",
                **conv_kwargs,
            )

    def build(self, input_shape):
        if len(input_shape) != 4:
            raise ValueError(
                "`PrimaryCaps` expects a 4D input (batch, height, width, channels). "
                f"Received: input_shape={input_shape}"
            )
        self.pose_conv.build(input_shape)
        if self.activation_conv is not None:
            self.activation_conv.build(input_shape)

    def call(self, inputs):
        poses = self.pose_conv(inputs)
        height, width = poses.shape[1], poses.shape[2]
        poses = ops.reshape(
            poses, (-1, height, width, self.num_capsules, self.capsule_dim)
        )
        if self.activation_conv is None:
            return squash(poses)
        activations = self.activation_conv(inputs)
        activations = ops.expand_dims(activations, axis=-1)
        return ops.concatenate([poses, activations], axis=-1)

    def compute_output_shape(self, input_shape):
        conv_shape = self.pose_conv.compute_output_shape(input_shape)
        dim = self.capsule_dim + (1 if self.kind == "matrix" else 0)
        return (*conv_shape[:3], self.num_capsules, dim)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "num_capsules": self.num_capsules,
                "capsule_dim": self.capsule_dim,
                "kernel_size": self.kernel_size,
                "strides": self.strides,
                "padding": self.padding,
                "kind": self.kind,
                "kernel_initializer": keras.initializers.serialize(
                    self.kernel_initializer
                ),
                "kernel_regularizer": keras.regularizers.serialize(
                    self.kernel_regularizer
                ),
            }
        )
        return config
