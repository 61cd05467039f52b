"""ResNeXt-50 vs DR vs parallel DR vs EM CapsNets under one CPU time budget.

Each network trains on folds 1-4 of the 5 stratified folds of
../shared/data/pbc_matek_dev (or $PARCAPS_DATA) at 64x64 with the paper's
set-up (one image per class per batch, flips and rotations, Nadam 1e-3, its
own loss) until its wall-clock budget is spent (counted from the end of the
first, compiling step), then
is evaluated on fold 0: Acc, WAcc, Agr. Prints a markdown table.

    KERAS_BACKEND=tensorflow python benchmarks/model_comparison.py --budget 240
"""

import argparse
import tempfile
import time

import keras
import numpy as np

from keras_parcaps.data import (
    data_dir,
    fold_split,
    load_class_folders,
    stratified_folds,
)
from keras_parcaps.evaluation import evaluate_model
from keras_parcaps.training import get_builder, train

MODELS = {
    "ResNeXt-50": ("resnext50", {}),
    "DR-CapsNet (3 layers, 2 Mid-Caps)": ("dr", {"capsule_layers": 3}),
    "parallel DR-CapsNet (2 layers, 4 branches)": (
        "parallel_dr", {"capsule_layers": 2, "n_branches": 4}),
    "parallel DR-CapsNet (3 layers, 4 branches)": (
        "parallel_dr", {"capsule_layers": 3, "n_branches": 4}),
    "EM-CapsNet (2 layers)": ("em", {"capsule_layers": 2}),
}


class TimeBudget(keras.callbacks.Callback):
    """Stops training `seconds` after the first (compiling) step ends."""

    def __init__(self, seconds):
        super().__init__()
        self.seconds = seconds
        self.steps = 0
        self.start = None

    def on_train_batch_end(self, batch, logs=None):
        self.steps += 1
        if self.start is None:
            self.start = time.perf_counter()
        elif time.perf_counter() - self.start > self.seconds:
            self.model.stop_training = True


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=float, default=240.0,
                        help="training seconds per network after compilation")
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--models", nargs="*", default=list(MODELS))
    args = parser.parse_args()
    root = data_dir("pbc_matek_dev")
    if root is None:
        raise SystemExit("pbc_matek_dev not found ($PARCAPS_DATA or ../shared/data)")
    data = load_class_folders(root, image_size=args.image_size).preload()
    folds = stratified_folds(data.labels, 5, seed=0)
    train_idx, test_idx = fold_split(folds, 0)
    test = data.subset(test_idx)
    majority = np.bincount(test.labels).max() / len(test)
    rows = []
    for label in args.models:
        name, options = MODELS[label]
        keras.utils.set_random_seed(0)
        try:
            model = get_builder(name, **options)(
                (args.image_size, args.image_size, 3), data.num_classes)
        except Exception as error:  # a builder missing or refusing the size
            rows.append((label, f"not run: {error}"))
            continue
        budget = TimeBudget(args.budget)
        start = time.perf_counter()
        with tempfile.TemporaryDirectory() as tmp:
            train(model, data.subset(train_idx), tmp, epochs=10_000,
                  steps_per_epoch=10, callbacks=[budget], verbose=0)
        seconds = time.perf_counter() - start  # with compilation and recalibration
        report = evaluate_model(model, test)
        rows.append((label, report, budget.steps, seconds, model.count_params()))
        print(label, report["acc"], report["wacc"], report["agr"], budget.steps,
              flush=True)
    print(f"\n{len(train_idx)} training, {len(test)} test images (fold 0), "
          f"{args.image_size}x{args.image_size}, {keras.backend.backend()}, "
          f"budget {args.budget:.0f} s per network; majority-class Acc "
          f"{100 * majority:.1f}\n")
    print("| network | params | iterations | wall s (all) | Acc | WAcc | Agr |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for row in rows:
        if isinstance(row[1], str):
            print(f"| {row[0]} | {row[1]} | | | | | |")
            continue
        label, report, steps, seconds, params = row
        print(f"| {label} | {params / 1e6:.2f}M | {steps} | {seconds:.0f} | "
              f"{100 * report['acc']:.1f} | {100 * report['wacc']:.1f} | "
              f"{100 * report['agr']:.1f}% |")


if __name__ == "__main__":
    main()
