"""Runs the command line on two CPU devices, in a fresh process.

`python -m tests.training.two_devices_cli ARGS...` runs `keras-parcaps
ARGS...` with two CPU devices on JAX and TensorFlow (`split_cpu`), one on
torch. (Training on them is checked by test_multiprocess.py, whose reference
run is data-parallel over two CPU devices, and by distributed_step.py.)
"""

import sys

from tests.training.cpu_devices import split_cpu


def main(argv):
    split_cpu(2)
    from keras_parcaps.cli import main as cli_main

    return cli_main(argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
