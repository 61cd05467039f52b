import json
import os
import subprocess
import sys

import keras
import pytest

from keras_parcaps.training.distribution_backend import (
    data_parallel,
    replica_batch_multiple,
)

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.mark.skipif(
    keras.backend.backend() == "torch",
    reason="Keras 3 offers data parallelism on JAX and TensorFlow only",
)
def test_data_parallel_step_equals_single_device_step():
    env = {
        **os.environ,
        "XLA_FLAGS": "--xla_force_host_platform_device_count=2",
        "TF_CPP_MIN_LOG_LEVEL": "3",
    }
    result = subprocess.run(
        [sys.executable, "-m", "tests.training.distributed_step"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["devices"] == 2
    assert out["moved"] > 1e-3  # the steps really trained
    assert out["max_diff"] < 1e-5


@pytest.mark.skipif(keras.backend.backend() != "torch", reason="torch only")
def test_torch_refuses_several_devices_clearly():
    with pytest.raises(NotImplementedError, match="no built-in data parallelism"):
        with data_parallel(["cpu:0", "cpu:1"]):
            pass
    with data_parallel(["cpu"]) as devices:
        assert devices == ["cpu"]


@pytest.mark.parametrize(
    "classes, devices, expected", [(15, 1, 1), (15, 2, 2), (15, 3, 1), (10, 4, 2)]
)
def test_replica_batch_multiple(classes, devices, expected):
    k = replica_batch_multiple(classes, devices)
    assert k == expected
    assert (k * classes) % devices == 0


def test_empty_devices():
    with pytest.raises(ValueError, match="devices"):
        with data_parallel([]):
            pass
