"""Data-parallel training on Keras's own engines (the one backend-aware module).

JAX: `keras.distribution.DataParallel`. TensorFlow:
`tf.distribute.MirroredStrategy`. PyTorch: Keras 3 offers no built-in
data parallelism for its torch backend, so more than one device is refused
with an explanation (wrap the training loop in
`torch.nn.parallel.DistributedDataParallel` yourself, as in the Keras guide
"Multi-GPU distributed training with PyTorch").
"""

import contextlib
import math

import keras


def list_devices() -> list[str]:
    """The devices data parallelism would use: accelerators, else CPUs."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        gpus = tf.config.list_logical_devices("GPU")
        return [d.name for d in (gpus or tf.config.list_logical_devices("CPU"))]
    if backend == "torch":
        import torch

        # `keras.distribution` does not exist for the torch backend.
        return [f"cuda:{i}" for i in range(torch.cuda.device_count())] or ["cpu"]
    return list(keras.distribution.list_devices())


def replica_batch_multiple(num_classes: int, n_devices: int) -> int:
    """Images per class so that a one-per-class batch splits evenly.

    A batch of `k * num_classes` images, `k` of each class, splits into
    `n_devices` equal shards when `k = n_devices / gcd(num_classes,
    n_devices)`: every class keeps the same share of every global batch.

    Example:

        >>> replica_batch_multiple(num_classes=15, n_devices=2)  # 30-image batches
        2
    """
    return n_devices // math.gcd(num_classes, n_devices)


@contextlib.contextmanager
def data_parallel(devices=None):
    """Context in which models are built and trained data-parallel.

    Build, compile and fit the model inside the context. Each global batch is
    split across `devices` and the gradients are averaged, so a step equals a
    single-device step on the same global batch. With one-per-class batches,
    use `replica_batch_multiple` images per class so the split is even.

    Args:
        devices: Device names (`keras.distribution.list_devices()` on JAX,
            TensorFlow device names such as `"/cpu:0"` on TensorFlow).
            Default: every accelerator, or every CPU device if none.

    Example:

        >>> import numpy as np
        >>> with data_parallel() as devices:
        ...     model = keras.Sequential(
        ...         [keras.Input((3,)), keras.layers.Dense(2, activation="softmax")]
        ...     )
        ...     model.compile(optimizer="sgd", loss="categorical_crossentropy")
        ...     history = model.fit(
        ...         np.ones((4, 3), "float32"), np.eye(2)[[0, 1, 0, 1]],
        ...         batch_size=4, verbose=0,
        ...     )
        >>> len(history.history["loss"]), len(devices) >= 1
        (1, True)
        >>> # The paper's network on every GPU of a machine:
        >>> with data_parallel():  # doctest: +SKIP
        ...     model = kp.models.build_parallel_dr(n_branches=12)
        ...     model.fit(batches, epochs=700)
    """
    backend = keras.backend.backend()
    devices = list(devices) if devices is not None else list_devices()
    if not devices:
        raise ValueError("`devices` is empty: data parallelism needs a device.")
    if backend == "jax":
        previous = keras.distribution.distribution()
        keras.distribution.set_distribution(
            keras.distribution.DataParallel(devices=devices)
        )
        try:
            yield devices
        finally:
            keras.distribution.set_distribution(previous)
    elif backend == "tensorflow":
        import tensorflow as tf

        strategy = tf.distribute.MirroredStrategy(devices)
        with strategy.scope():
            yield devices
    elif len(devices) == 1:
        yield devices
    else:
        raise NotImplementedError(
            f"Keras 3 has no built-in data parallelism for the {backend!r} "
            f"backend (asked for devices={devices}). Use the JAX or TensorFlow "
            "backend, or wrap training in torch DistributedDataParallel."
        )
