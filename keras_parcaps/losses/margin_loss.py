"""The margin loss of Sabour et al. (2017), Eq. 4."""

import keras
from keras import ops

from keras_parcaps.losses._targets import mark_invalid, one_hot_targets


@keras.saving.register_keras_serializable(package="keras_parcaps")
def margin_loss(
    y_true,
    y_pred,
    m_plus: float = 0.9,
    m_minus: float = 0.1,
    down_weight: float = 0.5,
):
    """Margin loss per sample, summed over classes.

    `L = sum_k T_k max(0, m+ - |v_k|)^2 + lambda (1 - T_k) max(0, |v_k| - m-)^2`

    Args:
        y_true: One-hot targets `(batch, classes)`, or integer labels
            `(batch,)` in `[0, classes)`; a label out of range gives a NaN
            loss for its sample (a `ValueError` for NumPy labels).
        y_pred: Capsule lengths `(batch, classes)` in `[0, 1]`.
        m_plus: Length a present class must reach. Default 0.9.
        m_minus: Length an absent class must stay under. Default 0.1.
        down_weight: `lambda`, the weight of the absent-class term.
            Default 0.5.

    Returns:
        The loss of each sample, shape `(batch,)`.

    Raises:
        ValueError: when the shapes of `y_true` and `y_pred` do not match.

    Example:

        >>> import numpy as np
        >>> y_true = np.array([[1.0, 0.0]])
        >>> y_pred = np.array([[0.5, 0.3]])
        >>> loss = margin_loss(y_true, y_pred)  # 0.4**2 + 0.5 * 0.2**2
        >>> round(float(loss[0]), 4)
        0.18
    """
    y_pred, y_true, valid = one_hot_targets(y_true, y_pred)
    present = y_true * ops.square(ops.relu(m_plus - y_pred))
    absent = (1.0 - y_true) * ops.square(ops.relu(y_pred - m_minus))
    return mark_invalid(ops.sum(present + down_weight * absent, axis=-1), valid)


@keras.saving.register_keras_serializable(package="keras_parcaps")
class MarginLoss(keras.losses.Loss):
    """Margin loss of capsule lengths (Sabour et al. 2017, Eq. 4).

    Summed over classes and, with the default reduction, averaged over the
    batch. A present class is pushed above `m_plus`, an absent one below
    `m_minus`, with the absent term weighted by `down_weight` so that the
    many absent classes do not shrink every capsule at the start.

    Args:
        m_plus: Length a present class must reach. Default 0.9.
        m_minus: Length an absent class must stay under. Default 0.1.
        down_weight: `lambda`, the weight of the absent-class term.
            Default 0.5.
        reduction: Keras loss reduction. Default `"sum_over_batch_size"`.
        name: Name of the loss.
        dtype: Dtype of the loss computation.

    Example:

        >>> import numpy as np
        >>> loss = MarginLoss()
        >>> round(float(loss(np.array([[1.0, 0.0]]), np.array([[0.5, 0.3]]))), 4)
        0.18

    Reference:
        - [Sabour et al., 2017](https://arxiv.org/abs/1710.09829)
    """

    def __init__(
        self,
        m_plus: float = 0.9,
        m_minus: float = 0.1,
        down_weight: float = 0.5,
        reduction="sum_over_batch_size",
        name: str = "margin_loss",
        dtype=None,
    ):
        if not 0.0 <= m_minus < m_plus <= 1.0:
            raise ValueError(
                "Margins must satisfy 0 <= m_minus < m_plus <= 1. "
                f"Received: m_plus={m_plus}, m_minus={m_minus}"
            )
        if down_weight < 0:
            raise ValueError(
                f"`down_weight` must be >= 0. Received: down_weight={down_weight}"
            )
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.m_plus = m_plus
        self.m_minus = m_minus
        self.down_weight = down_weight

    def call(self, y_true, y_pred):
        return margin_loss(
            y_true,
            y_pred,
            m_plus=self.m_plus,
            m_minus=self.m_minus,
            down_weight=self.down_weight,
        )

    def get_config(self):
        config = super().get_config()
        return {
            **config,
            "m_plus": self.m_plus,
            "m_minus": self.m_minus,
            "down_weight": self.down_weight,
        }
