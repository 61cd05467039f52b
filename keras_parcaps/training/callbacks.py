"""`training_callbacks`: the callbacks of every training run, in one place."""

import keras

from keras_parcaps.callbacks.stop_on_non_finite_loss import StopOnNonFiniteLoss
from keras_parcaps.models.compiling import loss_callbacks
from keras_parcaps.training import distribution_backend, saving
from keras_parcaps.training.averaged_weights import averaging_optimizer
from keras_parcaps.training.distributed_callbacks import MeanLogs


class _SetEpoch(keras.callbacks.Callback):
    """Tells the batch generators which epoch runs, also after a resume."""

    def __init__(self, datasets):
        super().__init__()
        self.datasets = datasets

    def on_epoch_begin(self, epoch, logs=None):
        for dataset in self.datasets:
            dataset.set_epoch(epoch)


class _EpochCheckpoint(keras.callbacks.Callback):
    """Saves weights and optimizer state after every epoch, atomically."""

    def __init__(self, run):
        super().__init__()
        self.run = run

    def on_epoch_end(self, epoch, logs=None):
        self.run.checkpoint_dir.mkdir(parents=True, exist_ok=True)
        saving.save_weights(self.model, self.run.checkpoint_path(epoch + 1))


def training_callbacks(
    model,
    data=None,
    run=None,
    callbacks=None,
    margin_schedule: bool = True,
    validation=None,
) -> list:
    """The callbacks of a training run: `kp.training.train` and the tuner use it.

    In this order:

    - for training data that is a `kp.data` batch sequence (anything with
      `set_epoch`), a callback that sets the epoch before each one, so every
      epoch draws its own batches, also after a resume;
    - `kp.callbacks.StopOnNonFiniteLoss`, which ends training with an error
      naming the step (and the batch's images) at the first NaN or inf loss;
    - on PyTorch with several processes, a callback that averages the
      epoch's logged training metrics over the processes (each computed
      them on its own shard); JAX and TensorFlow log global metrics;
    - the `validation` callback, so that its metrics are in the logs before
      anything writes them;
    - with a `run` (a `RunFolder`), a checkpoint of the weights and optimizer
      state after every epoch (`checkpoints/epoch_NNN.weights.h5`, written
      atomically) and `log.csv` (`keras.callbacks.CSVLogger`, appended to);
    - the extra `callbacks`;
    - for an optimizer that averages the weights (`use_ema`, as the
      `"auto"` optimizer of `kp.models.compile_model` does, also inside a
      mixed_float16 `LossScaleOptimizer`),
      `keras.callbacks.SwapEMAWeights()`, so that validation measures the
      averaged weights that `fit` leaves in the model (checkpoints keep the
      training weights and the average, so a resumed run continues both);
    - the callbacks the model's loss needs (`kp.models.loss_callbacks`: for
      `kp.losses.SpreadLoss`, the EM networks, the paper's margin ramp
      `kp.callbacks.SpreadMarginSchedule()`), unless `callbacks` holds one
      of that type or `margin_schedule=False`.

    Args:
        model: The compiled model to train.
        data: The training data passed to `fit`.
        run: Optional `kp.training.RunFolder` for checkpoints and the log.
        callbacks: Extra Keras callbacks.
        margin_schedule: Whether a spread-loss model gets the margin ramp.
        validation: Optional callback that adds the epoch's validation
            metrics to its logs (`ShardedValidation` in data-parallel runs,
            whose validation `fit` cannot split evenly).

    Returns:
        A list of Keras callbacks for `model.fit`.

    Example:

        >>> model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
        >>> from keras_parcaps.losses import SpreadLoss
        >>> model.compile(loss=SpreadLoss())
        >>> [type(c).__name__ for c in training_callbacks(model)]
        ['StopOnNonFiniteLoss', 'SpreadMarginSchedule']
    """
    result = []
    if hasattr(data, "set_epoch"):
        result.append(_SetEpoch([data]))
    result.append(StopOnNonFiniteLoss(data if hasattr(data, "batch_indices") else None))
    if keras.backend.backend() == "torch" and distribution_backend.process_count() > 1:
        result.append(MeanLogs())
    if validation is not None:
        result.append(validation)
    if run is not None:
        result.append(_EpochCheckpoint(run))
        result.append(keras.callbacks.CSVLogger(str(run.log_path), append=True))
    result.extend(callbacks or [])
    optimizer = getattr(model, "optimizer", None)
    if averaging_optimizer(optimizer) is not None and not any(
        isinstance(c, keras.callbacks.SwapEMAWeights) for c in result
    ):
        result.append(keras.callbacks.SwapEMAWeights())
    if margin_schedule:
        for callback in loss_callbacks(getattr(model, "loss", None)):
            if not any(isinstance(c, type(callback)) for c in result):
                result.append(callback)
    return result
