"""`keras-parcaps explain` (and `evaluate`'s link to it) on a saved model."""

import json

import numpy as np
import pytest
from PIL import Image

from keras_parcaps.cli import main
from tests.explain.tiny_models import tiny_parallel_dr


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A tiny parallel DR model and its run.json, as `train` leaves them.

    (Loading a model saved on another backend is tests/test_portability.py's.)
    """
    folder = tmp_path_factory.mktemp("run")
    tiny_parallel_dr(size=16, num_classes=3, n_branches=2).save(folder / "model.keras")
    (folder / "run.json").write_text(json.dumps({"classes": ["EOS", "LYT", "MON"]}))
    return folder


@pytest.fixture(scope="module")
def cells(tmp_path_factory):
    """Class folders of 20x20 PNGs (resized to the model's 16x16)."""
    root = tmp_path_factory.mktemp("cells")
    rng = np.random.default_rng(0)
    for code, count in (("EOS", 2), ("LYT", 1), ("MON", 2)):
        (root / code).mkdir()
        for i in range(count):
            pixels = rng.integers(0, 256, (20, 20, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / code / f"{code.lower()}_{i}.png")
    return root


def test_explain_command_on_a_saved_model(saved, cells, tmp_path, capsys):
    out = tmp_path / "explain"
    main(
        [
            "explain",
            str(saved / "model.keras"),
            str(cells),
            "--out",
            str(out),
            "--max-panels",
            "2",
        ]
    )
    assert "Explained 5 images" in capsys.readouterr().out
    report = json.loads((out / "explanation.json").read_text())
    assert report["class_names"] == ["EOS", "LYT", "MON"]
    assert report["summary"]["n"] == 5 and report["summary"]["acc"] is not None
    assert 0 <= report["summary"]["agr"] <= 1
    # One image of each class in turn: EOS, LYT, MON, EOS, MON.
    assert [r["label"] for r in report["images"]] == ["EOS", "LYT", "MON", "EOS", "MON"]
    assert len(report["images"][0]["branches"]) == 2
    assert all(layer["reproduction_error"] < 1e-5 for layer in report["layers"])
    written = sorted(p.name for p in out.iterdir())
    assert written == [
        "explanation.json",
        "panel_000_EOS_eos_0.png",
        "panel_001_LYT_lyt_0.png",
        "routing.npz",
        "summary.png",
    ]
    arrays = np.load(out / "routing.npz")
    assert arrays["class_caps/coupling"].shape == (3, 5, 2, 3)

    single = tmp_path / "single"
    main(
        [
            "explain",
            str(saved / "model.keras"),
            str(cells / "LYT" / "lyt_0.png"),
            "--out",
            str(single),
            "--no-agr",
        ]
    )
    report = json.loads((single / "explanation.json").read_text())
    assert report["summary"]["n"] == 1 and report["images"][0]["label"] is None


def test_explain_command_errors(saved, tmp_path, capsys):
    for argv, says in (
        ([str(tmp_path / "missing")], "not found"),
        ([str(tmp_path), "--classes", "a,b"], "3 classes; got 2 class names"),
    ):
        with pytest.raises(SystemExit) as exit_info:
            main(["explain", str(saved / "model.keras"), *argv])
        assert exit_info.value.code == 2
        assert says in capsys.readouterr().err


def test_evaluate_report_links_to_explain(saved, cells, tmp_path, capsys):
    out = tmp_path / "evaluate"
    main(
        [
            "evaluate",
            str(saved / "model.keras"),
            "--data",
            str(cells),
            "--no-agr",
            "--out",
            str(out),
            "--verbose",
            "0",
        ]
    )
    command = f"keras-parcaps explain {saved / 'model.keras'} {cells}"
    assert command in capsys.readouterr().out
    assert command in (out / "report.md").read_text()
