"""Evaluate a trained model on an `ImageSet`: metrics, report files, plots."""

from pathlib import Path

import numpy as np

from keras_parcaps.data.sampling import to_model_input
from keras_parcaps.evaluation.agreement import predict_orientations
from keras_parcaps.evaluation.plots import plot_confusion_matrix
from keras_parcaps.evaluation.report import classification_report, write_report


def evaluate_model(
    model,
    data,
    out_dir=None,
    batch_size: int = 32,
    orientations: bool = True,
    prefix: str = "report",
    average_orientations: bool = False,
) -> dict:
    """Computes Acc, WAcc, Agr and the Table 2 rows of `model` on `data`.

    The class of each image is the model's prediction on the original
    orientation; Agr uses all 8 dihedral orientations (8 predictions per
    image, so set `orientations=False` to save time when Agr is not needed).

    With `average_orientations=True` the class of each image is instead the
    top class of its scores averaged over the 8 orientations (test-time
    augmentation, at no extra cost when Agr is computed anyway). Agr keeps
    the paper's definition, from the 8 single-orientation predictions, so
    it still measures how rotation-invariant the model itself is.

    Args:
        model: A Keras model from `float32` images in `[0, 1]` to scores.
        data: A `kp.data.ImageSet`.
        out_dir: Optional folder for `report.json`, `report_table.csv`,
            `report.md` and `confusion_matrix.png`.
        batch_size: Prediction batch size.
        orientations: Whether to compute Agr.
        prefix: File name prefix of the report files.
        average_orientations: Whether each image's class comes from its
            scores averaged over the 8 orientations rather than from the
            original orientation alone. Needs `orientations=True`.

    Returns:
        The report dict of `classification_report`, plus `files` when
        `out_dir` is given, `predictions` (integer classes) and
        `orientation_predictions` (`(8, n)` classes, or `None`) and
        `average_orientations`.

    Example:

        >>> import keras
        >>> from keras_parcaps.data import ImageSet
        >>> images = np.zeros((4, 4, 4, 3), np.uint8)  # red, red, green, green
        >>> images[:2, ..., 0] = images[2:, ..., 1] = 255
        >>> data = ImageSet(None, [0, 0, 1, 2], ["red", "green", "blue"],
        ...                 images=images)
        >>> # Scores are the mean colour: a model blind to orientation.
        >>> model = keras.Sequential(
        ...     [keras.Input((4, 4, 3)), keras.layers.GlobalAveragePooling2D()])
        >>> import tempfile
        >>> tmp = tempfile.TemporaryDirectory()
        >>> report = evaluate_model(model, data, out_dir=tmp.name)
        >>> report["predictions"], report["acc"], report["wacc"], report["agr"]
        ([0, 0, 1, 1], 0.75, 0.6666666666666666, 1.0)
        >>> sorted(report["files"])
        ['confusion_matrix', 'csv', 'json', 'markdown']
        >>> evaluate_model(model, data, orientations=False)["agr"] is None
        True
    """
    if average_orientations and not orientations:
        raise ValueError(
            "`average_orientations=True` averages the 8 orientations' scores "
            "and so needs `orientations=True`. Received: orientations=False"
        )
    images = data.images()
    if orientations:
        scores = predict_orientations(model, images, batch_size)
        views = scores.argmax(-1)
        predicted = scores.mean(0).argmax(-1) if average_orientations else views[0]
    else:
        scores = np.asarray(
            model.predict(to_model_input(images), batch_size=batch_size, verbose=0)
        )
        views, predicted = None, scores.argmax(-1)
    report = classification_report(
        data.labels, predicted, data.class_names, data.full_names, views
    )
    report["average_orientations"] = average_orientations
    if out_dir is not None:
        out_dir = Path(out_dir)
        files = write_report(report, out_dir, prefix)
        files["confusion_matrix"] = plot_confusion_matrix(
            report["confusion_matrix"],
            data.class_names,
            out_dir / f"{prefix}_confusion_matrix.png",
        )
        report["files"] = files
    report["predictions"] = predicted.tolist()
    report["orientation_predictions"] = None if views is None else views.tolist()
    return report
