"""Held-out accuracy of the last weights against their moving average, on real cells.

One training run (plain `fit` on the paper's one-image-per-class batches, the
builder's Nadam with Keras's `use_ema`, or `--ema-momentum`); every
`--every` iterations the held-out fold is predicted four ways from the same
run: the last weights, the averaged weights, and each after
`kp.training.recalibrate_batch_norm` (exact BatchNormalization statistics);
the run's own weights and statistics are put back before training goes on.
The figures of docs/concepts.md, "Averaged weights", come from

    KERAS_BACKEND=tensorflow python benchmarks/weight_averaging.py \\
        --image-size 32 --iterations 2000 --every 250 --model pdr3 \\
        --ema-momentum 0.99
    KERAS_BACKEND=tensorflow python benchmarks/weight_averaging.py \\
        --image-size 32 --iterations 2000 --every 250 --model cnn \\
        --ema-momentum 0.99

`--data` is a class-folder dataset (default: the shared pbc_matek_dev, found
through `$PARCAPS_DATA`); fold 0 of 5 stratified folds is held out.
"""

import argparse
import json
import sys
import time
from pathlib import Path

import keras
import numpy as np

import keras_parcaps as kp

sys.path.insert(0, str(Path(__file__).resolve().parent))
from model_comparison import build_cnn  # noqa: E402


def _build(name, image_size, num_classes):
    shape = (image_size, image_size, 3)
    if name == "pdr3":
        return kp.models.build_parallel_dr(
            input_shape=shape, num_classes=num_classes, n_branches=4, capsule_layers=3
        )
    # The plain CNN keeps Keras's defaults but gets the same optimizer.
    return kp.models.compile_model(build_cnn(shape, num_classes))


class _Probe(keras.callbacks.Callback):
    """Predicts the held-out images four ways at the end of every epoch."""

    def __init__(self, images, labels, batches, name, every):
        super().__init__()
        self.images, self.labels, self.batches = images, labels, batches
        self.name, self.every = name, every
        self.start = time.time()
        self.rows = []

    def _accuracy(self):
        predicted = self.model.predict(self.images, verbose=0).argmax(-1)
        return round(float(np.mean(predicted == self.labels)), 3), len(set(predicted))

    def _recalibrated_accuracy(self, statistics):
        kp.training.recalibrate_batch_norm(self.model, self.batches, num_batches=32)
        result = self._accuracy()
        for layer, values in zip(kp.training.batch_norm_layers(self.model), statistics):
            layer.set_weights(values)
        return result

    def on_epoch_end(self, epoch, logs=None):
        statistics = [
            layer.get_weights() for layer in kp.training.batch_norm_layers(self.model)
        ]
        row = {"iteration": (epoch + 1) * self.every, "loss": float(logs["loss"])}
        row["last"] = self._accuracy()
        row["last, exact statistics"] = self._recalibrated_accuracy(statistics)
        with kp.training.averaged_weights(self.model):
            row["averaged"] = self._accuracy()
            row["averaged, exact statistics"] = self._recalibrated_accuracy(statistics)
        row["seconds"] = round(time.time() - self.start)
        self.rows.append(row)
        print(self.name, json.dumps(row), flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=None)
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--iterations", type=int, default=2000)
    parser.add_argument("--every", type=int, default=250)
    parser.add_argument("--model", choices=["pdr3", "cnn"], default="pdr3")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--ema-momentum",
        type=float,
        default=None,
        help="momentum of the average (default: the builders' EMA_MOMENTUM)",
    )
    args = parser.parse_args()

    source = args.data or kp.data.data_dir("pbc_matek_dev")
    data = kp.data.load_class_folders(source, image_size=args.image_size).preload()
    folds = kp.data.stratified_folds(data.labels, 5, seed=0)
    train_idx, test_idx = kp.data.fold_split(folds, 0)
    train, test = data.subset(train_idx), data.subset(test_idx)
    keras.utils.set_random_seed(args.seed)
    model = _build(args.model, args.image_size, data.num_classes)
    if args.ema_momentum is not None:
        optimizer = keras.optimizers.Nadam(
            1e-3, use_ema=True, ema_momentum=args.ema_momentum
        )
        kp.models.compile_model(model, optimizer=optimizer)
    batches = kp.data.OnePerClassBatches(train, steps_per_epoch=args.every)
    probe = _Probe(
        kp.data.to_model_input(test.images()),
        test.labels,
        batches,
        args.model,
        args.every,
    )
    model.fit(
        batches, epochs=args.iterations // args.every, verbose=0, callbacks=[probe]
    )


if __name__ == "__main__":
    main()
