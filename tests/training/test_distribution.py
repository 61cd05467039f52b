import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
from PIL import Image

from keras_parcaps.data.sampling import OnePerClassBatches
from keras_parcaps.training.distribution_backend import (
    data_parallel,
    list_devices,
    replica_batch_multiple,
)
from tests.markers import on_backend

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BACKEND = keras.backend.backend()


def _run_cli_on_two_devices(*args):
    result = subprocess.run(
        [sys.executable, "-m", "tests.training.two_devices_cli", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


@pytest.mark.skipif(
    keras.backend.backend() == "torch",
    reason="one process holds one torch device (several: torchrun, see "
    "test_multiprocess.py)",
)
def test_data_parallel_step_equals_single_device_step():
    result = subprocess.run(
        [sys.executable, "-m", "tests.training.distributed_step"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["devices"] == 2
    assert out["moved"] > 1e-3  # the steps really trained
    assert out["max_diff"] < 1e-5


@on_backend("torch", "torchrun's one device per process")
def test_torch_sends_several_devices_to_torchrun():
    with pytest.raises(NotImplementedError, match="one device per process.*torchrun"):
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


class _Labels:
    """The part of an `ImageSet` that `OnePerClassBatches` samples from."""

    class_names = ["a", "b", "c"]
    num_classes = 3
    labels = np.array([0, 0, 1, 1, 1, 2, 2, 2, 2, 2])


def test_images_per_class_batches():
    data = _Labels()
    one = OnePerClassBatches(data, steps_per_epoch=5)
    two = OnePerClassBatches(data, steps_per_epoch=5, images_per_class=2)
    for step in range(5):
        picks = two.batch_indices(step)
        assert len(picks) == 6 and len(picks) % 2 == 0
        assert np.bincount(data.labels[picks], minlength=3).tolist() == [2, 2, 2]
    # Each class walks its own images: class "c" (5 images) repeats none
    # within 2 batches of 2 draws, class "a" (2 images) shows both per batch.
    c_draws = np.concatenate([two.batch_indices(s) for s in range(2)])
    c_draws = c_draws[data.labels[c_draws] == 2]
    assert len(set(c_draws.tolist())) == 4
    a_draws = two.batch_indices(3)[data.labels[two.batch_indices(3)] == 0]
    assert sorted(a_draws.tolist()) == [0, 1]
    # images_per_class=1 is the paper's sampling, unchanged.
    assert len(one.batch_indices(0)) == 3
    with pytest.raises(ValueError, match="images_per_class"):
        OnePerClassBatches(data, images_per_class=0)


def test_list_devices():
    devices = list_devices()
    assert devices and all(isinstance(d, str) for d in devices)


def test_cli_distribute_splits_batches_evenly(tmp_path):
    """`keras-parcaps train --distribute` on two devices with three classes.

    One image per class would give batches of 3, which two devices cannot
    share (JAX refuses to shard them): `--distribute` takes 2 per class.
    """
    rng = np.random.default_rng(0)
    for code in ("a", "b", "c"):
        (tmp_path / code).mkdir()
        for i in range(5):
            pixels = rng.integers(0, 255, size=(24, 24, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(tmp_path / code / f"{i}.png")
    out = tmp_path / "run"
    _run_cli_on_two_devices(
        "train",
        "--data",
        str(tmp_path),
        "--image-size",
        "24",
        "--model",
        "tests.training.tiny_models:tiny_capsnet",
        "--epochs",
        "1",
        "--steps",
        "2",
        "--no-agr",
        "--verbose",
        "0",
        "--distribute",
        "--out",
        str(out),
    )
    run = json.loads((out / "run.json").read_text())["fingerprint"]
    devices = 1 if BACKEND == "torch" else 2
    assert run["images_per_class"] == replica_batch_multiple(3, devices)
    assert (run["images_per_class"] * 3) % devices == 0
    assert (out / "model.keras").is_file()
    assert json.loads((out / "report.json").read_text())["n"] == 3
