import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import keras
import numpy as np
import pytest

keras_tuner = pytest.importorskip("keras_tuner")

import keras_parcaps as kp  # noqa: E402
from keras_parcaps.tuning.hypermodel import ParallelCapsHyperModel  # noqa: E402
from keras_parcaps.tuning.report import (  # noqa: E402
    branch_curves,
    plot_branch_search,
    trials_table,
    write_trials_csv,
)
from keras_parcaps.tuning.search import make_tuner  # noqa: E402
from tests.markers import once  # noqa: E402

BACKEND = keras.backend.backend()
ROOT = Path(__file__).resolve().parents[2]
IMAGE = (16, 16, 3)


def _data():
    rng = np.random.default_rng(0)
    x = rng.random((6, *IMAGE), dtype=np.float32)
    return x, np.eye(3, dtype=np.float32)[np.arange(6) % 3]


def _hypermodel():
    return ParallelCapsHyperModel(
        "dr",
        IMAGE,
        num_classes=3,
        branches=(1, 3),
        capsule_layers=(2, 3),
        routing_iterations=(1, 2),
        jit_compile=False,
    )


def _search(tuner):
    x, y = _data()
    tuner.search(x, y, validation_data=(x, y), epochs=1, batch_size=6, verbose=0)


@once(
    "KerasTuner's resume and best-trial protocol; the hypermodel's models "
    "train on every backend in test_hypermodel.py"
)
def test_search_resumes_and_the_best_trial_rebuilds(tmp_path):
    first = make_tuner(_hypermodel(), tmp_path, "dr", max_trials=1, seed=3)
    _search(first)
    assert [t.status for t in first.oracle.trials.values()] == ["COMPLETED"]
    trial_0 = tmp_path / "dr" / "trial_0"
    checkpoint = next(trial_0.glob("checkpoint*"))
    stamp = checkpoint.stat().st_mtime_ns
    state_0 = json.loads((trial_0 / "trial.json").read_text())

    # A new process would do the same: a new tuner on the same folder.
    again = make_tuner(_hypermodel(), tmp_path, "dr", max_trials=3, seed=3)
    _search(again)
    trials = again.oracle.trials
    assert sorted(trials) == ["0", "1", "2"]
    assert all(t.status == "COMPLETED" for t in trials.values())
    values = [tuple(sorted(t.hyperparameters.values.items())) for t in trials.values()]
    assert len(set(values)) == 3
    # The first trial was not run again.
    assert checkpoint.stat().st_mtime_ns == stamp
    assert trials["0"].score == state_0["score"]
    assert trials["0"].hyperparameters.values == state_0["hyperparameters"]["values"]

    best_hp = again.get_best_hyperparameters(1)[0]
    best = again.oracle.get_best_trials(1)[0]
    assert best.score == max(t.score for t in trials.values())
    assert best.hyperparameters.values == best_hp.values
    hypermodel = _hypermodel()
    rebuilt = hypermodel.build(best_hp)
    name, kwargs = hypermodel.builder_call(best_hp)
    direct = getattr(kp.models, name)(**kwargs)
    assert rebuilt.count_params() == direct.count_params()
    assert rebuilt.get_config() == direct.get_config()
    # The tuner's own copy of the best model (weights of the best epoch).
    assert again.get_best_models(1)[0].count_params() == direct.count_params()

    rows = trials_table(again)
    assert rows == trials_table(tmp_path / "dr")
    assert [r["trial_id"] for r in rows] == ["0", "1", "2"]
    for row, trial in zip(rows, (trials[i] for i in "012"), strict=True):
        assert row["val_wacc"] == pytest.approx(trial.score)
        assert row["branches"] == trial.hyperparameters.values["branches"]
    path = write_trials_csv(rows, tmp_path / "trials.csv")
    with path.open() as file:
        read = list(csv.DictReader(file))
    assert [r["trial_id"] for r in read] == ["0", "1", "2"]
    assert float(read[0]["val_wacc"]) == pytest.approx(rows[0]["val_wacc"])
    image = plot_branch_search(rows, tmp_path / "branches.png")
    assert image.stat().st_size > 1000


@once("the tuners are KerasTuner's")
@pytest.mark.parametrize("tuner", ["bayesian", "hyperband"])
def test_other_tuners_optimize_val_wacc(tmp_path, tuner):
    options = {"num_initial_points": 1} if tuner == "bayesian" else {"factor": 2}
    search = make_tuner(
        _hypermodel(),
        tmp_path,
        tuner,
        tuner=tuner,
        max_trials=2,
        max_epochs=2,
        seed=1,
        **options,
    )
    _search(search)
    trials = list(search.oracle.trials.values())
    assert len(trials) >= 2
    assert all(t.status == "COMPLETED" for t in trials)
    assert all(t.metrics.exists("val_wacc") for t in trials)
    assert search.oracle.objective.name == "val_wacc"


def test_branch_curves_take_the_best_trial_per_branch_count():
    rows = [
        {
            "kind": "dr",
            "capsule_layers": 3,
            "parallel": True,
            "branches": 2,
            "val_wacc": 0.4,
        },
        {
            "kind": "dr",
            "capsule_layers": 3,
            "parallel": True,
            "branches": 2,
            "val_wacc": 0.6,
        },
        {
            "kind": "dr",
            "capsule_layers": 3,
            "parallel": True,
            "branches": 1,
            "val_wacc": 0.5,
        },
        {
            "kind": "em",
            "capsule_layers": 2,
            "parallel": True,
            "branches": 4,
            "val_wacc": 0.3,
        },
        {
            "kind": "em",
            "capsule_layers": 2,
            "parallel": True,
            "branches": 5,
            "val_wacc": None,
        },
    ]
    assert branch_curves(rows) == {
        ("dr", 3, True): [(1, 0.5), (2, 0.6)],
        ("em", 2, True): [(4, 0.3)],
    }


def test_trials_table_needs_trials(tmp_path):
    with pytest.raises(ValueError, match="No KerasTuner trials"):
        trials_table(tmp_path)


def _example(out, *extra):
    return [
        sys.executable,
        str(ROOT / "examples" / "tune_branches.py"),
        "--image-size",
        "16",
        "--epochs",
        "1",
        "--steps",
        "2",
        "--branches",
        "1",
        "2",
        "--capsule-sizes",
        "9",
        "16",
        "--capsule-layers",
        "2",
        "3",
        "--routing",
        "1",
        "1",
        "--verbose",
        "0",
        "--out",
        str(out),
        *extra,
    ]


def _completed(project):
    done = {}
    for path in project.glob("trial_*/trial.json"):
        try:
            state = json.loads(path.read_text())
        except ValueError:  # being written
            continue
        if state["status"] == "COMPLETED":
            done[state["trial_id"]] = state
    return done


@once(
    "a subprocess run of the example; the resume logic is KerasTuner's, tested "
    "in-process on every backend above"
)
def test_example_killed_after_a_trial_resumes(tmp_path):
    env = {**os.environ, "KERAS_BACKEND": "torch"}
    project = tmp_path / "dr"
    process = subprocess.Popen(
        _example(tmp_path, "--max-trials", "3"),
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.time() + 240
        while not _completed(project) and time.time() < deadline:
            assert process.poll() is None, "the search ended before it was killed"
            time.sleep(0.5)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    first = _completed(project)
    assert first, "no trial finished in time"
    stamps = {
        i: next((project / f"trial_{i}").glob("checkpoint*")).stat().st_mtime_ns
        for i in first
    }

    result = subprocess.run(
        _example(tmp_path, "--max-trials", "3"),
        env=env,
        capture_output=True,
        text=True,
        timeout=400,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    done = _completed(project)
    assert sorted(done) == ["0", "1", "2"]
    for i, state in first.items():
        assert done[i]["score"] == state["score"]
        checkpoint = next((project / f"trial_{i}").glob("checkpoint*"))
        assert checkpoint.stat().st_mtime_ns == stamps[i]
    with (tmp_path / "trials.csv").open() as file:
        rows = list(csv.DictReader(file))
    assert [r["trial_id"] for r in rows] == ["0", "1", "2"]
    assert {r["status"] for r in rows} == {"COMPLETED"}
    assert (tmp_path / "branches.png").stat().st_size > 1000


def test_search_branches_rejects_bad_kinds(tmp_path, monkeypatch):
    data = kp.data.synthetic_cells(counts=2, image_size=16)
    for kinds, match in (((), "at least one"), (("cnn",), "`kinds` must be one of")):
        with pytest.raises(ValueError, match=match):
            kp.tuning.search_branches(data, data, tmp_path, kinds=kinds)
    monkeypatch.setenv("KERASTUNER_ORACLE_IP", "127.0.0.1")
    with pytest.raises(ValueError, match="takes one kind"):
        kp.tuning.search_branches(data, data, tmp_path, kinds=("dr", "em"))
    assert not any(tmp_path.iterdir())


@once(
    "the search is backend-neutral; the data-parallel step itself is tested "
    "per backend in tests/training"
)
def test_distributed_trials_validate_over_all_images(tmp_path):
    from keras_parcaps.tuning.search import search_branches

    data = kp.data.synthetic_cells(
        counts=[4, 3, 3], classes=["NGS", "LYT", "EOS"], image_size=16
    )
    train, val = data.subset([0, 1, 4, 5, 7, 8]), data.subset([2, 3, 6, 9])
    result = search_branches(
        train,
        val,
        tmp_path,
        max_trials=1,
        epochs=1,
        steps_per_epoch=1,
        verbose=0,
        distribute=True,
        branches=(1, 2),
        capsule_layers=(2,),
        routing_iterations=(1, 1),
        jit_compile=False,
    )
    search = result["tuners"]["dr"]
    (trial,) = search.oracle.trials.values()
    assert trial.status == "COMPLETED"
    # The trial's val_wacc is the WAcc of its model on all 4 images.
    model = search.load_model(trial)
    report = kp.evaluation.evaluate_model(model, val, orientations=False)
    assert trial.metrics.get_last_value("val_wacc") == pytest.approx(report["wacc"])
    assert (tmp_path / "trials.csv").is_file()
