"""Several CPU devices in one process, for the data-parallel tests."""

import os


def split_cpu(count: int) -> None:
    """Gives this process `count` CPU devices on JAX and TensorFlow.

    Call it before importing keras: JAX reads its host device count from
    `XLA_FLAGS` when it starts, and TensorFlow's logical devices must be set
    before its first op. PyTorch gets none (one device per process; several
    processes: torchrun, see test_multiprocess.py).

    Args:
        count: Number of devices.
    """
    # First: XLA stops reading `XLA_FLAGS` at a word that is not a flag.
    flag = f"--xla_force_host_platform_device_count={count}"
    os.environ["XLA_FLAGS"] = f"{flag} {os.environ.get('XLA_FLAGS', '')}".strip()
    import keras

    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        (cpu,) = tf.config.list_physical_devices("CPU")
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * count
        )
