"""Run as a script in a fresh process (device counts are fixed at start-up).

`python -m tests.training.distributed_step` prints JSON: the largest weight
difference between a data-parallel step over two CPU devices and a
single-device step on the same global batch, and the device count.
"""

import json

from tests.training.cpu_devices import split_cpu

split_cpu(2)  # before keras starts JAX or TensorFlow

import keras  # noqa: E402
import numpy as np  # noqa: E402

import keras_parcaps as kp  # noqa: E402
from keras_parcaps.training.distribution_backend import (  # noqa: E402
    data_parallel,
    list_devices,
)


def _model():
    inputs = keras.Input((8, 8, 3))
    x = kp.layers.PrimaryCaps(4, 4, kernel_size=3, strides=2)(inputs)
    x = kp.layers.DRCaps(5, 4)(x)
    model = keras.Model(inputs, kp.layers.CapsuleLength()(x))
    model.compile(optimizer=keras.optimizers.SGD(0.5), loss=kp.losses.MarginLoss())
    return model


def main():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(10, 8, 8, 3)).astype("float32")
    y = keras.utils.to_categorical(np.arange(10) % 5, 5)
    keras.utils.set_random_seed(0)
    single = _model()
    start = [
        w.numpy() if hasattr(w, "numpy") else np.asarray(w)
        for w in single.get_weights()
    ]
    for _ in range(3):
        single.train_on_batch(x, y)
    devices = list_devices()
    with data_parallel(devices):
        parallel = _model()
        parallel.set_weights(start)
        for _ in range(3):
            parallel.train_on_batch(x, y)
    diff = max(
        float(np.max(np.abs(a - b)))
        for a, b in zip(single.get_weights(), parallel.get_weights())
    )
    moved = max(
        float(np.max(np.abs(a - b))) for a, b in zip(start, parallel.get_weights())
    )
    print(json.dumps({"devices": len(devices), "max_diff": diff, "moved": moved}))


if __name__ == "__main__":
    main()
