"""Runs the command line on two CPU devices, in a fresh process.

Device counts are fixed at start-up: two logical TensorFlow CPUs (set before
TensorFlow initializes) or two XLA host devices on JAX; torch gets none.

`python -m tests.training.two_devices_cli ARGS...` runs `keras-parcaps
ARGS...` on the two devices. (Training on them is checked by
test_multiprocess.py, whose reference run is data-parallel over two CPU
devices, and by distributed_step.py.)
"""

import os
import sys

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=2")

import keras  # noqa: E402


def two_cpu_devices():
    """Splits TensorFlow's CPU in two logical devices (before any TF op)."""
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * 2
        )


def main(argv):
    two_cpu_devices()
    from keras_parcaps.cli import main as cli_main

    return cli_main(argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
