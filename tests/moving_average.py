"""The numpy reference for Keras's moving average of the weights (`use_ema`)."""

import numpy as np

from keras_parcaps.models.compiling import EMA_MOMENTUM


def numpy_moving_average(steps, momentum=EMA_MOMENTUM):
    """Keras's `use_ema` average of the training weights after each step.

    The average starts at the weights after the first step, then
    `a_t = m a_{t-1} + (1 - m) w_t`.

    Args:
        steps: One list of numpy weights per step, in order.
        momentum: `m`. Default: the builders' (`EMA_MOMENTUM`).

    Returns:
        The averaged weights (float64), one per weight.
    """
    average = [np.asarray(w, "float64") for w in steps[0]]
    for step in steps[1:]:
        average = [momentum * a + (1 - momentum) * w for a, w in zip(average, step)]
    return average
