"""Which grouped-convolution formulation is fast on this backend and device.

The only place in `keras_parcaps.layers` that asks a backend library about
its devices; `GroupConv2D` itself uses `keras.ops` only.
"""

import keras


def default_implementation() -> str:
    """The fastest `GroupConv2D` formulation measured for this backend.

    PyTorch's native grouped convolution is fast on CPU and GPU. Under
    XLA on CPU (TensorFlow and JAX), a grouped convolution, and above all
    its kernel gradient, falls on a slow path (about 90 s per training step
    for 64 groups on a 50x50x256 input, see `docs/benchmarks.md`), while one
    small convolution per group is fast; on an accelerator, cuDNN and the
    TPU compiler handle grouped convolutions natively.

    Returns:
        `"native"` or `"split"`.
    """
    backend = keras.backend.backend()
    if backend == "torch":
        return "native"
    if backend == "jax":
        import jax

        return "split" if jax.default_backend() == "cpu" else "native"
    if backend == "tensorflow":
        import tensorflow as tf

        return "native" if tf.config.list_logical_devices("GPU") else "split"
    return "split"
