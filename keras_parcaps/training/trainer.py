"""Training with iteration epochs, per-epoch checkpoints and automatic resume."""

import hashlib
import math
import shutil
import tempfile
import warnings
from pathlib import Path

import keras
import numpy as np

from keras_parcaps._checks import check_positive_int
from keras_parcaps.callbacks.precise_batch_norm import PreciseBatchNorm
from keras_parcaps.data.sampling import OnePerClassBatches, ShuffledBatches
from keras_parcaps.models.compiling import compile_model
from keras_parcaps.training import distribution_backend, saving
from keras_parcaps.training.callbacks import training_callbacks
from keras_parcaps.training.distributed_callbacks import (
    ShardedValidation,
    recalibrate_local_copy,
)
from keras_parcaps.training.run_folder import RunFolder


def compile_for_training(model, num_classes: int, learning_rate: float = 1e-3):
    """Recompiles `model` with Nadam, its own loss, and Acc and WAcc metrics.

    The paper trains every network with Nadam at 1e-3 and the loss of its
    kind (margin, spread or cross-entropy); the builders already compile
    with that loss, which is kept. `kp.models.compile_model` with its
    `"auto"` defaults, for a model that must already have a loss.

    Args:
        model: A compiled Keras model.
        num_classes: Number of classes, for `WeightedAccuracy`.
        learning_rate: Nadam learning rate. Default 1e-3.

    Returns:
        `model`, recompiled.

    Raises:
        ValueError: when `model` was never compiled (it has no loss).

    Example:

        >>> model = keras.Sequential(
        ...     [keras.Input((3,)), keras.layers.Dense(2, activation="softmax")])
        >>> model.compile(optimizer="sgd", loss="categorical_crossentropy")
        >>> model = compile_for_training(model, num_classes=2)
        >>> isinstance(model.optimizer, keras.optimizers.Nadam), model.loss
        (True, 'categorical_crossentropy')
        >>> compile_for_training(keras.Sequential([keras.Input((3,))]), 2)
        Traceback (most recent call last):
            ...
        ValueError: The model has no loss: compile it first ...
    """
    if getattr(model, "loss", None) is None:
        raise ValueError(
            "The model has no loss: compile it first (the kp.models builders "
            "return compiled models)."
        )
    return compile_model(model, learning_rate=learning_rate, num_classes=num_classes)


def _training_batches(
    data, steps_per_epoch, batch_size, augment, seed, images_per_class, **shard
):
    if batch_size is None:
        return OnePerClassBatches(
            data, steps_per_epoch, augment, seed, images_per_class, **shard
        )
    return ShuffledBatches(
        data, batch_size, steps_per_epoch, augment=augment, seed=seed, **shard
    )


def _digest(*parts) -> str:
    sha = hashlib.sha1()
    for part in parts:
        sha.update(part if isinstance(part, bytes) else str(part).encode())
    return sha.hexdigest()[:16]


def _data_digest(data) -> str:
    """File names and labels; the pixels of a set built from arrays."""
    paths = data.paths
    if paths and paths[0].startswith("<image "):
        return _digest(
            np.ascontiguousarray(data.images()).tobytes(), data.labels.tobytes()
        )
    names = [path.replace("\\", "/").rsplit("/", 2)[-2:] for path in paths]
    return _digest(names, data.labels.tobytes())


def _model_digest(model) -> str:
    """The shape and dtype of every weight, and the loss."""
    weights = [(tuple(w.shape), str(w.dtype)) for w in model.weights]
    return _digest(weights, type(getattr(model, "loss", None)).__name__)


def data_fingerprint(data) -> dict:
    """The fingerprint entries of a run's training data.

    The class names, the image size, the number of images and a digest of
    their file names (the last folder and the file) and labels, or of their
    pixels for a set built from arrays. Moving the dataset keeps them.
    """
    return {
        "classes": list(data.class_names),
        "image_size": list(data.image_size or ()),
        "train_images": len(data),
        "data_digest": _data_digest(data),
    }


def _fingerprint(model, data, **settings) -> dict:
    return {**data_fingerprint(data), "model_digest": _model_digest(model), **settings}


def _load_finished(model, run, verbose) -> bool:
    """Loads a finished run's `model.keras` into `model`; `False` if it fails.

    With the optimizer state, so `model` is the run's final model in all.
    """
    if model.optimizer is not None and not model.optimizer.built:
        model.optimizer.build(model.trainable_variables)
    try:
        model.load_weights(run.model_path)
    except Exception as error:  # Damaged file: finish the run again.
        warnings.warn(
            f"Cannot read {run.model_path} ({error}); saving it again from the "
            "last checkpoint.",
            stacklevel=3,
        )
        return False
    if verbose:
        print(
            f"{run.path} holds a finished run of {run.finished_epochs} "
            "epoch(s): nothing to train."
        )
    return True


def _resume(model, run, verbose) -> int:
    """Every process restores the newest checkpoint that loads; the chief trims the log.

    All processes read the same folder at the same time (loading a
    distributed variable is a collective on JAX), and check that they
    restored the same epoch.
    """
    epoch = run.restore(model)
    distribution_backend.check_same("the epoch to resume after", epoch)
    if distribution_backend.is_chief():
        run.trim_log(epoch)
    if epoch and verbose:
        print(
            f"Resuming {run.path} after epoch {epoch} "
            f"({run.checkpoint_path(epoch).name})."
        )
    return epoch


def train(
    model,
    train_data,
    out_dir,
    val_data=None,
    epochs: int = 10,
    steps_per_epoch: int = 500,
    batch_size=None,
    augment: bool = True,
    learning_rate: float = 1e-3,
    recompile: bool = True,
    seed: int = 0,
    verbose="auto",
    callbacks=None,
    recalibrate_bn: bool = False,
    images_per_class: int = 1,
    overwrite: bool = False,
    fingerprint=None,
):
    """Trains `model` for `epochs` epochs of `steps_per_epoch` iterations.

    The paper's set-up: an epoch is a fixed number of iterations (500), the
    batches hold one image per class (`batch_size=None`) with flips and
    rotations, Nadam at 1e-3.

    `out_dir` is a `kp.training.RunFolder`: locked while training, with the
    run's fingerprint in `run.json` (classes, image size, the data's file
    names and labels, the model's weight shapes and loss, seed, learning
    rate, batch schedule, and the `fingerprint` entries given). After every
    epoch the weights and optimizer state go to
    `out_dir/checkpoints/epoch_NNN.weights.h5` and the metrics are appended
    to `out_dir/log.csv`; every file is written atomically, so a kill at any
    moment loses at most the unfinished epoch. Calling `train` again with
    the same `out_dir` and fingerprint resumes after the newest checkpoint
    that loads (a larger `epochs` continues a finished run); a finished run
    is loaded into `model` and not trained again. Another fingerprint is
    refused with a `ValueError` naming the fields that differ, unless
    `overwrite=True`. The final model is saved as `out_dir/model.keras`
    with its class names and image size (`kp.training.saving`). Training
    stops with a `FloatingPointError` at the first non-finite loss. The
    callbacks are those of `kp.training.training_callbacks`.

    Inside `kp.training.data_parallel()`, over several devices or several
    processes (see `kp.training.initialize_processes`), each process draws
    its own shard of every global batch, gradients are averaged over all
    replicas, and per-epoch validation covers all of `val_data` once
    (`kp.training.ShardedPredictor`). Only the chief process (process 0)
    takes the lock and writes into `out_dir`, which every process must see:
    the chief decides whether to resume and from which checkpoint, and all
    processes load that checkpoint, so they restart from the same state.

    Args:
        model: A built, compiled Keras model mapping `float32` images in
            `[0, 1]` to class scores.
        train_data: A `kp.data.ImageSet`.
        out_dir: Folder for checkpoints, log and model.
        val_data: Optional `ImageSet` evaluated after every epoch.
        epochs: Number of epochs.
        steps_per_epoch: Iterations per epoch. Default 500.
        batch_size: `None` for one image per class per batch (the paper);
            an int for ordinary shuffled batches.
        augment: Whether to flip and rotate the training images.
        learning_rate: Nadam learning rate when `recompile`.
        recompile: Whether to recompile with Nadam, the model's own loss and
            the Acc and WAcc metrics (`compile_for_training`).
        seed: Seed of sampling and augmentation.
        verbose: `Model.fit` verbosity (1 shows Keras progress bars).
        callbacks: Extra Keras callbacks.
        recalibrate_bn: Whether to set the BatchNormalization statistics to
            precise averages over 32 training batches also before every
            validation (`recalibrate_batch_norm`), for the weights that
            validation scores. Training always ends with such statistics
            (`kp.callbacks.PreciseBatchNorm`), as the `fit` of the
            builders' `kp.models.ImageClassifier` does.
        images_per_class: Images of each class in a one-per-class batch
            (`batch_size=None`); see `kp.training.replica_batch_multiple`.
        overwrite: Whether to delete what `out_dir` holds and start over.
        fingerprint: Optional more fingerprint entries (JSON values), such
            as the data source and builder options of a command line.

    Returns:
        The `keras.callbacks.History` of this call (only the epochs it ran).

    Example:

        >>> # A tiny model for 2 epochs of 2 iterations; in real use the model
        >>> # is kp.models.build_parallel_dr(...) and the run 700 epochs of 500.
        >>> import os, tempfile
        >>> from keras_parcaps.data import synthetic_cells
        >>> data = synthetic_cells(counts=2, classes=["LYT", "EOS"], image_size=8)
        >>> model = keras.Sequential([
        ...     keras.Input((8, 8, 3)),
        ...     keras.layers.GlobalAveragePooling2D(),
        ...     keras.layers.Dense(2, activation="softmax"),
        ... ])
        >>> model.compile(loss="categorical_crossentropy")
        >>> tmp = tempfile.TemporaryDirectory()
        >>> history = train(model, data, tmp.name, epochs=2, steps_per_epoch=2,
        ...                 verbose=0)
        >>> sorted(history.history), len(history.history["loss"])
        (['acc', 'loss', 'wacc'], 2)
        >>> sorted(os.listdir(tmp.name))
        ['checkpoints', 'log.csv', 'model.keras', 'run.json']
        >>> sorted(os.listdir(os.path.join(tmp.name, "checkpoints")))
        ['epoch_001.weights.h5', 'epoch_002.weights.h5']
        >>> # Called again, the finished run is loaded: nothing is left to run.
        >>> train(model, data, tmp.name, epochs=2, steps_per_epoch=2,
        ...       verbose=0).history
        {}
        >>> # Another seed is another run: refused, and nothing changes.
        >>> train(model, data, tmp.name, epochs=2, steps_per_epoch=2, seed=1,
        ...       verbose=0)
        Traceback (most recent call last):
            ...
        ValueError: ... holds another run: seed 0 there, 1 now. ...
    """
    check_positive_int("epochs", epochs)
    check_positive_int("steps_per_epoch", steps_per_epoch)
    _check_learning_rate(learning_rate)
    schedule = dict(
        steps_per_epoch=steps_per_epoch,
        batch_size=batch_size,
        augment=augment,
        seed=seed,
        images_per_class=images_per_class,
    )
    batches, full_batches = _process_batches(train_data, **schedule)
    settings = {**schedule, "learning_rate": learning_rate}
    if batch_size is not None:
        settings["images_per_class"] = None  # not a setting of shuffled batches
    fingerprint = {**_fingerprint(model, train_data, **settings), **(fingerprint or {})}
    run = RunFolder(out_dir)
    if not distribution_backend.is_chief():
        verbose = 0
    # The chief alone locks the folder and writes into it; `on_chief` tells
    # the others whether it could. A refused job touches no scratch folder.
    distribution_backend.on_chief(run.lock)
    files = run
    try:
        files = _process_files(run)
        distribution_backend.on_chief(
            lambda: run.start(
                fingerprint,
                overwrite,
                epochs=epochs,
                val_images=None if val_data is None else len(val_data),
                processes=distribution_backend.process_count(),
            )
        )
        if recompile:
            compile_for_training(model, train_data.num_classes, learning_rate)
        # The chief wrote `run.json` before any process reads the folder.
        if run.finished_epochs >= epochs:
            finished = _load_finished(model, run, verbose)
            if distribution_backend.check_same("the finished run loaded", finished):
                return keras.callbacks.History()
        initial_epoch = _resume(model, run, verbose)
        history = _fit(
            model,
            batches,
            full_batches,
            val_data,
            files,
            epochs=epochs,
            initial_epoch=initial_epoch,
            recalibrate_bn=recalibrate_bn,
            callbacks=callbacks,
            verbose=verbose,
        )
        saving.save_model(
            model, files.model_path, train_data.class_names, train_data.image_size
        )
        if distribution_backend.is_chief():
            run.finish(epochs)
        # Every process returns once `model.keras` is written.
        distribution_backend.barrier()
    finally:
        run.unlock()  # nothing to do where the lock is not held
        if files is not run:
            shutil.rmtree(files.path, ignore_errors=True)
    return history


class _LocalPreciseBatchNorm(PreciseBatchNorm):
    """`PreciseBatchNorm` under data parallelism: on this process's copy, and
    called by `_fit` once `distributed_fit` has undone its settings (at the
    end of `fit` the BatchNormalization layers still synchronize their
    statistics over the replicas)."""

    def on_train_end(self, logs=None):
        pass

    def recalibrate(self):
        local = distribution_backend.local_model(self.model)
        recalibrate_local_copy(self.model, local, self.batches, self.num_batches)


def _check_learning_rate(learning_rate):
    if isinstance(learning_rate, bool) or not (
        isinstance(learning_rate, (int, float))
        and math.isfinite(learning_rate)
        and learning_rate > 0
    ):
        raise ValueError(
            "`learning_rate` must be a positive finite number. "
            f"Received: learning_rate={learning_rate!r}"
        )


def _process_batches(data, **schedule):
    """This process's shard of every global batch, and the global batches.

    The global batches are for BatchNormalization recalibration; with one
    process they are the same sequence.
    """
    count = distribution_backend.process_count()
    batches = _training_batches(
        data,
        **schedule,
        num_shards=count,
        shard_index=distribution_backend.process_index(),
    )
    return batches, batches if count == 1 else _training_batches(data, **schedule)


def _process_files(run):
    """The folder this process writes into: `run` on the chief, else scratch.

    Every process runs the same saving code: on JAX, saving distributed
    variables takes part in collectives (a save on the chief alone left the
    processes' collectives out of step: gloo "collective mismatch"). The
    others save into a scratch folder that `train` deletes at the end. Its
    name comes from the run's folder and the process, so a process killed
    before that leaves one folder behind, which its resumed run clears.
    """
    if distribution_backend.is_chief():
        return run
    index = distribution_backend.process_index()
    key = hashlib.sha1(str(run.path.resolve()).encode()).hexdigest()[:12]
    scratch = Path(tempfile.gettempdir()) / f"parcaps_process{index}_{key}"
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir()
    return RunFolder(scratch)


def _fit(
    model,
    batches,
    full_batches,
    val_data,
    files,
    epochs,
    initial_epoch,
    recalibrate_bn,
    callbacks,
    verbose,
):
    """`model.fit` from `initial_epoch`, with the run's callbacks and validation.

    Validation runs through `fit` outside data parallelism, through
    `ShardedValidation` (every replica scoring its share) inside it. `fit`
    ends with exact BatchNormalization statistics (`PreciseBatchNorm`); with
    `recalibrate_bn` they are also set before every validation: on this
    process's `batches`, or on the global `full_batches` under data
    parallelism.
    """
    distributed = distribution_backend.in_data_parallel()
    validation = sharded_validation = None
    if distributed:
        precise = _LocalPreciseBatchNorm(full_batches)
        if val_data is not None:
            sharded_validation = ShardedValidation(
                val_data, full_batches if recalibrate_bn else None
            )
    else:
        precise = PreciseBatchNorm(
            batches, before_validation=recalibrate_bn and val_data is not None
        )
        if val_data is not None:
            validation = ShuffledBatches(val_data, 32, shuffle=False)
    extra = [precise, *(callbacks or [])]
    fit_data = distribution_backend.fit_input(batches, initial_epoch)
    with distribution_backend.distributed_fit(model, batches):
        history = model.fit(
            fit_data,
            epochs=epochs,
            initial_epoch=initial_epoch,
            # A `PyDataset` knows its length; a stream (TensorFlow, several
            # workers) does not.
            steps_per_epoch=None if fit_data is batches else len(batches),
            # The batches are shuffled already (a function of seed, epoch and
            # index); Keras would also shuffle their order with its own random
            # state, so a resumed run would draw another order than an
            # uninterrupted one.
            shuffle=False,
            validation_data=validation,
            callbacks=training_callbacks(
                model, batches, files, extra, validation=sharded_validation
            ),
            verbose=verbose,
        )
    if distributed:
        # The last epoch's batches, which `PreciseBatchNorm` reads outside
        # data parallelism (the run's callbacks move `batches` from epoch to
        # epoch, not `full_batches`): one process equals several.
        full_batches.set_epoch(epochs - 1)
        precise.recalibrate()
    return history
