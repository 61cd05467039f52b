"""Predictions shared out over the processes of a distributed run."""

import math

import numpy as np

from keras_parcaps.training import distribution_backend


class ShardedPredictor:
    """`predict` over every process: each predicts its share, all get all.

    Stands in for a model wherever `predict(x, batch_size, verbose)` is
    called (`kp.evaluation.evaluate_model`, `predict_orientations`): the
    images are split into one contiguous, equal share per process (the last
    share padded with copies of the last image), each process predicts its
    share on its own devices, and the scores are gathered in order, so every
    image is predicted once and every process returns the same scores as a
    single process would. Every process must make the same calls. With one
    process it is `model.predict` (through a local copy on JAX when a
    distribution is set, whose last, partial batch would not shard).

    Args:
        model: A Keras model, possibly built inside `data_parallel()`.

    Example:

        >>> import keras
        >>> model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(3)])
        >>> x = np.arange(10, dtype="float32").reshape(5, 2)
        >>> scores = ShardedPredictor(model).predict(x, batch_size=2)
        >>> np.allclose(scores, model.predict(x, verbose=0), atol=1e-6)
        True
    """

    def __init__(self, model):
        self.model = model
        self._local = None

    def refresh(self):
        """Takes the model's current weights (after training steps)."""
        self._local = distribution_backend.local_model(self.model, self._local)
        return self._local

    @property
    def local(self):
        """The model (or its local copy) this process predicts with."""
        return self._local if self._local is not None else self.refresh()

    def predict(self, x, batch_size: int = 32, verbose=0) -> np.ndarray:
        """Scores of all of `x`, each image predicted by one process."""
        del verbose
        x = np.asarray(x)
        count = distribution_backend.process_count()
        share = math.ceil(len(x) / count)
        start = distribution_backend.process_index() * share
        part = x[start : start + share]
        if len(part) < share:
            filler = x[-1:] if len(x) else np.zeros((1, *x.shape[1:]), x.dtype)
            part = np.concatenate([part, np.repeat(filler, share - len(part), 0)])
        scores = distribution_backend.local_predict(self.local, part, batch_size)
        return distribution_backend.all_gather(scores)[: len(x)]
