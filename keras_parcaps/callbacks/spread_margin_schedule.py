"""The `SpreadMarginSchedule` callback: Hinton et al.'s spread-loss margin ramp."""

import keras

from keras_parcaps._checks import check_choice, check_positive_int
from keras_parcaps.losses.spread_loss import SpreadLoss


def _spread_losses(loss):
    if isinstance(loss, SpreadLoss):
        return [loss]
    if isinstance(loss, dict):
        loss = list(loss.values())
    if isinstance(loss, (list, tuple)):
        return [item for item in loss if isinstance(item, SpreadLoss)]
    return []


class SpreadMarginSchedule(keras.callbacks.Callback):
    """Ramps the margin of the model's `SpreadLoss` linearly from `start` to `end`.

    The margin is a pure function of the training position, `start + (end -
    start) * min(1, t / ramp_length)`, where `t` is the epoch index
    (`unit="epoch"`) or the optimizer step rounded down to a multiple of
    `update_every` (`unit="step"`). The callback keeps no state of its own,
    so resuming restores the margin exactly: the epoch index comes back with
    `fit(initial_epoch=...)` or `keras.callbacks.BackupAndRestore`, and the
    step is the optimizer's `iterations`, which is saved with the model
    (`.keras` files, `BackupAndRestore`). The loss's current margin is also
    saved in the `.keras` compile config.

    The margin is a Python float of the loss, so the compiled train step
    (TensorFlow, JAX) bakes it in; when it changes, the callback rebuilds the
    train function and the next step is traced again. That is one retrace
    per change: once per epoch with `unit="epoch"`, once per `update_every`
    steps with `unit="step"` (pick e.g. 500, the paper's epoch). A variable
    read inside the loss would avoid the retrace on TensorFlow and PyTorch
    but not on JAX, whose train step carries only model, optimizer and
    metric variables.

    With `unit="step"` the callback counts one step per train batch, as
    with `steps_per_execution=1`.

    Hinton et al. add 0.1 per epoch from 0.2 up to 0.9: the default
    `ramp_length=7` epochs.

    Args:
        start: Margin at `t = 0`. Default 0.2.
        end: Margin from `t = ramp_length` on. Default 0.9.
        ramp_length: Epochs or steps over which the margin ramps, at least 1.
            Default 7.
        unit: `"epoch"` or `"step"`.
        update_every: With `unit="step"`, steps between margin updates, at
            least 1. Default 1.
        verbose: Whether to print each new margin.

    Example:

        >>> schedule = SpreadMarginSchedule(start=0.2, end=0.9, ramp_length=7)
        >>> [round(schedule.margin_at(t), 2) for t in (0, 1, 7, 20)]
        [0.2, 0.3, 0.9, 0.9]

    Reference:
        - [Hinton et al., 2018](https://openreview.net/forum?id=HJWLfGWRb)
    """

    def __init__(
        self,
        start: float = 0.2,
        end: float = 0.9,
        ramp_length: int = 7,
        unit: str = "epoch",
        update_every: int = 1,
        verbose: bool = False,
    ):
        super().__init__()
        for name, value in (("start", start), ("end", end)):
            if not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
                raise ValueError(
                    f"`{name}` must be a float in [0, 1]. Received: {name}={value!r}"
                )
        check_positive_int("ramp_length", ramp_length)
        check_choice("unit", unit, ("epoch", "step"))
        check_positive_int("update_every", update_every)
        self.start = float(start)
        self.end = float(end)
        self.ramp_length = ramp_length
        self.unit = unit
        self.update_every = update_every
        self.verbose = bool(verbose)
        self._losses = []
        self._step = 0

    def margin_at(self, t: int) -> float:
        """The margin at epoch or step `t`."""
        return self.start + (self.end - self.start) * min(1.0, t / self.ramp_length)

    @property
    def margin(self):
        """The margin the loss uses now, or `None` before training."""
        return self._losses[0].margin if self._losses else None

    def _apply(self, t: int) -> None:
        margin = self.margin_at(t)
        if all(loss.margin == margin for loss in self._losses):
            return
        for loss in self._losses:
            loss.margin = margin
        # The compiled step holds the old margin as a constant: trace again.
        self.model.make_train_function(force=True)
        if self.verbose:
            print(f"SpreadMarginSchedule: margin {margin:.4f} at {self.unit} {t}")

    def on_train_begin(self, logs=None):
        self._losses = _spread_losses(getattr(self.model, "loss", None))
        if not self._losses:
            raise ValueError(
                "`SpreadMarginSchedule` needs a model compiled with a "
                f"`SpreadLoss`. Received: loss={getattr(self.model, 'loss', None)!r}"
            )
        # Read once, before a JAX fit moves the state off the variables.
        self._step = int(keras.ops.convert_to_numpy(self.model.optimizer.iterations))
        if self.unit == "step":
            self._apply(self._step - self._step % self.update_every)

    def on_epoch_begin(self, epoch, logs=None):
        if self.unit == "epoch":
            self._apply(epoch)

    def on_train_batch_begin(self, batch, logs=None):
        if self.unit == "step" and self._step % self.update_every == 0:
            self._apply(self._step)

    def on_train_batch_end(self, batch, logs=None):
        self._step += 1

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["spread_margin"] = self.margin

    def get_config(self):
        return {
            "start": self.start,
            "end": self.end,
            "ramp_length": self.ramp_length,
            "unit": self.unit,
            "update_every": self.update_every,
            "verbose": self.verbose,
        }
