"""The command line never loses or mixes up a run, and rejects bad input in
one line (exit code 2, no traceback) before any work starts."""

import json
import os
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from keras_parcaps.cli import main
from tests.markers import once

# Run folders, locks and refusals are the command's own logic; checkpoints
# resuming on every backend are tests/training/test_resume.py's.
pytestmark = once("the command line's run folders and argument checks")

REPO = Path(__file__).resolve().parents[1]
TINY = [
    "--model",
    "tests.training.tiny_models:tiny_capsnet",
    "--image-size",
    "24",
    "--epochs",
    "1",
    "--steps",
    "2",
    "--no-agr",
    "--verbose",
    "0",
]


def _cli(*args, timeout=300):
    """Runs the real `keras-parcaps` in a subprocess."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-m", "keras_parcaps.cli", *map(str, args)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _error_line(result):
    """The one line a refused command prints (and nothing like a traceback)."""
    lines = [
        line
        for line in result.stderr.splitlines()
        if line.startswith("keras-parcaps:")
        and not line.startswith("keras-parcaps: warning")
    ]
    assert len(lines) == 1, result.stderr[-3000:]
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    return lines[0]


def _main_error(argv, capsys):
    """In-process `main`: the exit code and the one error line."""
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    err = capsys.readouterr().err
    lines = [
        line
        for line in err.splitlines()
        if line.startswith("keras-parcaps:")
        and not line.startswith("keras-parcaps: warning")
    ]
    assert len(lines) == 1 and "Traceback" not in err, err
    return exit_info.value.code, lines[0]


def _files(folder):
    return {
        str(p.relative_to(folder)): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def _class_folders(root, names, per_class=3, size=30):
    rng = np.random.default_rng(0)
    for name in names:
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            pixels = rng.integers(0, 255, (size, size, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / name / f"{name}_{i}.jpg")
    return root


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """A finished run of the tiny model on the synthetic cells (6 classes)."""
    out = tmp_path_factory.mktemp("runs") / "run"
    main(["train", *TINY, "--out", str(out)])
    return out


def test_other_data_in_a_finished_run_is_refused_byte_for_byte(
    finished_run, tmp_path, capsys
):
    other = _class_folders(tmp_path / "other", ["EOS", "LYT"])
    before = _files(finished_run)
    code, line = _main_error(
        ["train", *TINY, "--data", str(other), "--out", str(finished_run)], capsys
    )
    assert code == 2
    assert "holds another run" in line and "classes" in line and "EOS" in line
    assert _files(finished_run) == before
    # The same run again: the finished result, nothing trained or re-saved.
    main(["train", *TINY, "--verbose", "2", "--out", str(finished_run)])
    assert "holds a finished run of 1 epoch" in capsys.readouterr().out
    after = _files(finished_run)
    for name in ("model.keras", "checkpoints/epoch_001.weights.h5", "log.csv"):
        assert after[name] == before[name]


def test_overwrite_starts_over(tmp_path, capsys):
    out = tmp_path / "run"
    main(["train", *TINY, "--out", str(out)])
    other = _class_folders(tmp_path / "other", ["EOS", "LYT"], per_class=5)
    main(["train", *TINY, "--data", str(other), "--out", str(out), "--overwrite"])
    assert json.loads((out / "run.json").read_text())["fingerprint"]["classes"] == [
        "EOS",
        "LYT",
    ]
    assert json.loads((out / "report.json").read_text())["n"] == 2  # one fold


def test_a_second_run_into_a_locked_folder_is_refused(tmp_path):
    out = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        out.mkdir()
        (out / "run.lock").write_text(
            json.dumps({"pid": holder.pid, "host": os.uname().nodename})
        )
        result = _cli("train", *TINY, "--out", out)
    finally:
        holder.kill()
        holder.wait()
    assert result.returncode == 2
    line = _error_line(result)
    assert f"in use by process {holder.pid}" in line
    assert sorted(p.name for p in out.iterdir()) == ["run.lock"]


def test_truncated_checkpoint_resumes_from_the_previous_one(tmp_path):
    out = tmp_path / "run"
    main(["train", *TINY, "--epochs", "2", "--out", str(out)])
    latest = out / "checkpoints" / "epoch_002.weights.h5"
    latest.write_bytes(latest.read_bytes()[:2000])  # a save cut short
    result = _cli("train", *TINY, "--epochs", "3", "--verbose", "2", "--out", out)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "epoch_002.weights.h5" in result.stderr
    assert "resuming from" in result.stderr and "epoch_001.weights.h5" in result.stderr
    assert "Resuming" in result.stdout and "after epoch 1" in result.stdout
    rows = (out / "log.csv").read_text().splitlines()[1:]
    assert [int(row.split(",")[0]) for row in rows] == [0, 1, 2]
    with zipfile.ZipFile(out / "model.keras") as archive:  # a whole archive
        assert archive.testzip() is None


def test_images_per_class_reaches_the_batches(tmp_path, capsys):
    out = tmp_path / "run"
    main(["train", *TINY, "--images-per-class", "2", "--out", str(out)])
    run = json.loads((out / "run.json").read_text())
    assert run["fingerprint"]["images_per_class"] == 2
    code, line = _main_error(
        ["train", *TINY, "--images-per-class", "2", "--batch-size", "8"], capsys
    )
    assert code == 2 and "--batch-size" in line


def test_evaluate_averages_orientations(finished_run, tmp_path, capsys):
    model_file = str(finished_run / "model.keras")
    data = str(_class_folders(tmp_path / "data", ["LYT", "NGS"]))
    out = tmp_path / "eval"
    main(
        ["evaluate", model_file, "--data", data, "--average-orientations"]
        + ["--out", str(out)]
    )
    report = json.loads((out / "report.json").read_text())
    assert report["average_orientations"] is True and report["agr"] is not None
    code, line = _main_error(
        ["evaluate", model_file, "--data", data, "--average-orientations", "--no-agr"],
        capsys,
    )
    assert code == 2 and "--no-agr" in line


def test_evaluate_checks_the_model_classes(finished_run, tmp_path, capsys):
    model_file = finished_run / "model.keras"
    other = _class_folders(tmp_path / "other", ["EOS", "XYZ"])
    code, line = _main_error(
        [
            "evaluate",
            str(model_file),
            "--data",
            str(other),
            "--no-agr",
            "--out",
            str(tmp_path / "eval"),
        ],
        capsys,
    )
    assert code == 2
    assert "EOS,XYZ" in line and "NGS,NGB,LYT,MON,EOS,BAS" in line
    assert not (tmp_path / "eval").exists()
    # A subset of the model's classes is evaluated against the model's list.
    subset = _class_folders(tmp_path / "subset", ["LYT", "NGS"])
    main(
        [
            "evaluate",
            str(model_file),
            "--data",
            str(subset),
            "--no-agr",
            "--out",
            str(tmp_path / "eval"),
        ]
    )
    report = json.loads((tmp_path / "eval" / "report.json").read_text())
    assert report["n"] == 6
    # A model saved without class names needs --class-names.
    import keras

    import keras_parcaps  # noqa: F401

    plain = tmp_path / "plain.keras"
    keras.saving.load_model(model_file).save(plain)
    code, line = _main_error(
        ["evaluate", str(plain), "--data", str(subset), "--out", str(tmp_path / "e2")],
        capsys,
    )
    assert code == 2 and "--class-names" in line
    code, line = _main_error(
        [
            "evaluate",
            str(plain),
            "--data",
            str(subset),
            "--class-names",
            "LYT,NGS",
            "--out",
            str(tmp_path / "e2"),
        ],
        capsys,
    )
    assert code == 2 and "6 outputs but 2 class names" in line


BAD_ARGUMENTS = [
    (["--epochs", "0"], "--epochs"),
    (["--steps", "0"], "--steps"),
    (["--batch-size", "0"], "--batch-size"),
    (["--image-size", "4"], "--image-size"),
    (["--branches", "0"], "--branches"),
    (["--capsule-layers", "0"], "--capsule-layers"),
    (["--capsule-size", "0"], "--capsule-size"),
    (["--fold", "7"], "--fold"),
    (["--n-folds", "1"], "--n-folds"),
    (["--learning-rate", "nan"], "--learning-rate"),
    (["--learning-rate", "-1"], "--learning-rate"),
    (["--learning-rate", "0"], "--learning-rate"),
    (["--seed", "-1"], "--seed"),
    (["--epochs", "two"], "--epochs"),
    (["--model", "parallel_dr", "--capsule-size", "17"], "capsule_size"),
    (["--model", "parallel_dr", "--capsule-layers", "99"], "capsule_layers"),
    (
        ["--model", "parallel_dr", "--model-option", "routing_iterations=-1"],
        "routing_iterations",
    ),
    (["--model", "parallel_dr", "--model-option", "bogus=1"], "bogus"),
    (["--model", "dr", "--model-option", "backbone=vgg"], "paper, pooled, plain"),
    (["--model", "parallel_dr", "--model-option", "backbone=3"], "backbone"),
    (["--model", "parallel_dr", "--model-option", "nokeyvalue"], "KEY=VALUE"),
    (["--model", "parallel_dr", "--image-size", "8"], "--image-size"),
    (["--model", "resnext50", "--branches", "4"], "n_branches"),
    (["--model", "no_such_model"], "no_such_model"),
]


@pytest.mark.parametrize("extra,culprit", BAD_ARGUMENTS)
def test_bad_arguments_fail_in_one_line_before_any_work(
    extra, culprit, tmp_path, capsys
):
    out = tmp_path / "out"
    start = time.perf_counter()
    code, line = _main_error(["train", *TINY, *extra, "--out", str(out)], capsys)
    assert time.perf_counter() - start < 5  # no data loaded, no model built
    assert code == 2
    assert culprit in line
    assert not out.exists()


@pytest.mark.parametrize(
    "command",
    [
        ["small-data", "--max-per-class", "0"],
        ["small-data", "--max-per-class", "3"],  # fewer than the 5 folds
        ["cross-validate", "--folds", "0,9"],
        ["cross-validate", "--folds", "0,0"],
    ],
)
def test_bad_fold_arguments(command, tmp_path, capsys):
    code, line = _main_error([*command, *TINY, "--out", str(tmp_path / "o")], capsys)
    assert code == 2 and ("fold" in line or "max-per-class" in line)
    assert not (tmp_path / "o").exists()


def test_bad_arguments_from_the_real_command(tmp_path):
    out = tmp_path / "out"
    result = _cli("train", *TINY, "--epochs", "0", "--out", out)
    assert result.returncode == 2
    assert "--epochs" in _error_line(result)
    assert not out.exists()


def test_bad_images_are_all_named_up_front(tmp_path, capsys):
    data = _class_folders(tmp_path / "data", ["EOS", "LYT"], per_class=4)
    (data / "EOS" / "EOS_0.jpg").write_bytes(b"")
    whole = (data / "LYT" / "LYT_1.jpg").read_bytes()
    (data / "LYT" / "LYT_1.jpg").write_bytes(whole[: len(whole) // 2])
    out = tmp_path / "out"
    code, line = _main_error(
        ["train", *TINY, "--data", str(data), "--out", str(out)], capsys
    )
    assert code == 2
    assert "2 image(s) cannot be read" in line
    assert "EOS_0.jpg" in line and "LYT_1.jpg" in line and "--on-error skip" in line
    assert not out.exists()
    main(
        [
            "train",
            *TINY,
            "--data",
            str(data),
            "--on-error",
            "skip",
            "--n-folds",
            "2",
            "--out",
            str(out),
        ]
    )
    assert "Skipped 2 unreadable or missing image(s)" in capsys.readouterr().out
    info = json.loads((out / "run.json").read_text())
    assert info["fingerprint"]["train_images"] + info["val_images"] == 6


def test_os_errors_are_one_line(tmp_path, capsys):
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    for out, says in ((a_file, "is not a folder"), (a_file / "sub", "is a file")):
        code, line = _main_error(["train", *TINY, "--out", str(out)], capsys)
        assert code == 2 and says in line
    junk = tmp_path / "junk.keras"
    junk.write_bytes(b"PK\x03\x04 this is not a model")
    code, line = _main_error(
        ["evaluate", str(junk), "--out", str(tmp_path / "eval")], capsys
    )
    assert code == 2
    assert "junk.keras" in line and "not a readable .keras file" in line
    assert not (tmp_path / "eval").exists()
    code, line = _main_error(["evaluate", str(tmp_path / "missing.keras")], capsys)
    assert code == 2 and "not found" in line
