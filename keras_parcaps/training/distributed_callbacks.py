"""The callbacks of a training run that is data-parallel or multi-process.

Every process runs the same callbacks in the same order (the collectives of
every engine need every process in every call).
"""

import keras
import numpy as np

from keras_parcaps.callbacks.precise_batch_norm import recalibrate_batch_norm
from keras_parcaps.training import distribution_backend
from keras_parcaps.training.averaged_weights import averaged_weights
from keras_parcaps.training.sharded_predictor import ShardedPredictor


def recalibrate_local_copy(model, local, batches, num_batches: int = 32):
    """Recalibrates BatchNormalization on this process's copy of `model`.

    Under data parallelism a process predicts with its own copy (`local`,
    from `distribution_backend.local_model` or a `ShardedPredictor`); its
    new statistics are written back so that `model` saves and reports them.
    """
    recalibrate_batch_norm(local, batches, num_batches)
    if local is not model:
        model.set_weights(local.get_weights())


class MeanLogs(keras.callbacks.Callback):
    """Averages the epoch's training logs over processes (PyTorch DDP).

    JAX computes its metrics over the global batch and TensorFlow reduces
    them over replicas; under DDP each process has its own shard's.
    """

    def on_epoch_end(self, epoch, logs=None):
        if logs:
            logs.update(distribution_backend.all_mean(logs))


class ShardedValidation(keras.callbacks.Callback):
    """Per-epoch validation of a distributed run, over all data, once.

    Adds `val_loss`, `val_acc` and `val_wacc` to the epoch's logs (before
    checkpoints and the CSV log see them): the validation images are shared
    out over the processes (`ShardedPredictor`), each image predicted once,
    and the metrics are computed on all predictions, as a single process
    computes them. With an optimizer that averages the weights (`use_ema`)
    it scores the averaged weights, like Keras's validation under
    `keras.callbacks.SwapEMAWeights`. With `recalibrate` the
    BatchNormalization statistics are first set from training batches, as
    `train` does before every validation.

    Args:
        data: The validation `ImageSet`.
        recalibrate: Training batches (the unsharded `OnePerClassBatches`) to
            recalibrate BatchNormalization on, or `None`.
        batch_size: Prediction batch size.
    """

    def __init__(self, data, recalibrate=None, batch_size: int = 32):
        super().__init__()
        self.data = data
        self.recalibrate = recalibrate
        self.batch_size = batch_size
        self._predictor = None

    def set_model(self, model):
        super().set_model(model)
        self._predictor = None  # a new model (a new KerasTuner trial)

    def on_epoch_end(self, epoch, logs=None):
        from keras_parcaps.data.sampling import to_model_input
        from keras_parcaps.metrics.weighted_accuracy import WeightedAccuracy

        if self._predictor is None:
            self._predictor = ShardedPredictor(self.model)
        # Score the averaged weights, as `SwapEMAWeights` makes Keras's own
        # validation do; the training weights come back for the next epoch.
        with averaged_weights(self.model):
            local = self._predictor.refresh()
            if self.recalibrate is not None:
                recalibrate_local_copy(self.model, local, self.recalibrate)
            scores = self._predictor.predict(
                to_model_input(self.data.images()), batch_size=self.batch_size
            )
        truth = keras.utils.to_categorical(self.data.labels, self.data.num_classes)
        loss = keras.losses.get(self.model.loss)(
            truth.astype("float32"), scores.astype("float32")
        )
        wacc = WeightedAccuracy(self.data.num_classes)
        wacc.update_state(truth, scores)
        if logs is not None:
            logs.update(
                val_loss=float(keras.ops.convert_to_numpy(loss)),
                val_acc=float(np.mean(scores.argmax(-1) == self.data.labels)),
                val_wacc=float(keras.ops.convert_to_numpy(wacc.result())),
            )
