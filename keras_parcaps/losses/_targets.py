"""Checked targets for the capsule losses: one-hot, with out-of-range labels."""

import numpy as np
from keras import ops


def _mismatch(y_true_shape, y_pred_shape):
    return ValueError(
        "`y_true` must be one-hot targets of the shape of `y_pred` (batch, "
        "classes) or integer labels (batch,). Received: "
        f"y_true.shape={tuple(y_true_shape)}, y_pred.shape={tuple(y_pred_shape)}"
    )


def one_hot_targets(y_true, y_pred):
    """`(y_pred, one-hot y_true, valid)` for a loss over class scores.

    Shapes are checked when the loss is traced (free inside compiled
    graphs). Integer labels outside `[0, classes)` raise at once when given
    as NumPy values; as tensors (inside `fit`) they make `valid` false, and
    the loss puts NaN there, so a wrong label stops training
    (`kp.callbacks.StopOnNonFiniteLoss`) instead of training silently
    against an all-zero target. `valid` is `None` for one-hot targets.
    """
    if isinstance(y_true, (list, tuple)):
        y_true = np.asarray(y_true)
    y_pred = ops.convert_to_tensor(y_pred)
    classes = y_pred.shape[-1] if len(y_pred.shape) else None
    is_array = isinstance(y_true, np.ndarray)
    y_true = y_true if is_array else ops.convert_to_tensor(y_true)
    t_shape, p_shape = tuple(y_true.shape), tuple(y_pred.shape)
    integer = "int" in str(y_true.dtype)
    if (
        integer
        and len(t_shape) == len(p_shape)
        and t_shape[-1:] == (1,)
        and classes != 1
    ):
        y_true = ops.squeeze(y_true, -1) if not is_array else y_true[..., 0]
        t_shape = t_shape[:-1]
    if len(t_shape) == len(p_shape) - 1:
        known = zip(t_shape, p_shape[:-1], strict=True)
        if any(a is not None and b is not None and a != b for a, b in known):
            raise _mismatch(y_true.shape, p_shape)
        if is_array and classes is not None and y_true.size:
            if y_true.min() < 0 or y_true.max() >= classes:
                raise ValueError(
                    f"Integer labels must be in [0, {classes}) for {classes} "
                    f"classes. Received: y_true with values in "
                    f"[{y_true.min()}, {y_true.max()}]"
                )
        labels = ops.cast(y_true, "int32")
        valid = ops.logical_and(labels >= 0, labels < classes)
        labels = ops.clip(labels, 0, classes - 1)
        return y_pred, ops.one_hot(labels, classes, dtype=y_pred.dtype), valid
    if len(t_shape) != len(p_shape) or any(
        a is not None and b is not None and a != b
        for a, b in zip(t_shape, p_shape, strict=True)
    ):
        raise _mismatch(t_shape, p_shape)
    return y_pred, ops.cast(y_true, y_pred.dtype), None


def mark_invalid(loss, valid):
    """NaN where `valid` is false (an out-of-range label), else `loss`."""
    if valid is None:
        return loss
    return ops.where(valid, loss, ops.full_like(loss, float("nan")))
