"""`averaged_weights`: the optimizer's moving average of the weights, for a block."""

import contextlib

import keras

from keras_parcaps.models.compiling import unshare_variables


def averaging_optimizer(optimizer):
    """The optimizer that keeps the moving average of the weights, or `None`.

    `optimizer` itself with `use_ema=True`; for a `LossScaleOptimizer`
    (mixed_float16), its inner optimizer, which is where the average lives.
    """
    optimizer = getattr(optimizer, "inner_optimizer", optimizer)
    return optimizer if getattr(optimizer, "use_ema", False) else None


@contextlib.contextmanager
def averaged_weights(model: keras.Model):
    """Puts the moving average of the weights into `model` for a `with` block.

    With an optimizer that keeps a moving average of the weights
    (`use_ema=True`, as `kp.models.compile_model`'s `"auto"` optimizer), the
    block sees the averaged weights, which `fit` itself writes into the
    model only when it ends; the training weights come back after the block,
    so training can go on where it was. This is what
    `keras.callbacks.SwapEMAWeights` does around Keras's validation, for code
    that scores a model in the middle of training (a callback, a benchmark
    that predicts every few hundred iterations). Without such an optimizer,
    or before its first step, the block sees the weights as they are.

    Args:
        model: A compiled Keras model.

    Yields:
        `model`.

    Example:

        >>> import keras, numpy as np
        >>> model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)])
        >>> model.compile(keras.optimizers.SGD(0.1, use_ema=True), "mse")
        >>> x = np.ones((1, 1), "float32")
        >>> _ = model.train_on_batch(x, x)
        >>> _ = model.train_on_batch(x, x)
        >>> training = model.get_weights()
        >>> with averaged_weights(model):
        ...     averaged = model.get_weights()
        >>> bool(np.allclose(model.get_weights()[0], training[0]))
        True
        >>> bool(np.allclose(averaged[0], training[0]))
        False
    """
    optimizer = averaging_optimizer(getattr(model, "optimizer", None))
    if optimizer is None or not optimizer.built:
        yield model
        return
    variables = model.trainable_variables
    training = [keras.ops.convert_to_numpy(v) for v in variables]
    optimizer.finalize_variable_values(variables)
    # Any optimizer's, not only `AveragingNadam`'s.
    unshare_variables(variables)
    try:
        yield model
    finally:
        for variable, value in zip(variables, training, strict=True):
            variable.assign(value)
