"""Run as a script in a fresh process (device counts are fixed at start-up).

Two CPU devices: two logical TensorFlow CPUs (set before TensorFlow
initializes) or two XLA host devices on JAX; torch gets none.

`python -m tests.training.mirrored_step` trains a tiny parallel DR-CapsNet
for a few steps inside `kp.training.data_parallel()` (a
`tf.distribute.MirroredStrategy` on TensorFlow) and prints JSON: the device
count, the strategy's replica count, the losses and how far the weights
moved.

`python -m tests.training.mirrored_step cli ARGS...` runs `keras-parcaps
ARGS...` on the two devices instead.
"""

import json
import os
import sys

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=2")

import keras  # noqa: E402
import numpy as np  # noqa: E402


def two_cpu_devices():
    """Splits TensorFlow's CPU in two logical devices (before any TF op)."""
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * 2
        )


def train_parallel_dr(steps=3):
    import keras_parcaps as kp

    rng = np.random.default_rng(0)
    # The smallest input build_parallel_dr allows; a global batch of 6.
    x = rng.uniform(size=(6, 16, 16, 3)).astype("float32")
    y = keras.utils.to_categorical(np.arange(6) % 3, 3)
    with kp.training.data_parallel() as devices:
        model = kp.models.build_parallel_dr(
            input_shape=(16, 16, 3), num_classes=3, n_branches=2, capsule_layers=2
        )
        replicas = getattr(model.distribute_strategy, "num_replicas_in_sync", None)
        start = [keras.ops.convert_to_numpy(w) for w in model.trainable_weights]
        losses = [float(model.train_on_batch(x, y)[0]) for _ in range(steps)]
    end = [keras.ops.convert_to_numpy(w) for w in model.trainable_weights]
    moved = max(float(np.max(np.abs(a - b))) for a, b in zip(start, end))
    return {
        "devices": len(devices),
        "replicas": replicas,
        "losses": losses,
        "moved": moved,
    }


def main(argv):
    two_cpu_devices()
    if argv[:1] == ["cli"]:
        from keras_parcaps.cli import main as cli_main

        return cli_main(argv[1:])
    print(json.dumps(train_parallel_dr()))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
