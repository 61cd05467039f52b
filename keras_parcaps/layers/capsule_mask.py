"""The `CapsuleMask` layer: keep one capsule, zero the others."""

import keras
from keras import ops

from keras_parcaps.ops.capsule_ops import safe_norm


@keras.saving.register_keras_serializable(package="keras_parcaps")
class CapsuleMask(keras.layers.Layer):
    """Masks all capsules but one and flattens them, for reconstruction.

    Sabour et al. (2017) reconstruct the input from the class capsules with
    every capsule but the true class's set to zero during training, and all
    but the longest at inference. Pass `labels` to mask by label; leave them
    out to mask by the longest capsule.

    Call arguments:
        inputs: Vector capsules `(batch, num_capsules, capsule_dim)`.
        labels: Optional labels, one-hot `(batch, num_capsules)` or integer
            `(batch,)`. If `None`, the longest capsule is kept.

    Input shape:
        `(batch, num_capsules, capsule_dim)`.

    Output shape:
        `(batch, num_capsules * capsule_dim)`.

    Example:

        >>> import numpy as np
        >>> caps = np.array([[[1.0, 0.0], [0.0, 2.0]]])
        >>> keras.ops.convert_to_numpy(CapsuleMask()(caps))
        array([[0., 0., 0., 2.]], dtype=float32)
    """

    def call(self, inputs, labels=None):
        num_capsules = inputs.shape[-2]
        if labels is None:
            labels = ops.argmax(safe_norm(inputs, axis=-1), axis=-1)
        if len(labels.shape) == 1:
            labels = ops.one_hot(ops.cast(labels, "int32"), num_capsules)
        mask = ops.expand_dims(ops.cast(labels, inputs.dtype), axis=-1)
        return ops.reshape(inputs * mask, (-1, num_capsules * inputs.shape[-1]))

    def compute_output_shape(self, inputs_shape, labels_shape=None):
        return (inputs_shape[0], inputs_shape[-2] * inputs_shape[-1])
