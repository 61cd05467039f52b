import csv
import json

import numpy as np
import pytest

from keras_parcaps.data import ImageSet
from keras_parcaps.evaluation import (
    classification_report,
    evaluate_model,
    format_table,
    plot_confusion_matrix,
    plot_training_curves,
    write_report,
)


def _numpy_rows(y_true, y_pred, k):
    rows = []
    for c in range(k):
        tp = np.sum((y_pred == c) & (y_true == c))
        predicted = np.sum(y_pred == c)
        actual = np.sum(y_true == c)
        rows.append(
            (
                actual,
                tp / predicted if predicted else 0.0,
                tp / actual if actual else 0.0,
            )
        )
    return rows


def test_report_against_numpy(rng):
    y_true = rng.integers(0, 4, 200)
    y_pred = np.where(rng.random(200) < 0.7, y_true, rng.integers(0, 4, 200))
    y_pred[y_pred == 3] = 2  # class 3 is never predicted: precision 0
    report = classification_report(
        y_true, y_pred, list("abcd"), ["A a", "B b", "C c", "D d"]
    )
    rows = _numpy_rows(y_true, y_pred, 4)
    for row, (n, precision, sensitivity) in zip(report["classes"], rows, strict=True):
        assert row["images"] == n
        assert np.isclose(row["precision"], precision)
        assert np.isclose(row["sensitivity"], sensitivity)
    assert report["classes"][3]["precision"] == 0.0
    assert np.isclose(report["acc"], np.mean(y_true == y_pred))
    assert np.isclose(report["wacc"], np.mean([r[2] for r in rows]))
    assert np.isclose(report["total"]["precision"], np.mean([r[1] for r in rows]))
    assert np.isclose(report["total"]["sensitivity"], report["wacc"])
    assert report["total"]["images"] == 200
    matrix = np.array(report["confusion_matrix"])
    assert matrix[1, 2] == np.sum((y_true == 1) & (y_pred == 2))
    assert report["agr"] is None


def test_total_skips_absent_classes():
    report = classification_report([0, 0, 2], [0, 2, 2], ["a", "b", "c"])
    assert report["classes"][1]["images"] == 0
    assert np.isclose(report["total"]["sensitivity"], (0.5 + 1.0) / 2)
    assert np.isclose(report["total"]["precision"], (1.0 + 0.5) / 2)


def test_files(tmp_path):
    report = classification_report(
        [0, 1, 1, 2],
        [0, 1, 2, 2],
        ["x", "y", "z"],
        orientation_predictions=np.zeros((8, 4), int),
    )
    assert report["agr"] == 1.0
    paths = write_report(report, tmp_path)
    assert json.loads(open(paths["json"]).read())["acc"] == 0.75
    with open(paths["csv"]) as file:
        rows = list(csv.reader(file))
    assert rows[0] == ["code", "type_of_cell", "images", "precision", "sensitivity"]
    assert rows[-1][:3] == ["", "Total", "4"]
    assert "| Total | 4 |" in format_table(report)
    png = plot_confusion_matrix(
        report["confusion_matrix"], ["x", "y", "z"], tmp_path / "cm.png"
    )
    assert open(png, "rb").read(8) == b"\x89PNG\r\n\x1a\n"
    log = tmp_path / "log.csv"
    log.write_text(
        "epoch,acc,loss,val_acc,val_loss\n0,0.5,1.0,0.4,1.1\n1,0.7,0.8,0.6,0.9\n"
    )
    curves = plot_training_curves(log, tmp_path / "curves.png")
    assert open(curves, "rb").read(4) == b"\x89PNG"


def test_evaluate_model(tmp_path):
    import keras

    images = np.zeros((6, 4, 4, 3), np.uint8)
    images[3:] = 255
    data = ImageSet(None, [0, 0, 0, 1, 1, 1], ["dark", "light"], images=images)
    # Mean brightness decides: dark -> class 0, light -> class 1.
    model = keras.Sequential(
        [
            keras.Input((4, 4, 3)),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(
                2,
                kernel_initializer=keras.initializers.Constant([[-1.0, 1.0]] * 3),
                bias_initializer=keras.initializers.Constant([1.5, -1.5]),
            ),
        ]
    )
    report = evaluate_model(model, data, tmp_path)
    assert report["acc"] == 1.0 and report["agr"] == 1.0
    assert report["predictions"] == [0, 0, 0, 1, 1, 1]
    assert (tmp_path / "report_confusion_matrix.png").is_file()
    assert (tmp_path / "report_table.csv").is_file()


def test_evaluate_model_averages_orientations(tmp_path):
    import keras

    # One bright pixel in the top-left corner; the model scores class 1
    # only when the pixel is there. It stays there in 2 of the 8
    # orientations (the original and the transpose), which say class 1 with
    # score 1; the other 6 say class 0 with score 0.5. Mean scores
    # (0.375, 0.25) pick class 0.
    images = np.zeros((2, 4, 4, 3), np.uint8)
    images[:, 0, 0] = 255
    data = ImageSet(None, [1, 0], ["a", "b"], images=images)
    inputs = keras.Input((4, 4, 3))
    corner = keras.layers.Lambda(lambda x: x[:, 0, 0, :1])(inputs)
    scores = keras.layers.Lambda(
        lambda c: keras.ops.concatenate([0.5 * (1.0 - c), c], axis=-1)
    )(corner)
    model = keras.Model(inputs, scores)

    single = evaluate_model(model, data)
    averaged = evaluate_model(model, data, tmp_path, average_orientations=True)
    assert single["predictions"] == [1, 1]
    assert averaged["predictions"] == [0, 0]
    # Agr is the model's own invariance either way: no image agrees.
    assert single["agr"] == averaged["agr"] == 0.0
    assert (single["acc"], averaged["acc"]) == (0.5, 0.5)
    assert averaged["average_orientations"] is True
    saved = json.loads((tmp_path / "report.json").read_text())
    assert saved["average_orientations"] is True
    with pytest.raises(ValueError, match="orientations=False"):
        evaluate_model(model, data, orientations=False, average_orientations=True)
