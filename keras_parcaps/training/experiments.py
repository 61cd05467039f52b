"""Whole experiments: one fold, the 5-fold CV, and the small-data protocol."""

import contextlib
import json
from pathlib import Path

import numpy as np

from keras_parcaps.data.folds import fold_split, small_data_split, stratified_folds
from keras_parcaps.evaluation.evaluate import evaluate_model
from keras_parcaps.evaluation.plots import plot_confusion_matrix, plot_training_curves
from keras_parcaps.evaluation.report import classification_report, write_report
from keras_parcaps.training import distribution_backend
from keras_parcaps.training.distribution_backend import (
    data_parallel,
    replica_batch_multiple,
)
from keras_parcaps.training.run_folder import RunFolder
from keras_parcaps.training.sharded_predictor import ShardedPredictor
from keras_parcaps.training.trainer import data_fingerprint, train


def _image_shape(data):
    return tuple(data.images([0]).shape[1:])


def train_and_evaluate(
    builder,
    train_data,
    test_data,
    out_dir,
    epochs: int = 10,
    steps_per_epoch: int = 500,
    validate: bool = True,
    orientations: bool = True,
    distribute: bool = False,
    **train_options,
) -> dict:
    """Builds a model, trains it (resumably) and evaluates it on `test_data`.

    Writes into `out_dir` what `train` writes plus `report.json`,
    `report_table.csv`, `report.md`, `report_confusion_matrix.png` and
    `training_curves.png`.

    Args:
        builder: `build(input_shape, num_classes) -> compiled model`, e.g.
            from `get_builder`.
        train_data: The training `ImageSet`.
        test_data: The `ImageSet` to evaluate on (and validate on every
            epoch when `validate`).
        out_dir: Output folder.
        epochs: Epochs of `steps_per_epoch` iterations.
        steps_per_epoch: Iterations per epoch.
        validate: Whether to evaluate `test_data` after every epoch.
        orientations: Whether to compute Agr (8 predictions per image).
        distribute: Whether to build and train inside
            `kp.training.data_parallel()` (every GPU, else every CPU
            device, of every process a launcher started), with
            `replica_batch_multiple` images per class so each batch splits
            evenly. Validation and the final evaluation share the images
            out over the processes (`kp.training.ShardedPredictor`): each
            image is predicted once and the metrics equal a single
            process's. Only the chief process writes files; every process
            returns the same report (without `files` on the others).
        **train_options: More arguments of `kp.training.train`.

    Returns:
        The evaluation report (see `kp.evaluation.evaluate_model`).

    Example:

        >>> import keras, os, tempfile
        >>> from keras_parcaps.data import synthetic_cells
        >>> def build(input_shape, num_classes):  # stands for get_builder(...)
        ...     model = keras.Sequential([
        ...         keras.Input(input_shape),
        ...         keras.layers.GlobalAveragePooling2D(),
        ...         keras.layers.Dense(num_classes, activation="softmax"),
        ...     ])
        ...     model.compile(loss="categorical_crossentropy")
        ...     return model
        >>> data = synthetic_cells(counts=2, classes=["LYT", "EOS"], image_size=8)
        >>> tmp = tempfile.TemporaryDirectory()
        >>> report = train_and_evaluate(build, data, data, tmp.name, epochs=1,
        ...                             steps_per_epoch=1, validate=False,
        ...                             orientations=False, verbose=0)
        >>> report["n"], 0.0 <= report["acc"] <= 1.0, report["agr"]
        (4, True, None)
        >>> sorted(report["files"])
        ['confusion_matrix', 'csv', 'json', 'markdown', 'training_curves']
        >>> os.path.isfile(os.path.join(tmp.name, "model.keras"))
        True
    """
    out_dir = Path(out_dir)
    fingerprint = {
        **data_fingerprint(train_data),
        **(train_options.get("fingerprint") or {}),
    }
    with data_parallel() if distribute else contextlib.nullcontext() as devices:
        chief = distribution_backend.is_chief()
        run = RunFolder(out_dir)

        def take():
            # Only the chief locks the folder and writes into it; the others
            # learn from `on_chief` whether it could (and, in `train`, what
            # it decided).
            run.lock()
            if not train_options.get("overwrite"):
                try:
                    # Refuse another run's folder before building the model.
                    run.check(fingerprint)
                except BaseException:
                    run.unlock()
                    raise

        distribution_backend.on_chief(take)
        try:
            if distribute:
                train_options.setdefault(
                    "images_per_class",
                    replica_batch_multiple(
                        train_data.num_classes,
                        distribution_backend.replica_count(devices),
                    ),
                )
            model = builder(_image_shape(train_data), train_data.num_classes)
            train(
                model,
                train_data,
                out_dir,
                val_data=test_data if validate else None,
                epochs=epochs,
                steps_per_epoch=steps_per_epoch,
                **train_options,
            )
            report = evaluate_model(
                ShardedPredictor(model) if distribute else model,
                test_data,
                out_dir if chief else None,
                orientations=orientations,
            )
            if chief and (out_dir / "log.csv").is_file():
                report["files"]["training_curves"] = plot_training_curves(
                    out_dir / "log.csv", out_dir / "training_curves.png"
                )
        finally:
            run.unlock()  # nothing to do where the lock is not held
    return report


def _folds_run(
    builder, data, folds, out_dir, run_folds, shared_test=None, extra=None, **options
):
    out_dir = Path(out_dir)
    n_folds = int(folds.max()) + 1
    run_folds = list(range(n_folds)) if run_folds is None else list(run_folds)
    per_fold, truth, predicted, views = [], [], [], []
    for fold in run_folds:
        train_idx, test_idx = fold_split(folds, fold)
        if shared_test is not None:
            # The small-data test set (fold -1) is tested by every run.
            test_idx = np.concatenate([test_idx, shared_test])
        report = train_and_evaluate(
            builder,
            data.subset(train_idx),
            data.subset(test_idx),
            out_dir / f"fold_{fold}",
            **options,
        )
        per_fold.append(
            {
                "fold": fold,
                "acc": report["acc"],
                "wacc": report["wacc"],
                "agr": report["agr"],
                "n": report["n"],
            }
        )
        truth.append(data.labels[test_idx])
        predicted.append(np.asarray(report["predictions"]))
        if report.get("orientation_predictions") is not None:
            views.append(np.asarray(report["orientation_predictions"]))
    pooled = classification_report(
        np.concatenate(truth),
        np.concatenate(predicted),
        data.class_names,
        data.full_names,
        np.concatenate(views, axis=1) if views else None,
    )
    pooled["folds"] = per_fold
    pooled.update(extra or {})
    for key in ("acc", "wacc", "agr"):
        values = [f[key] for f in per_fold if f[key] is not None]
        if values:
            pooled[f"{key}_fold_mean"] = float(np.mean(values))
            pooled[f"{key}_fold_std"] = float(np.std(values))
    if not distribution_backend.is_chief():
        return pooled
    files = write_report(pooled, out_dir, "cv_report")
    files["confusion_matrix"] = plot_confusion_matrix(
        pooled["confusion_matrix"],
        data.class_names,
        out_dir / "cv_confusion_matrix.png",
    )
    pooled["files"] = files
    (out_dir / "cv_folds.json").write_text(json.dumps(per_fold, indent=2))
    return pooled


def cross_validate(
    builder,
    data,
    out_dir,
    n_folds: int = 5,
    folds=None,
    run_folds=None,
    seed: int = 0,
    **options,
) -> dict:
    """The paper's 5-fold cross-validation with a pooled Table 2 report.

    Every fold trains on the other folds and predicts its own images; the
    pooled predictions give one report over the whole dataset (the paper's
    Table 2), and the per-fold Acc/WAcc/Agr give means and deviations.
    Each fold writes to `out_dir/fold_k` and resumes if interrupted.

    Args:
        builder: `build(input_shape, num_classes) -> compiled model`.
        data: An `ImageSet`.
        out_dir: Output folder; the pooled report is `cv_report.*`.
        n_folds: Number of folds. Default 5.
        folds: Optional precomputed fold of each image (`stratified_folds`).
        run_folds: Optional subset of folds to run (default all).
        seed: Seed of the fold assignment, the sampling and augmentation.
        **options: Arguments of `train_and_evaluate` (epochs, ...).

    Returns:
        The pooled report, with `folds` (per-fold metrics) and the fold
        means and standard deviations.

    Example:

        >>> # Two folds of a tiny model; every image is predicted once, by
        >>> # the model of the fold that did not train on it.
        >>> import keras, os, tempfile
        >>> from keras_parcaps.data import synthetic_cells
        >>> def build(input_shape, num_classes):  # stands for get_builder(...)
        ...     model = keras.Sequential([
        ...         keras.Input(input_shape),
        ...         keras.layers.GlobalAveragePooling2D(),
        ...         keras.layers.Dense(num_classes, activation="softmax"),
        ...     ])
        ...     model.compile(loss="categorical_crossentropy")
        ...     return model
        >>> data = synthetic_cells(counts=4, classes=["LYT", "EOS"], image_size=8)
        >>> tmp = tempfile.TemporaryDirectory()
        >>> report = cross_validate(build, data, tmp.name, n_folds=2, epochs=1,
        ...                         steps_per_epoch=1, validate=False,
        ...                         orientations=False, verbose=0)
        >>> report["n"], [fold["n"] for fold in report["folds"]]
        (8, [4, 4])
        >>> "acc_fold_mean" in report, "agr_fold_mean" in report
        (True, False)
        >>> sorted(name for name in os.listdir(tmp.name) if "report" in name)
        ['cv_report.json', 'cv_report.md', 'cv_report_table.csv']
    """
    if folds is None:
        folds = stratified_folds(data.labels, n_folds, seed)
    folds = np.asarray(folds)
    return _folds_run(builder, data, folds, out_dir, run_folds, seed=seed, **options)


def small_data(
    builder,
    data,
    out_dir,
    max_per_class: int,
    n_folds: int = 5,
    run_folds=None,
    seed: int = 0,
    **options,
) -> dict:
    """The paper's small-data protocol for one `x = max_per_class`.

    Up to `x` images per class form `n_folds` folds; each run trains on
    all folds but one and tests on that fold plus every image above `x`
    (the shared test set). The report pools the runs like `cross_validate`
    (so an image of the shared test set counts once per run) and holds
    `max_per_class`.

    Args:
        builder: `build(input_shape, num_classes) -> compiled model`.
        data: An `ImageSet`.
        out_dir: Output folder; the pooled report is `cv_report.*`.
        max_per_class: `x`, the number of images per class in the folds.
        n_folds: Number of folds. Default 5.
        run_folds: Optional subset of folds to run (default all).
        seed: Seed of the split, the sampling and augmentation.
        **options: Arguments of `train_and_evaluate` (epochs, ...).

    Returns:
        The pooled report (see `cross_validate`).

    Example:

        >>> # x = 2 of 4 images per class: one run trains on one fold (2
        >>> # images) and tests on the other fold (2) and the 4 images above x.
        >>> import keras, os, tempfile
        >>> from keras_parcaps.data import synthetic_cells
        >>> def build(input_shape, num_classes):  # stands for get_builder(...)
        ...     model = keras.Sequential([
        ...         keras.Input(input_shape),
        ...         keras.layers.GlobalAveragePooling2D(),
        ...         keras.layers.Dense(num_classes, activation="softmax"),
        ...     ])
        ...     model.compile(loss="categorical_crossentropy")
        ...     return model
        >>> data = synthetic_cells(counts=4, classes=["LYT", "EOS"], image_size=8)
        >>> tmp = tempfile.TemporaryDirectory()
        >>> report = small_data(build, data, tmp.name, max_per_class=2,
        ...                     n_folds=2, run_folds=[0], epochs=1,
        ...                     steps_per_epoch=1, validate=False,
        ...                     orientations=False, verbose=0)
        >>> report["max_per_class"], report["n"]
        (2, 6)
    """
    folds = small_data_split(data.labels, max_per_class, n_folds, seed)
    return _folds_run(
        builder,
        data,
        folds,
        out_dir,
        run_folds,
        shared_test=np.flatnonzero(folds < 0),
        extra={"max_per_class": max_per_class},
        seed=seed,
        **options,
    )
