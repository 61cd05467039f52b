"""`StopOnNonFiniteLoss`: end training with an error at the first NaN or inf loss."""

import math

import keras


class StopOnNonFiniteLoss(keras.callbacks.Callback):
    """Raises `FloatingPointError` at the first non-finite training loss.

    `keras.callbacks.TerminateOnNaN` ends `fit` quietly, after which a
    script goes on to save and evaluate a model whose weights are NaN. This
    callback raises instead, naming the epoch and the step, and, when given
    the batch sequence (any `kp.data` batches, which know the images of each
    step), the image files of the batch that made the loss non-finite. The
    epoch is not finished, so no checkpoint of it is written.

    Args:
        batches: Optional training batches with `batch_indices(step)` and
            `data.paths` (`kp.data.OnePerClassBatches`,
            `kp.data.ShuffledBatches`), to name the batch's images.

    Example:

        >>> import numpy as np
        >>> model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)])
        >>> model.compile(optimizer="sgd", loss="mse")
        >>> x = np.array([[1.0], [np.nan]], "float32")
        >>> model.fit(x, np.zeros((2, 1)), batch_size=1, verbose=0,
        ...           callbacks=[StopOnNonFiniteLoss()])
        Traceback (most recent call last):
            ...
        FloatingPointError: The training loss is nan at epoch 1, step 2; ...
    """

    def __init__(self, batches=None):
        super().__init__()
        self.batches = batches
        self._epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is None:
            return
        loss = float(loss)
        if math.isfinite(loss):
            return
        message = (
            f"The training loss is {loss} at epoch {self._epoch + 1}, step "
            f"{batch + 1}; stopped before this epoch's checkpoint."
        )
        files = self._files(batch)
        if files:
            message += f" The batch held: {', '.join(files)}."
        message += (
            " Check the inputs and the learning rate (a NaN pixel, labels "
            "out of range or a diverging run)."
        )
        raise FloatingPointError(message)

    def _files(self, step):
        batches = self.batches
        if batches is None or not hasattr(batches, "batch_indices"):
            return []
        try:
            indices = batches.batch_indices(step)
            paths = batches.data.paths
            return [str(paths[int(i)]) for i in indices]
        except Exception:  # Naming the files is a courtesy; never mask the error.
            return []
