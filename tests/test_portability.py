"""A `.keras` file saved on this backend loads on the next one, same outputs.

`make test` runs this file once per backend, so the cycle TensorFlow -> JAX
-> PyTorch -> TensorFlow has every backend save and every backend load
(one subprocess per run, not two: starting a backend and building every
case there is most of this test's time).
"""

import json
import os
import subprocess
import sys

import keras
import pytest

from tests import portability_cases

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NEXT_BACKEND = {"tensorflow": "jax", "jax": "torch", "torch": "tensorflow"}[
    keras.backend.backend()
]


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    directory = tmp_path_factory.mktemp("portable")
    portability_cases.save_all(str(directory))
    return directory


def test_saved_models_load_on_the_next_backend(saved):
    backend = NEXT_BACKEND
    env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "3"}
    result = subprocess.run(
        [sys.executable, "-m", "tests.portability_cases", str(saved)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    errors = json.loads(result.stdout.strip().splitlines()[-1])
    assert set(errors) == set(portability_cases.CASES)
    for name, error in errors.items():
        assert error < 1e-4, f"{name}: {keras.backend.backend()} -> {backend}: {error}"
