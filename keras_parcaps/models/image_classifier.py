"""`ImageClassifier`: a functional model whose `fit` ends with exact statistics."""

import inspect
import math
import warnings

import keras

from keras_parcaps._checks import check_positive_int
from keras_parcaps.callbacks.precise_batch_norm import (
    PreciseBatchNorm,
    batch_norm_layers,
)

_FIT_SIGNATURE = inspect.signature(keras.Model.fit)


@keras.saving.register_keras_serializable(package="keras_parcaps")
class ImageClassifier(keras.Model):
    """A functional model whose `fit` ends with exact BatchNormalization statistics.

    What every `kp.models` builder returns. It is a `keras.Model` built from
    inputs and outputs like any functional model, with one difference: `fit`
    adds a `kp.callbacks.PreciseBatchNorm` on its own training data, so
    that when `fit` ends the moving statistics of every BatchNormalization
    layer are averages over `precise_batch_norm` training batches, gathered
    with the weights `fit` leaves in the model.

    Why: the builders' optimizer keeps a moving average of the weights and
    `fit` ends by writing that average into the model (Keras's `use_ema`),
    but the moving statistics were gathered with the training weights. On
    real cells at the paper's constant rate plain `predict` after `fit`
    scored 10-34 points below the same weights with exact statistics on two
    of three folds, for the parallel DR network and for a plain CNN alike
    (docs/concepts.md). The step costs
    one forward pass over at most `precise_batch_norm` batches; the weights
    are not touched.

    `fit` adds no such callback when its `callbacks` already hold one or
    when `precise_batch_norm=0`; it warns when its data cannot be read twice
    (a generator) and leaves the moving statistics as they are. A model
    without BatchNormalization gets no callback.

    Args:
        inputs: The model's input tensors, as for a functional `keras.Model`.
        outputs: The model's output tensors.
        name: The model's name.
        precise_batch_norm: Training batches the statistics are averaged
            over at the end of `fit`; 0 keeps the moving averages. Default
            32.
        **kwargs: Other `keras.Model` keyword arguments.

    Example:

        >>> import numpy as np
        >>> inputs = keras.Input((2,))
        >>> x = keras.layers.BatchNormalization()(inputs)
        >>> model = ImageClassifier(inputs, keras.layers.Dense(1)(x))
        >>> model.compile(optimizer="sgd", loss="mse")
        >>> x = np.random.default_rng(0).normal(3.0, 2.0, (64, 2))
        >>> _ = model.fit(x, x[:, :1], epochs=2, verbose=0)
        >>> norm = model.layers[1]  # exact after 4 steps, not 0.99 ** 4 of it
        >>> bool(np.allclose(keras.ops.convert_to_numpy(norm.moving_mean),
        ...                  x.mean(0), atol=1e-5))
        True
    """

    # Functional's own positional arguments, so that Keras revives it from
    # its config as a functional model.
    def __init__(self, inputs, outputs, name=None, *, precise_batch_norm=32, **kwargs):
        super().__init__(inputs, outputs, name=name, **kwargs)
        check_positive_int("precise_batch_norm", precise_batch_norm, minimum=0)
        self.precise_batch_norm = precise_batch_norm

    def fit(self, *args, **kwargs):
        arguments = _FIT_SIGNATURE.bind(self, *args, **kwargs).arguments
        del arguments["self"]
        callbacks = arguments.get("callbacks")
        if isinstance(callbacks, keras.callbacks.CallbackList):
            callbacks = callbacks.callbacks
        callbacks = list(callbacks or [])
        callback = self._precise_batch_norm_callback(arguments, callbacks)
        if callback is not None:
            arguments["callbacks"] = [*callbacks, callback]
        return super().fit(**arguments)

    def _precise_batch_norm_callback(self, arguments, callbacks):
        if not self.precise_batch_norm or any(
            isinstance(c, PreciseBatchNorm) for c in callbacks
        ):
            return None
        x = arguments.get("x")
        if x is None or not batch_norm_layers(self):
            return None
        if not PreciseBatchNorm.can_read(x):
            warnings.warn(
                f"{type(self).__name__}.fit cannot read its training data "
                f"again ({type(x).__name__}), so the BatchNormalization "
                "statistics stay the moving averages. Pass a "
                "keras.utils.PyDataset, a tf.data.Dataset or arrays, or call "
                "kp.training.recalibrate_batch_norm after fit.",
                stacklevel=3,
            )
            return None
        split = arguments.get("validation_split") or 0.0
        if split and hasattr(x, "shape"):
            # The rows `fit` trains on; it validates on the last ones.
            x = x[: int(math.ceil(int(x.shape[0]) * (1.0 - split)))]
        return PreciseBatchNorm(
            x,
            batch_size=arguments.get("batch_size"),
            num_batches=self.precise_batch_norm,
        )

    def get_config(self):
        config = super().get_config()
        config["precise_batch_norm"] = self.precise_batch_norm
        return config
