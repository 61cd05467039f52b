import json
import re
import shutil
import subprocess
import sys

import pytest

from keras_parcaps.cli import DEMO_DEFAULTS, build_parser, main
from keras_parcaps.cli.commands import COMMANDS
from keras_parcaps.cli.options import model_builder
from tests.markers import once

TINY = [
    "--model",
    "tests.training.tiny_models:tiny_capsnet",
    "--image-size",
    "24",
    "--verbose",
    "0",
]


def test_demo_writes_report_and_plots(tmp_path, capsys):
    out = tmp_path / "demo"
    main(["demo", *TINY, "--epochs", "2", "--steps", "2", "--out", str(out)])
    printed = capsys.readouterr().out
    assert "Acc" in printed and "WAcc" in printed and "Agr" in printed
    assert "| Total |" in printed
    report = json.loads((out / "report.json").read_text())
    assert 0 <= report["acc"] <= 1 and 0 <= report["agr"] <= 1
    assert report["n"] == 132  # fold 0 of the 660 synthetic cells
    for name in (
        "report_table.csv",
        "report.md",
        "report_confusion_matrix.png",
        "training_curves.png",
        "log.csv",
        "model.keras",
    ):
        assert (out / name).is_file(), name

    evaluated = tmp_path / "evaluated"
    main(
        [
            "evaluate",
            str(out / "model.keras"),
            "--fold",
            "0",
            "--out",
            str(evaluated),
            "--verbose",
            "0",
        ]
    )
    again = json.loads((evaluated / "report.json").read_text())
    assert again["acc"] == pytest.approx(report["acc"])
    assert again["n"] == report["n"]

    capsys.readouterr()
    diagnosed = tmp_path / "diagnosed"
    main(
        [
            "diagnose",
            str(out / "model.keras"),
            "--fold",
            "0",
            "--images",
            "12",
            "--out",
            str(diagnosed),
            "--verbose",
            "0",
        ]
    )
    printed = capsys.readouterr().out
    assert "Accuracy on 12 images: inference" in printed
    diagnosis = json.loads((diagnosed / "diagnosis.json").read_text())
    assert diagnosis["images"] == 12
    assert diagnosis["capsules"][-1]["kind"] == "dr"


@once("the commands' fold loops and files; training is tested on every backend")
def test_cross_validate_and_small_data(tmp_path, capsys):
    cv = tmp_path / "cv"
    main(
        [
            "cross-validate",
            *TINY,
            "--epochs",
            "1",
            "--steps",
            "1",
            "--folds",
            "0,1",
            "--no-agr",
            "--out",
            str(cv),
        ]
    )
    report = json.loads((cv / "cv_report.json").read_text())
    assert [f["fold"] for f in report["folds"]] == [0, 1]
    assert report["n"] == sum(f["n"] for f in report["folds"]) == 264
    assert (cv / "cv_confusion_matrix.png").is_file()
    assert (cv / "fold_1" / "report.json").is_file()
    small = tmp_path / "small"
    main(
        [
            "small-data",
            *TINY,
            "--max-per-class",
            "10",
            "--epochs",
            "1",
            "--steps",
            "1",
            "--folds",
            "0",
            "--no-agr",
            "--out",
            str(small),
        ]
    )
    report = json.loads((small / "cv_report.json").read_text())
    assert report["max_per_class"] == 10
    assert report["n"] == 660 - 6 * 8  # the held fold plus everything above x
    assert "Small data, x=10" in capsys.readouterr().out


def test_bad_input_messages(tmp_path, capsys):
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as exit_info:
        main(["train", *TINY, "--data", str(tmp_path / "missing"), "--out", str(out)])
    assert exit_info.value.code == 2
    assert re.search("not found: .*missing", capsys.readouterr().err)
    assert not out.exists()
    with pytest.raises(SystemExit):
        main(["train", "--model", "nope", "--data", str(tmp_path)])
    assert "Unknown or unavailable model 'nope'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        build_parser().parse_args(["small-data"])  # --max-per-class is required
    assert "--max-per-class" in capsys.readouterr().err


@once("argument handling, the same on every backend")
@pytest.mark.parametrize(
    "argv,options",
    [
        (["demo"], {"n_branches": 4, "capsule_layers": 3, "backbone": "plain"}),
        (
            ["demo", "--branches", "2", "--model-option", "backbone=paper"],
            {"n_branches": 2, "capsule_layers": 3, "backbone": "paper"},
        ),
        (["demo", "--model", "resnext50"], {}),  # takes none of the demo's options
        (["train"], {}),
    ],
)
def test_the_demos_defaults_reach_its_model_only(argv, options):
    assert model_builder(build_parser().parse_args(argv)).options == options


@once("the installed console script, in a fresh interpreter")
def test_demo_defaults_and_console_script():
    args = build_parser().parse_args(["demo"])
    assert args.model == DEMO_DEFAULTS["model"] == "parallel_dr"
    assert args.data is None and args.image_size == DEMO_DEFAULTS["image_size"]
    script = shutil.which("keras-parcaps") or shutil.which(
        "keras-parcaps", path=str(__import__("pathlib").Path(sys.executable).parent)
    )
    command = [script] if script else [sys.executable, "-m", "keras_parcaps.cli"]
    result = subprocess.run(
        [*command, "--help"], capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0
    for sub in ("demo", "train", "evaluate", "cross-validate", "small-data"):
        assert sub in result.stdout


def test_every_command_has_a_function():
    # The usage line lists the subcommands: "{demo,train,...}".
    listed = re.search(r"\{([^}]*)\}", build_parser().format_usage()).group(1)
    assert sorted(listed.split(",")) == sorted(COMMANDS)
