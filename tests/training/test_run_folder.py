"""Run folders: lock, fingerprint, atomic files, resume from a good checkpoint."""

import csv
import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest

from keras_parcaps.data import synthetic_cells
from keras_parcaps.training import RunFolder, saving, train
from tests.training.tiny_models import tiny_capsnet


def _files(folder):
    return {
        str(path.relative_to(folder)): path.read_bytes()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


def _log_epochs(folder):
    with open(folder / "log.csv") as file:
        return [int(row["epoch"]) for row in csv.DictReader(file)]


@pytest.fixture(scope="module")
def data():
    return synthetic_cells(counts=3, classes=["NGS", "LYT", "MON"], image_size=24)


def test_lock_refuses_a_live_holder_and_takes_over_a_dead_one(tmp_path):
    run = RunFolder(tmp_path / "run")
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (tmp_path / "run").mkdir()
        run.lock_path.write_text(
            json.dumps({"pid": holder.pid, "host": os.uname().nodename})
        )
        with pytest.raises(FileExistsError, match=f"in use by process {holder.pid}"):
            run.lock()
    finally:
        holder.kill()
        holder.wait()
    # The holder is gone: its lock is stale and taken over.
    with run:
        assert json.loads(run.lock_path.read_text())["pid"] == os.getpid()
        with RunFolder(tmp_path / "run"):  # The same process nests.
            pass
        assert run.lock_path.is_file()
    assert not run.lock_path.exists()


def test_lock_removes_a_folder_it_created_empty(tmp_path):
    with RunFolder(tmp_path / "a" / "b"):
        assert (tmp_path / "a" / "b" / "run.lock").is_file()
    assert not (tmp_path / "a" / "b").exists()


def test_fingerprint_mismatch_names_fields_and_changes_nothing(tmp_path):
    with RunFolder(tmp_path) as run:
        run.start({"classes": ["a", "b"], "seed": 0, "learning_rate": 0.001})
    before = _files(tmp_path)
    with RunFolder(tmp_path) as run, pytest.raises(ValueError) as error:
        run.start({"classes": ["a", "c"], "seed": 0, "learning_rate": 0.01})
    message = str(error.value)
    assert "\n" not in message
    assert 'classes ["a", "b"] there, ["a", "c"] now' in message
    assert "learning_rate 0.001 there, 0.01 now" in message
    assert "seed" not in message
    assert _files(tmp_path) == before
    with RunFolder(tmp_path) as run:
        run.start({"classes": ["a", "c"], "seed": 0}, overwrite=True)
        assert run.info()["fingerprint"] == {"classes": ["a", "c"], "seed": 0}


def test_overwrite_refuses_a_folder_that_is_not_a_run(tmp_path):
    (tmp_path / "thesis.tex").write_text("years of work")
    with RunFolder(tmp_path) as run, pytest.raises(ValueError, match="no run"):
        run.start({"seed": 0}, overwrite=True)
    assert (tmp_path / "thesis.tex").read_text() == "years of work"


def test_atomic_save_keeps_the_old_file_when_the_save_dies(tmp_path, monkeypatch):
    model = tiny_capsnet((24, 24, 3), 3)
    path = tmp_path / "epoch_001.weights.h5"
    saving.save_weights(model, path)
    good = path.read_bytes()

    def dies_half_way(filepath, **kwargs):
        with open(filepath, "wb") as file:
            file.write(good[: len(good) // 2])
        raise KeyboardInterrupt  # A kill in the middle of the write.

    monkeypatch.setattr(model, "save_weights", dies_half_way)
    with pytest.raises(KeyboardInterrupt):
        saving.save_weights(model, path)
    assert path.read_bytes() == good
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]


def test_model_file_metadata_and_junk(tmp_path):
    model = tiny_capsnet((24, 24, 3), 3)
    saving.save_model(model, tmp_path / "model.keras", ["a", "b", "c"], (24, 24))
    assert saving.read_metadata(tmp_path / "model.keras") == {
        "class_names": ["a", "b", "c"],
        "image_size": [24, 24],
    }
    loaded = keras.saving.load_model(tmp_path / "model.keras")
    x = np.random.default_rng(0).random((2, 24, 24, 3)).astype("float32")
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(loaded(x)),
        keras.ops.convert_to_numpy(model(x)),
        atol=1e-6,
    )
    model.save(tmp_path / "plain.keras")
    assert saving.read_metadata(tmp_path / "plain.keras") is None
    junk = tmp_path / "junk.keras"
    junk.write_bytes((tmp_path / "model.keras").read_bytes()[:300])
    with pytest.raises(ValueError, match="not a readable .keras file"):
        saving.read_metadata(junk)


def test_resume_falls_back_to_the_newest_checkpoint_that_loads(tmp_path, data):
    model = tiny_capsnet((24, 24, 3), 3)
    train(model, data, tmp_path, epochs=2, steps_per_epoch=2, verbose=0)
    latest = tmp_path / "checkpoints" / "epoch_002.weights.h5"
    latest.write_bytes(latest.read_bytes()[:1000])  # A cut-short file.
    again = tiny_capsnet((24, 24, 3), 3)
    with pytest.warns(
        UserWarning,
        match="epoch_002.weights.h5 .*resuming from "
        ".*epoch_001.weights.h5 \\(epoch 1\\)",
    ):
        history = train(again, data, tmp_path, epochs=3, steps_per_epoch=2, verbose=0)
    assert len(history.history["loss"]) == 2  # epochs 2 and 3 again
    assert int(again.optimizer.iterations) == 6
    assert _log_epochs(tmp_path) == [0, 1, 2]  # the log has one row per epoch
    assert saving.read_metadata(tmp_path / "model.keras")["class_names"] == [
        "NGS",
        "LYT",
        "MON",
    ]
    # Nothing loads: refused, not silently restarted.
    for _, path in RunFolder(tmp_path).checkpoints():
        path.write_bytes(b"")
    with pytest.raises(ValueError, match="No checkpoint .* can be read"):
        train(
            tiny_capsnet((24, 24, 3), 3),
            data,
            tmp_path,
            epochs=4,
            steps_per_epoch=2,
            verbose=0,
        )


def test_non_finite_loss_stops_naming_step_and_files(tmp_path):
    from keras import ops
    from PIL import Image

    from keras_parcaps.data import load_class_folders

    for name in ("a", "b"):
        (tmp_path / "data" / name).mkdir(parents=True)
        Image.new("RGB", (24, 24)).save(tmp_path / "data" / name / f"{name}1.png")
    data = load_class_folders(tmp_path / "data", image_size=24)
    model = keras.Sequential(
        [
            keras.Input((24, 24, 3)),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(2, activation="softmax"),
        ]
    )
    model.compile(loss=lambda y_true, y_pred: ops.log(y_pred - 2.0))  # NaN
    with pytest.raises(FloatingPointError) as error:
        train(model, data, tmp_path / "run", epochs=2, steps_per_epoch=2, verbose=0)
    message = str(error.value)
    assert "loss is nan at epoch 1, step 1" in message
    assert "a1.png" in message and "b1.png" in message
    assert not (tmp_path / "run" / "checkpoints").exists()
    assert not (tmp_path / "run" / "model.keras").exists()
