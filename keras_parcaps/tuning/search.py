"""A resumable, optionally distributed branch search on an image dataset."""

import contextlib
import os
from pathlib import Path

from keras_parcaps._checks import check_choice, check_positive_int
from keras_parcaps.data.sampling import OnePerClassBatches, ShuffledBatches
from keras_parcaps.training.distributed_callbacks import ShardedValidation
from keras_parcaps.training.distribution_backend import (
    data_parallel,
    replica_batch_multiple,
    replica_count,
)
from keras_parcaps.tuning.hypermodel import (
    KINDS,
    ParallelCapsHyperModel,
    keras_tuner,
    objective,
)
from keras_parcaps.tuning.report import (
    plot_branch_search,
    trials_table,
    write_trials_csv,
)

TUNERS = ("random", "bayesian", "hyperband")


def is_worker() -> bool:
    """Whether this process is a worker of a distributed KerasTuner search.

    KerasTuner's chief/worker mode is set by the environment: every
    process has `KERASTUNER_ORACLE_IP` and `KERASTUNER_ORACLE_PORT`, the
    chief has `KERASTUNER_TUNER_ID=chief`, each worker its own other ID.

    Example:

        >>> is_worker()  # a plain, single-process run
        False
    """
    return (
        "KERASTUNER_ORACLE_IP" in os.environ
        and os.environ.get("KERASTUNER_TUNER_ID", "chief") != "chief"
    )


def make_tuner(
    hypermodel,
    directory,
    project_name: str,
    tuner: str = "random",
    max_trials: int = 10,
    max_epochs: int = 10,
    seed: int = 0,
    **kwargs,
):
    """A KerasTuner tuner on `hypermodel` that reloads its project if it exists.

    `overwrite=False`: a tuner made again with the same `directory` and
    `project_name` continues the search where it stopped. Finished trials
    are kept; a trial that was running when the process died runs again.

    Args:
        hypermodel: A `ParallelCapsHyperModel`.
        directory: Folder of the search.
        project_name: Sub-folder of this search.
        tuner: `"random"` (`RandomSearch`), `"bayesian"`
            (`BayesianOptimization`) or `"hyperband"` (`Hyperband`).
        max_trials: Trials of the random and Bayesian searches.
        max_epochs: Hyperband's most epochs for one model.
        seed: Seed of the search.
        **kwargs: More arguments of the tuner.

    Returns:
        The tuner, with the objective `val_wacc` to maximize.

    Example:

        >>> import tempfile
        >>> from keras_parcaps.tuning import ParallelCapsHyperModel
        >>> hypermodel = ParallelCapsHyperModel(
        ...     "dr", input_shape=(16, 16, 3), num_classes=3, branches=(1, 1),
        ...     capsule_layers=[2])
        >>> tmp = tempfile.TemporaryDirectory()
        >>> tuner = make_tuner(hypermodel, tmp.name, "dr", max_trials=3)
        >>> tuner.oracle.objective.name, tuner.oracle.max_trials
        ('val_wacc', 3)
    """
    check_choice("tuner", tuner, TUNERS)
    check_positive_int("max_trials", max_trials)
    options = dict(
        objective=objective(),
        directory=str(directory),
        project_name=project_name,
        overwrite=False,
        seed=seed,
        **kwargs,
    )
    if tuner == "random":
        return keras_tuner.RandomSearch(hypermodel, max_trials=max_trials, **options)
    if tuner == "bayesian":
        return keras_tuner.BayesianOptimization(
            hypermodel, max_trials=max_trials, **options
        )
    check_positive_int("max_epochs", max_epochs)
    return keras_tuner.Hyperband(hypermodel, max_epochs=max_epochs, **options)


def search_branches(
    train_data,
    val_data,
    directory,
    kinds=("dr",),
    tuner: str = "random",
    max_trials: int = 10,
    epochs: int = 5,
    steps_per_epoch: int = 100,
    augment: bool = True,
    seed: int = 0,
    verbose=1,
    tuner_options=None,
    distribute: bool = False,
    **space,
) -> dict:
    """Searches branch count and capsule size, and reports the trials.

    One search per network kind, each in `directory/<kind>` (with
    `parallel=False`, `directory/<kind>_nonparallel`). Training draws the
    paper's batches, one image per class (`kp.data.OnePerClassBatches`),
    `steps_per_epoch` per epoch; every epoch is validated on all of
    `val_data`, and a trial scores its best validation WAcc. Running the
    same call again continues the searches (see `make_tuner`); when they
    are complete it only rewrites the report. Under KerasTuner's
    distributed mode (one kind per search), the chief serves the search and
    writes the report, and the workers run the trials (see
    `docs/tuning.md`).

    Args:
        train_data: Training `kp.data.ImageSet`.
        val_data: Validation `ImageSet`, same classes.
        directory: Folder of the searches and the report.
        kinds: Network kinds to search, from `"dr"` and `"em"`.
        tuner: `"random"`, `"bayesian"` or `"hyperband"`.
        max_trials: Trials per kind (random and Bayesian searches).
        epochs: Epochs per trial (Hyperband: the most epochs of a model).
        steps_per_epoch: Training iterations per epoch.
        augment: Whether to flip and rotate training images.
        seed: Seed of the search, the sampling and the augmentation.
        verbose: `Model.fit` verbosity.
        tuner_options: More arguments of the tuners.
        distribute: Whether every trial builds and trains its model inside
            `kp.training.data_parallel()` (every GPU of the process, else
            every CPU device), with `replica_batch_multiple` images per
            class; `val_wacc` then comes from
            `kp.training.ShardedPredictor` over all of `val_data`. Works in
            KerasTuner's chief/worker mode too: each worker runs its trials
            on its own devices (one process per worker).
        **space: Arguments of `ParallelCapsHyperModel` (`branches`,
            `capsule_sizes`, `capsule_layers`, `routing_iterations`,
            `parallel`, `learning_rate`, `jit_compile`, ...).

    Returns:
        A dict: `tuners` (by kind), and unless this process is a worker,
        `rows` (`trials_table`), `csv` (`trials.csv`) and `plot`
        (`branches.png`) in `directory`.

    Example:

        >>> data = kp.data.synthetic_cells(image_size=64)  # doctest: +SKIP
        >>> folds = kp.data.stratified_folds(data.labels)  # doctest: +SKIP
        >>> train, val = kp.data.fold_split(folds, 0)  # doctest: +SKIP
        >>> result = search_branches(
        ...     data.subset(train), data.subset(val), "runs/tune", kinds=("dr", "em"),
        ...     max_trials=20, branches=(1, 8), capsule_layers=(2, 3),
        ... )  # doctest: +SKIP
        >>> result["csv"], result["plot"]  # doctest: +SKIP
        (PosixPath('runs/tune/trials.csv'), PosixPath('runs/tune/branches.png'))
    """
    if isinstance(kinds, str):
        kinds = (kinds,)
    if not kinds:
        raise ValueError(
            f"`kinds` must name at least one of {KINDS}. Received: kinds={kinds!r}"
        )
    for kind in kinds:
        check_choice("kinds", kind, KINDS)
    if "KERASTUNER_ORACLE_IP" in os.environ and len(kinds) > 1:
        # Workers would ask the first search's oracle, still serving while
        # the chief winds it down, for the second search's trials.
        raise ValueError(
            "A distributed search (KERASTUNER_ORACLE_IP is set) takes one kind: "
            f"run one chief/worker search per kind. Received: kinds={kinds!r}"
        )
    if val_data.num_classes != train_data.num_classes:
        raise ValueError(
            "`train_data` and `val_data` must have the same classes. Received "
            f"{train_data.class_names} and {val_data.class_names}."
        )
    directory = Path(directory)
    input_shape = tuple(train_data.images([0]).shape[1:])
    with data_parallel() if distribute else contextlib.nullcontext() as devices:
        fit, images_per_class = _fit_arguments(train_data, val_data, devices)
        batches = OnePerClassBatches(
            train_data, steps_per_epoch, augment, seed, images_per_class
        )
        tuners = {}
        for kind in kinds:
            hypermodel = ParallelCapsHyperModel(
                kind, input_shape, train_data.num_classes, **space
            )
            project = kind if hypermodel.parallel else f"{kind}_nonparallel"
            tuners[kind] = make_tuner(
                hypermodel,
                directory,
                project,
                tuner=tuner,
                max_trials=max_trials,
                max_epochs=epochs,
                seed=seed,
                **(tuner_options or {}),
            )
            tuners[kind].search(batches, epochs=epochs, verbose=verbose, **fit)
    if is_worker():
        return {"tuners": tuners}
    rows = trials_table(list(tuners.values()))
    return {
        "tuners": tuners,
        "rows": rows,
        "csv": write_trials_csv(rows, directory / "trials.csv"),
        "plot": plot_branch_search(rows, directory / "branches.png"),
    }


def _fit_arguments(train_data, val_data, devices):
    """`fit`'s validation arguments and the images per class of a batch."""
    fit = {"shuffle": False}  # the batches are shuffled (see `kp.training.train`)
    if devices is None:
        images_per_class = 1
        fit["validation_data"] = ShuffledBatches(val_data, 32, shuffle=False)
    else:
        # Validation batches would not split evenly across the devices: the
        # validation runs over all images in a callback, before KerasTuner's
        # own callbacks read `val_wacc`.
        images_per_class = replica_batch_multiple(
            train_data.num_classes, replica_count(devices)
        )
        fit["callbacks"] = [ShardedValidation(val_data)]
    return fit, images_per_class
