"""The `CapsuleLength` layer: vector capsules to class scores."""

import keras

from keras_parcaps.ops.capsule_ops import safe_norm


@keras.saving.register_keras_serializable(package="keras_parcaps")
class CapsuleLength(keras.layers.Layer):
    """Lengths of vector capsules, used as class scores.

    The length of a squashed capsule lies in `[0, 1)` and is read as the
    probability that its entity is present; it is what `MarginLoss` scores.

    Args:
        epsilon: Small constant under the square root, so that the gradient
            is finite for an all-zero capsule.
        **kwargs: Base layer keyword arguments, such as `name` and `dtype`.

    Input shape:
        `(batch, ..., num_capsules, capsule_dim)`.

    Output shape:
        `(batch, ..., num_capsules)`.

    Example:

        >>> import numpy as np
        >>> caps = np.array([[[3.0, 4.0], [0.0, 0.0]]])
        >>> np.round(keras.ops.convert_to_numpy(CapsuleLength()(caps)), 3)
        array([[5., 0.]], dtype=float32)
    """

    def __init__(self, epsilon: float = 1e-7, **kwargs):
        super().__init__(**kwargs)
        if epsilon < 0:
            raise ValueError(f"`epsilon` must be >= 0. Received: epsilon={epsilon}")
        self.epsilon = epsilon

    def call(self, inputs):
        return safe_norm(inputs, axis=-1, epsilon=self.epsilon)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1])

    def get_config(self):
        config = super().get_config()
        config.update({"epsilon": self.epsilon})
        return config
