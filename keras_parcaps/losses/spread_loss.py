"""The spread loss of Hinton et al. (2018)."""

import keras
from keras import ops

from keras_parcaps.losses._targets import mark_invalid, one_hot_targets


def _check_margin(margin) -> None:
    if not isinstance(margin, (int, float)) or not 0.0 <= margin <= 1.0:
        raise ValueError(
            f"`margin` must be a float in [0, 1]. Received: margin={margin!r}"
        )


@keras.saving.register_keras_serializable(package="keras_parcaps")
def spread_loss(y_true, y_pred, margin: float = 0.2):
    """Spread loss per sample.

    `L = sum_{i != t} max(0, m - (a_t - a_i))^2`, where `a_t` is the
    activation of the target class.

    Args:
        y_true: One-hot targets `(batch, classes)`, or integer labels
            `(batch,)` in `[0, classes)`; a label out of range gives a NaN
            loss for its sample (a `ValueError` for NumPy labels).
        y_pred: Class activations `(batch, classes)` in `[0, 1]`.
        margin: `m`. Default 0.2, the start of Hinton et al.'s schedule.

    Returns:
        The loss of each sample, shape `(batch,)`.

    Raises:
        ValueError: when the shapes of `y_true` and `y_pred` do not match.

    Example:

        >>> import numpy as np
        >>> loss = spread_loss(np.array([[1.0, 0.0, 0.0]]),
        ...                    np.array([[0.5, 0.4, 0.1]]), margin=0.2)
        >>> round(float(loss[0]), 4)  # 0.1**2 + 0
        0.01
    """
    y_pred, y_true, valid = one_hot_targets(y_true, y_pred)
    target = ops.sum(y_true * y_pred, axis=-1, keepdims=True)
    spread = ops.square(ops.relu(margin - (target - y_pred)))
    return mark_invalid(ops.sum((1.0 - y_true) * spread, axis=-1), valid)


@keras.saving.register_keras_serializable(package="keras_parcaps")
class SpreadLoss(keras.losses.Loss):
    """Spread loss of class activations (Hinton et al. 2018).

    Every wrong class whose activation comes within `margin` of the target
    class's is penalised quadratically. Hinton et al. ramp the margin from
    0.2 to 0.9 during training, so that few dead capsules appear early on;
    `kp.callbacks.SpreadMarginSchedule` does that by setting `margin`.

    Args:
        margin: `m`, a float in `[0, 1]`. Default 0.2.
        reduction: Keras loss reduction. Default `"sum_over_batch_size"`.
        name: Name of the loss.
        dtype: Dtype of the loss computation.

    Example:

        >>> import numpy as np
        >>> loss = SpreadLoss(margin=0.2)
        >>> round(float(loss(np.array([[1.0, 0.0, 0.0]]),
        ...                  np.array([[0.5, 0.4, 0.1]]))), 4)
        0.01

    Reference:
        - [Hinton et al., 2018](https://openreview.net/forum?id=HJWLfGWRb)
    """

    def __init__(
        self,
        margin: float = 0.2,
        reduction="sum_over_batch_size",
        name: str = "spread_loss",
        dtype=None,
    ):
        _check_margin(margin)
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.margin = float(margin)

    def call(self, y_true, y_pred):
        return spread_loss(y_true, y_pred, margin=self.margin)

    def get_config(self):
        return {**super().get_config(), "margin": self.margin}
