"""A training subprocess killed mid-run and restarted loses only that epoch.

Once (PyTorch): what is tested is the command line's run folder (the log
row written after the epoch's backup and checkpoint, the checkpoints kept,
the resumed run's files), which does not depend on the backend. Every
backend's own kill and resume, optimizer state included, is tested by
tests/training/test_multiprocess.py, and in-process resuming by
tests/training/test_trainer.py.
"""

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import keras

import keras_parcaps  # noqa: F401  (registers the custom objects)
from tests.markers import once

REPO = Path(__file__).resolve().parents[2]
EPOCHS, STEPS = 3, 60


def _command(out_dir):
    return [
        sys.executable,
        "-m",
        "keras_parcaps.cli",
        "train",
        "--data",
        "synthetic",
        "--image-size",
        "24",
        "--model",
        "tests.training.tiny_models:tiny_capsnet",
        "--epochs",
        str(EPOCHS),
        "--steps",
        str(STEPS),
        "--no-agr",
        "--verbose",
        "0",
        "--out",
        str(out_dir),
    ]


def _epochs_logged(out_dir):
    if not (out_dir / "log.csv").is_file():
        return []
    with open(out_dir / "log.csv") as file:
        return [int(row["epoch"]) for row in csv.DictReader(file)]


@once("the run folder's files after a kill; every backend resumes in test_multiprocess")
def test_killed_run_resumes(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    process = subprocess.Popen(
        _command(tmp_path),
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.time() + 240
    # The log row is written after the epoch's backup and checkpoint, so
    # killing right then lands early in the second epoch.
    while not _epochs_logged(tmp_path) and process.poll() is None:
        assert time.time() < deadline, "no epoch finished within 240 s"
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL, process.stderr.read()[-2000:]
    assert _epochs_logged(tmp_path) == [0]
    assert len(list((tmp_path / "checkpoints").iterdir())) == 1

    finished = subprocess.run(
        _command(tmp_path),
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert finished.returncode == 0, finished.stderr[-2000:]
    assert _epochs_logged(tmp_path) == list(range(EPOCHS))
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == [
        f"epoch_{e:03d}.weights.h5" for e in range(1, EPOCHS + 1)
    ]
    model = keras.saving.load_model(tmp_path / "model.keras")
    assert int(model.optimizer.iterations) == EPOCHS * STEPS
    assert (tmp_path / "report.json").is_file()
