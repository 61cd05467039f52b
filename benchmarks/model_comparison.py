"""The paper's networks against ResNeXt-50 and a plain CNN on real leukocytes.

Each network trains the standard Keras way, as a user would: the model as its
builder returns it (compiled with its own loss and Nadam 1e-3 keeping a
moving average of the weights; the plain CNN both with plain Nadam and with
the average), plain `model.fit` on `kp.data.OnePerClassBatches` (one image per
class, flips and rotations) of folds 1-4 of the 5 stratified folds, then plain
`model.predict` on the held-out fold (no trainer, no call between the two:
the builders' `kp.models.ImageClassifier.fit` ends with exact
BatchNormalization statistics by itself, and what `predict` gave with the
moving statistics at the end of `fit` is kept as `moving_statistics`, the
column "moving statistics"). One `fit` call stops when its budget of training seconds
(counted from the end of the first, compiling step; held-out evaluations do
not count) or of iterations is spent. Every `--eval-every` iterations a
callback records the held-out Acc of the weights `predict` would see after
`fit` (`kp.training.averaged_weights`), with the moving statistics, for the
learning curves; at the end
Acc, WAcc, Agr (8 orientations), Acc and WAcc of the scores averaged over the
8 orientations (test-time augmentation, not the paper's protocol) and the
number of classes predicted.

Each (network, fold) runs in its own process, `--jobs` at a time. Results
go to `--out` (one JSON per run, `results.json`, `results.md` and
`curves.png`).

    KERAS_BACKEND=tensorflow python benchmarks/model_comparison.py \\
        --budget 480 --folds 0 1 --out runs/comparison

`--data` takes a class-folder dataset (default: the shared pbc_matek_dev) or
an `.npz` written by `--save-npz` (images, labels, classes: for machines
without the shared data).
"""

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

MODELS = {
    "resnext50": ("ResNeXt-50", "resnext50", {}),
    "cnn": ("plain CNN (4 conv layers)", "cnn", {}),
    "cnn_ema": (
        "plain CNN, averaged weights (the builders' optimizer)",
        "cnn",
        {"optimizer": "auto"},
    ),
    "dr_2l": ("DR-CapsNet, 2 layers", "dr", {"capsule_layers": 2}),
    "dr_3l": ("DR-CapsNet, 3 layers (2 Mid-Caps)", "dr", {"capsule_layers": 3}),
    "pdr_2l_4b": (
        "parallel DR, 2 layers, 4 branches",
        "parallel_dr",
        {"capsule_layers": 2, "n_branches": 4},
    ),
    "pdr_3l_4b": (
        "parallel DR, 3 layers, 4 branches",
        "parallel_dr",
        {"capsule_layers": 3, "n_branches": 4},
    ),
    "pdr_3l_4b_shared": (
        "parallel DR, 3 layers, 4 branches, shared Mid-Cap weights",
        "parallel_dr",
        {"capsule_layers": 3, "n_branches": 4, "share_weights": True},
    ),
    "pdr_3l_4b_pooled": (
        "parallel DR, 3 layers, 4 branches, the paper's layers pooling",
        "parallel_dr",
        {"capsule_layers": 3, "n_branches": 4, "backbone": "pooled"},
    ),
    "pdr_3l_4b_pooled_shared": (
        "parallel DR, 3 layers, 4 branches, the paper's layers pooling, "
        "shared Mid-Cap weights",
        "parallel_dr",
        {
            "capsule_layers": 3,
            "n_branches": 4,
            "backbone": "pooled",
            "share_weights": True,
        },
    ),
    "pdr_3l_4b_plain": (
        "parallel DR, 3 layers, 4 branches, plain CNN backbone",
        "parallel_dr",
        {"capsule_layers": 3, "n_branches": 4, "backbone": "plain"},
    ),
    "pdr_3l_4b_plain_shared": (
        "parallel DR, 3 layers, 4 branches, plain CNN backbone, shared Mid-Cap weights",
        "parallel_dr",
        {
            "capsule_layers": 3,
            "n_branches": 4,
            "backbone": "plain",
            "share_weights": True,
        },
    ),
    "pdr_2l_12b": (
        "parallel DR, 2 layers, 12 branches",
        "parallel_dr",
        {"capsule_layers": 2, "n_branches": 12},
    ),
    "pdr_3l_12b": (
        "parallel DR, 3 layers, 12 branches",
        "parallel_dr",
        {"capsule_layers": 3, "n_branches": 12},
    ),
    "pdr_3l_12b_pooled": (
        "parallel DR, 3 layers, 12 branches, the paper's layers pooling",
        "parallel_dr",
        {"capsule_layers": 3, "n_branches": 12, "backbone": "pooled"},
    ),
    "pdr_3l_12b_plain": (
        "parallel DR, 3 layers, 12 branches, plain CNN backbone",
        "parallel_dr",
        {"capsule_layers": 3, "n_branches": 12, "backbone": "plain"},
    ),
    "em_3l": ("EM-CapsNet, 3 layers", "em", {"capsule_layers": 3}),
    "em_3l_pooled": (
        "EM-CapsNet, 3 layers, the paper's layers pooling",
        "em",
        {"capsule_layers": 3, "backbone": "pooled"},
    ),
    "em_3l_plain": (
        "EM-CapsNet, 3 layers, plain CNN backbone",
        "em",
        {"capsule_layers": 3, "backbone": "plain"},
    ),
    "pem_3l_4b": (
        "parallel EM, 3 layers, 4 branches",
        "parallel_em",
        {"capsule_layers": 3, "n_branches": 4},
    ),
}


def build_cnn(input_shape, num_classes, optimizer="nadam"):
    """A plain CNN with Keras defaults: 4 x (conv 3x3, BN, ReLU, pool).

    `optimizer="nadam"` is a user's plain Keras model (Nadam 1e-3);
    `"auto"` makes it what the builders make, a `kp.models.ImageClassifier`
    (whose `fit` ends with exact BatchNormalization statistics) compiled with
    their optimizer (`kp.models.compile_model`: Nadam 1e-3 keeping a moving
    average of the weights), so that the capsule networks and the CNN are
    compared on equal terms.
    """
    import keras

    from keras_parcaps.models import ImageClassifier, compile_model

    inputs = keras.Input(input_shape)
    x = inputs
    for filters in (32, 64, 128, 256):
        x = keras.layers.Conv2D(filters, 3, padding="same", use_bias=False)(x)
        x = keras.layers.BatchNormalization()(x)
        x = keras.layers.ReLU()(x)
        x = keras.layers.MaxPooling2D(2)(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(num_classes, activation="softmax")(x)
    model_class = ImageClassifier if optimizer == "auto" else keras.Model
    model = model_class(inputs, outputs, name="plain_cnn")
    if optimizer == "nadam":
        optimizer = keras.optimizers.Nadam(1e-3)
    return compile_model(model, optimizer, loss="categorical_crossentropy")


def decay_to_zero(model, iterations):
    """Makes `model`'s learning rate fall from its value to 0 over `iterations`.

    The model's own optimizer (and its moving average of the weights) stays;
    the schedule becomes its learning rate, set before the first step
    builds it (`--cosine-decay`).
    """
    import keras

    model.optimizer.learning_rate = keras.optimizers.schedules.CosineDecay(
        float(model.optimizer.learning_rate), iterations
    )


def load(path, image_size):
    from keras_parcaps.data import ImageSet, data_dir, load_class_folders

    if path is None:
        path = data_dir("pbc_matek_dev")
        if path is None:
            raise SystemExit(
                "pbc_matek_dev not found: pass --data or set $PARCAPS_DATA"
            )
    if str(path).endswith(".npz"):
        arrays = np.load(path)
        data = ImageSet(
            None, arrays["labels"], list(arrays["classes"]), images=arrays["images"]
        )
        if data.image_size != (image_size, image_size):
            raise SystemExit(
                f"{path} holds {data.image_size} images, not {image_size}x{image_size}"
            )
        return data
    return load_class_folders(path, image_size=image_size).preload()


def run_one(args):
    """Trains and scores one network on one fold; writes its JSON."""
    import keras

    from keras_parcaps.data import OnePerClassBatches, fold_split, stratified_folds
    from keras_parcaps.evaluation import evaluate_model
    from keras_parcaps.models import ImageClassifier
    from keras_parcaps.training import averaged_weights, get_builder

    label, builder, options = MODELS[args.model]
    data = load(args.data, args.image_size)
    train_idx, test_idx = fold_split(
        stratified_folds(data.labels, 5, seed=0), args.fold
    )
    train, test = data.subset(train_idx), data.subset(test_idx)
    seed = args.fold if args.seed is None else args.seed
    keras.utils.set_random_seed(seed)
    shape = (args.image_size, args.image_size, 3)
    if builder == "cnn":
        model = build_cnn(shape, data.num_classes, **options)
    else:
        model = get_builder(builder, **options)(shape, data.num_classes)
    # Without an iteration count (the default 10**9) the decay runs over the
    # budget's seconds instead, the same curve with seconds for steps.
    over_seconds = None
    if args.cosine_decay and args.iterations < 10**9:
        decay_to_zero(model, args.iterations)
    elif args.cosine_decay:
        over_seconds = keras.optimizers.schedules.CosineDecay(
            float(model.optimizer.learning_rate), args.budget
        )
    batches = OnePerClassBatches(
        train,
        steps_per_epoch=args.eval_every,
        seed=args.fold,
        images_per_class=args.images_per_class,
    )

    clock = {"train": 0.0, "steps": 0, "first": None}

    class Budget(keras.callbacks.Callback):
        def on_train_batch_begin(self, batch, logs=None):
            if over_seconds is not None:
                rate = keras.ops.convert_to_numpy(over_seconds(clock["train"]))
                self.model.optimizer.learning_rate = float(rate)
            self.begin = time.perf_counter()

        def on_train_batch_end(self, batch, logs=None):
            seconds = time.perf_counter() - self.begin
            clock["steps"] += 1
            if clock["first"] is None:
                clock["first"] = seconds  # the compiling step: not counted
            else:
                clock["train"] += seconds
            if clock["train"] >= args.budget or clock["steps"] >= args.iterations:
                self.model.stop_training = True

    curve, losses = [], []
    partial = Path(args.out) / f"{args.model}_fold{args.fold}.partial"
    test_images = test.images().astype("float32") / 255.0

    class Curve(keras.callbacks.Callback):
        """The held-out Acc every `--eval-every` iterations, of the weights
        `predict` would see after `fit` (the average, where the optimizer
        keeps one), without disturbing training."""

        def on_epoch_end(self, epoch, logs=None):
            losses.append(float(logs["loss"]))
            with averaged_weights(self.model):
                scores = self.model.predict(test_images, batch_size=64, verbose=0)
            accuracy = float(np.mean(scores.argmax(-1) == test.labels))
            curve.append([clock["steps"], accuracy])
            # A run killed by `--timeout` still leaves its curve.
            partial.write_text(json.dumps({"curve": curve, "loss": losses}))

    moving = {}

    class MovingStatistics(keras.callbacks.Callback):
        """Scores the model as `fit` leaves it before a `kp.models.ImageClassifier`
        replaces the moving BatchNormalization statistics by exact ones (its
        callback runs after the caller's)."""

        def on_train_end(self, logs=None):
            report = evaluate_model(self.model, test, batch_size=64)
            moving.update({key: report[key] for key in ("acc", "wacc", "agr")})

    # One `fit`, as a user trains: `Budget` ends it.
    epochs = -(-min(args.iterations, 10**6) // args.eval_every)
    callbacks = [Budget(), Curve()]
    if isinstance(model, ImageClassifier):
        callbacks.append(MovingStatistics())
    model.fit(batches, epochs=epochs, callbacks=callbacks, verbose=0)
    report = evaluate_model(model, test, batch_size=64)
    if not moving:  # a plain model: `fit` keeps the moving statistics
        moving = {key: report[key] for key in ("acc", "wacc", "agr")}
    predicted = np.asarray(report["predictions"])
    averaged = evaluate_model(model, test, batch_size=64, average_orientations=True)
    result = {
        "model": args.model,
        "label": label,
        "fold": args.fold,
        "backend": keras.backend.backend(),
        "image_size": args.image_size,
        "images_per_class": args.images_per_class,
        "seed": seed,
        "cosine_decay": args.cosine_decay,
        "params": model.count_params(),
        "iterations": clock["steps"],
        "train_seconds": clock["train"],
        "compile_seconds": clock["first"],
        "acc": report["acc"],
        "wacc": report["wacc"],
        "agr": report["agr"],
        "moving_statistics": moving,
        "acc_8_views": averaged["acc"],
        "wacc_8_views": averaged["wacc"],
        "classes_predicted": int(len(np.unique(predicted))),
        "num_classes": data.num_classes,
        "majority_acc": float(np.bincount(test.labels).max() / len(test)),
        "curve": curve,
        "loss": losses,
    }
    out = Path(args.out) / f"{args.model}_fold{args.fold}.json"
    out.write_text(json.dumps(result, indent=1))
    partial.unlink(missing_ok=True)
    print(
        json.dumps({k: v for k, v in result.items() if k not in ("curve", "loss")}),
        flush=True,
    )


def summarize(out, results):
    """Writes results.json, results.md and curves.png from the run JSONs."""
    (out / "results.json").write_text(json.dumps(results, indent=1))
    lines = [
        "| network | params | folds | iterations | Acc | WAcc | Agr | "
        "Acc, WAcc (8-view mean) | Acc, WAcc, Agr with moving statistics | "
        "classes predicted |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for key in MODELS:
        runs = [r for r in results if r["model"] == key]
        if not runs:
            continue

        def mean(name, runs=runs):
            return 100 * float(np.mean([r[name] for r in runs]))

        def moving(name, runs=runs):
            values = [r.get("moving_statistics", {}).get(name) for r in runs]
            if None in values:  # a run of an older version of this script
                return "-"
            return f"{100 * float(np.mean(values)):.1f}"

        lines.append(
            f"| {runs[0]['label']} | {runs[0]['params'] / 1e6:.2f}M | "
            f"{len(runs)} | {int(np.mean([r['iterations'] for r in runs]))} | "
            f"{mean('acc'):.1f} | {mean('wacc'):.1f} | {mean('agr'):.1f}% | "
            f"{mean('acc_8_views'):.1f}, {mean('wacc_8_views'):.1f} | "
            f"{moving('acc')}, {moving('wacc')}, {moving('agr')}% | "
            + ", ".join(f"{r['classes_predicted']}/{r['num_classes']}" for r in runs)
            + " |"
        )
    (out / "results.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(8, 5))
    colors = plt.get_cmap("tab20")  # more networks than the default cycle's 10
    for key in MODELS:
        runs = [r for r in results if r["model"] == key]
        for i, r in enumerate(runs):
            steps, acc = zip(*r["curve"]) if r["curve"] else ((), ())
            axis.plot(
                steps,
                acc,
                color=colors(list(MODELS).index(key)),
                label=r["label"] if i == 0 else None,
                linewidth=1,
            )
    axis.axhline(
        results[0]["majority_acc"], color="gray", linestyle=":", label="majority class"
    )
    axis.set_xlabel("iterations")
    axis.set_ylabel("held-out Acc (plain predict)")
    axis.set_ylim(0, 1)
    axis.legend(fontsize=7, loc="lower right")
    figure.tight_layout()
    figure.savefig(out / "curves.png", dpi=120)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--models", nargs="*", default=list(MODELS), choices=list(MODELS)
    )
    parser.add_argument("--folds", nargs="*", type=int, default=[0])
    parser.add_argument(
        "--budget",
        type=float,
        default=480.0,
        help="training seconds per network after compiling",
    )
    parser.add_argument(
        "--iterations",
        type=int,
        default=10**9,
        help="at most this many iterations per network",
    )
    parser.add_argument(
        "--cosine-decay",
        action="store_true",
        help="every network's learning rate falls from 1e-3 to 0 over --iterations "
        "(keras.optimizers.schedules.CosineDecay), or without --iterations along "
        "the same curve over the --budget seconds; the paper keeps it constant",
    )
    parser.add_argument("--eval-every", type=int, default=250)
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument(
        "--images-per-class", type=int, default=1, help="images of each class per batch"
    )
    parser.add_argument(
        "--seed", type=int, default=None, help="weights' seed (default: the fold)"
    )
    parser.add_argument("--data", default=None)
    parser.add_argument(
        "--save-npz",
        default=None,
        help="write the dataset at --image-size to this .npz",
    )
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument(
        "--timeout", type=float, default=None, help="kill a run after this many seconds"
    )
    parser.add_argument("--out", default="runs/model_comparison")
    parser.add_argument("--model", help=argparse.SUPPRESS)
    parser.add_argument("--fold", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.model is not None:
        return run_one(args)
    if args.save_npz:
        data = load(args.data, args.image_size)
        np.savez_compressed(
            args.save_npz,
            images=data.images(),
            labels=data.labels,
            classes=np.array(data.class_names),
        )
        return
    pending = [(m, f) for f in args.folds for m in args.models]
    running = []
    passed = sys.argv[1:]
    while pending or running:
        while pending and len(running) < args.jobs:
            model, fold = pending.pop(0)
            log = open(out / f"{model}_fold{fold}.log", "w")
            process = subprocess.Popen(
                [
                    sys.executable,
                    __file__,
                    *passed,
                    "--model",
                    model,
                    "--fold",
                    str(fold),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=dict(os.environ, PYTHONUNBUFFERED="1"),
            )
            running.append((process, time.monotonic()))
        time.sleep(1)
        for process, start in running:
            if args.timeout and time.monotonic() - start > args.timeout:
                process.kill()
        running = [(p, s) for p, s in running if p.poll() is None]
    results = [json.loads(p.read_text()) for p in sorted(out.glob("*_fold*.json"))]
    if results:
        summarize(out, results)


if __name__ == "__main__":
    main()
