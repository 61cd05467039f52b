"""The one place that compiles a network the paper's way, and what its loss needs."""

import keras

from keras_parcaps.callbacks.spread_margin_schedule import SpreadMarginSchedule
from keras_parcaps.losses.spread_loss import SpreadLoss
from keras_parcaps.metrics.weighted_accuracy import WeightedAccuracy

# The paper trains every network with Nadam at 1e-3.
LEARNING_RATE = 1e-3
# Momentum of the moving average of the weights that the "auto" optimizer
# keeps and that `fit` leaves in the model (see `compile_model`).
EMA_MOMENTUM = 0.97


def unshare_variables(variables) -> None:
    """Gives each of `variables` an array of its own.

    On JAX, `variable.assign(other)` makes `variable` hold `other`'s array,
    and `fit`, `evaluate` and `predict` donate the model's arrays to their
    compiled step, which frees them. So after
    `Optimizer.finalize_variable_values` (the end of `fit` with
    `use_ema=True`) the next `predict` would free the optimizer's moving
    averages too, and a later `fit` or `save` would fail with "Array has
    been deleted". A copy breaks the sharing; elsewhere it is one copy of
    the weights.
    """
    for variable in variables:
        variable.assign(keras.ops.copy(variable))


@keras.saving.register_keras_serializable(package="keras_parcaps")
class AveragingNadam(keras.optimizers.Nadam):
    """`keras.optimizers.Nadam` whose weights own their arrays after `fit`.

    The `"auto"` optimizer of `compile_model`. Keras's `fit` ends by writing
    the moving average of the weights into the model
    (`finalize_variable_values`); on JAX that leaves each weight sharing its
    array with the average, so `fit`, `predict`, then `fit` or `save` again
    failed (see `unshare_variables`). This class copies the weights there;
    it is `Nadam` in everything else, and saves as this class.
    """

    def finalize_variable_values(self, var_list):
        super().finalize_variable_values(var_list)
        if self.use_ema:
            unshare_variables(var_list)


def default_metrics(num_classes: int) -> list:
    """The paper's metrics: Acc (`"acc"`) and WAcc (`"wacc"`).

    Args:
        num_classes: Number of classes, for `kp.metrics.WeightedAccuracy`.

    Returns:
        A list of two fresh metric objects.

    Example:

        >>> [metric.name for metric in default_metrics(3)]
        ['acc', 'wacc']
    """
    return [
        keras.metrics.CategoricalAccuracy(name="acc"),
        WeightedAccuracy(num_classes, name="wacc"),
    ]


def compile_model(
    model,
    optimizer="auto",
    loss="auto",
    metrics="auto",
    *,
    learning_rate=LEARNING_RATE,
    num_classes=None,
    **kwargs,
):
    """Compiles `model` for training, with the paper's defaults for `"auto"`.

    Every `kp.models` builder, `kp.training.train` and the tuner compile
    through this function, the way keras-hub's tasks call
    `compile(optimizer="auto", loss="auto", metrics="auto")`:

    - `optimizer="auto"`: `AveragingNadam(learning_rate, use_ema=True,
      ema_momentum=EMA_MOMENTUM)`, a `keras.optimizers.Nadam`: the paper's
      optimizer for
      every network, keeping an exponential moving average of the weights
      that `fit` writes into the model when it ends (Keras's `use_ema`), so
      `predict` after `fit` uses the averaged weights. The paper uses plain
      Nadam; with its batches of one image per class, the held-out accuracy
      of the last weights swings by 10-30 points from one check to the
      next, and the averaged weights are steadier and better (measured on
      real cells, docs/concepts.md). Pass `optimizer="nadam"` for the
      paper's exact optimizer.
    - `loss="auto"`: the loss `model` was compiled with before (a builder's
      `MarginLoss`, `SpreadLoss` or cross-entropy), so recompiling keeps it.
    - `metrics="auto"`: Acc and WAcc, logged as `acc` and `wacc` (and
      `val_wacc`, the paper's selection metric; see `default_metrics`).

    The callback a loss needs during training comes from `loss_callbacks`.

    Args:
        model: A Keras model.
        optimizer: `"auto"` or anything `Model.compile` accepts.
        loss: `"auto"` or anything `Model.compile` accepts.
        metrics: `"auto"` or anything `Model.compile` accepts.
        learning_rate: Learning rate of the `"auto"` optimizer, a float or a
            `keras.optimizers.schedules.LearningRateSchedule` such as
            `CosineDecay(1e-3, decay_steps)` (with which the capsule
            networks learnt real cells best; docs/concepts.md). Default
            1e-3, the paper's constant rate.
        num_classes: Number of classes of the `"auto"` metrics. Default: the
            last dimension of the model's output.
        **kwargs: Other `Model.compile` arguments, such as `jit_compile`.

    Returns:
        `model`, compiled.

    Raises:
        ValueError: for `loss="auto"` on a model that was never compiled,
            or `metrics="auto"` when the number of classes is unknown.

    Example:

        >>> model = keras.Sequential(
        ...     [keras.Input((3,)), keras.layers.Dense(2, activation="softmax")])
        >>> model = compile_model(model, loss="categorical_crossentropy")
        >>> optimizer = model.optimizer
        >>> isinstance(optimizer, keras.optimizers.Nadam)
        True
        >>> round(float(optimizer.learning_rate), 6)
        0.001
        >>> optimizer.use_ema, optimizer.ema_momentum
        (True, 0.97)
        >>> model = compile_model(model, learning_rate=0.01)  # keeps the loss
        >>> model.loss, round(float(model.optimizer.learning_rate), 6)
        ('categorical_crossentropy', 0.01)
        >>> compile_model(keras.Sequential([keras.Input((3,))]))
        Traceback (most recent call last):
            ...
        ValueError: The model has no loss: pass `loss` or compile it first ...
    """
    if isinstance(loss, str) and loss == "auto":
        loss = getattr(model, "loss", None)
        if loss is None:
            raise ValueError(
                "The model has no loss: pass `loss` or compile it first (the "
                "kp.models builders return compiled models). "
                f"Received: loss='auto' for model {model.name!r}"
            )
    if isinstance(optimizer, str) and optimizer == "auto":
        optimizer = AveragingNadam(
            learning_rate, use_ema=True, ema_momentum=EMA_MOMENTUM
        )
    if isinstance(metrics, str) and metrics == "auto":
        if num_classes is None:
            num_classes = _num_classes(model)
        metrics = default_metrics(num_classes)
    model.compile(optimizer=optimizer, loss=loss, metrics=metrics, **kwargs)
    return model


def loss_callbacks(loss) -> list:
    """The training callbacks that `loss` needs, fresh for one run.

    `kp.losses.SpreadLoss` (EM networks) gets the paper's margin ramp,
    `kp.callbacks.SpreadMarginSchedule()`; other losses need none.

    Args:
        loss: A loss, such as a compiled model's `model.loss`.

    Returns:
        A list of new callbacks.

    Example:

        >>> from keras_parcaps.losses import MarginLoss
        >>> [type(c).__name__ for c in loss_callbacks(SpreadLoss())]
        ['SpreadMarginSchedule']
        >>> loss_callbacks(MarginLoss())
        []
    """
    if isinstance(loss, SpreadLoss):
        return [SpreadMarginSchedule()]
    return []


def _num_classes(model) -> int:
    try:
        shape = model.output_shape
    except (AttributeError, ValueError):
        shape = None
    if not isinstance(shape, tuple) or not shape or not isinstance(shape[-1], int):
        raise ValueError(
            "`metrics='auto'` needs the number of classes: pass `num_classes` "
            f"(the model's output shape is not known). Received: model={model.name!r}"
        )
    return shape[-1]
