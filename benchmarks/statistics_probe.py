"""Where a network's held-out swings come from: weights, averaging or statistics.

Trains one network of `benchmarks/model_comparison.py` (plain `fit` on
`OnePerClassBatches`, real cells, 64x64) and every `--every` iterations
scores the held-out fold three ways, without disturbing training:

- `raw_moving`: the training weights with the moving BatchNormalization
  statistics;
- `ema_moving`: the averaged weights `predict` sees after `fit` with the
  moving statistics (what a user gets);
- `ema_precise`: the averaged weights with exact statistics
  (`kp.training.recalibrate_batch_norm` over 64 training batches, then the
  moving statistics put back),

and the median relative gap between moving and exact variances. Options:
`--cosine-decay` (learning rate 1e-3 to 0 over `--iterations`),
`--group-norm G` (every BatchNormalization the builder makes becomes a
`GroupNormalization` of G groups). One JSON line per check; `--out` gets
all of them.

    KERAS_BACKEND=jax python benchmarks/statistics_probe.py \\
        --model pdr_3l_4b_plain_shared --fold 2 --out /tmp/probe.json
"""

import argparse
import json
import time

import keras
import numpy as np
from model_comparison import MODELS, build_cnn, decay_to_zero, load

from keras_parcaps.callbacks.precise_batch_norm import batch_norm_layers
from keras_parcaps.data import OnePerClassBatches, fold_split, stratified_folds
from keras_parcaps.training import averaged_weights, get_builder, recalibrate_batch_norm


def build(args, num_classes):
    _, builder, options = MODELS[args.model]
    shape = (args.image_size, args.image_size, 3)
    if builder == "cnn":
        return build_cnn(shape, num_classes, **options)
    if not args.group_norm:
        return get_builder(builder, **options)(shape, num_classes)
    original = keras.layers.BatchNormalization

    def group_norm(momentum=None, name=None, **kwargs):
        return keras.layers.GroupNormalization(groups=args.group_norm, name=name)

    keras.layers.BatchNormalization = group_norm
    try:
        return get_builder(builder, **options)(shape, num_classes)
    finally:
        keras.layers.BatchNormalization = original


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="pdr_3l_4b_plain_shared", choices=MODELS)
    parser.add_argument("--fold", type=int, default=2)
    parser.add_argument("--iterations", type=int, default=3500)
    parser.add_argument("--every", type=int, default=250)
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--cosine-decay", action="store_true")
    parser.add_argument("--group-norm", type=int, default=0)
    parser.add_argument("--data", default=None)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()

    data = load(args.data, args.image_size)
    train_idx, test_idx = fold_split(
        stratified_folds(data.labels, 5, seed=0), args.fold
    )
    train, test = data.subset(train_idx), data.subset(test_idx)
    keras.utils.set_random_seed(args.fold)
    model = build(args, data.num_classes)
    if args.cosine_decay:
        decay_to_zero(model, args.iterations)
    batches = OnePerClassBatches(train, steps_per_epoch=args.every, seed=args.fold)
    exact = OnePerClassBatches(train, steps_per_epoch=64, seed=123)
    x_test = test.images().astype("float32") / 255.0
    norms = batch_norm_layers(model)
    rows = []

    def accuracy():
        scores = model.predict(x_test, batch_size=64, verbose=0)
        return float(np.mean(scores.argmax(-1) == test.labels))

    class Probe(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            row = {"iteration": (epoch + 1) * args.every, "loss": float(logs["loss"])}
            row["raw_moving"] = accuracy()
            with averaged_weights(self.model):
                row["ema_moving"] = accuracy()
                moving = [
                    [keras.ops.convert_to_numpy(v) for v in n.non_trainable_variables]
                    for n in norms
                ]
                recalibrate_batch_norm(self.model, exact, num_batches=64)
                row["ema_precise"] = accuracy()
                gaps = [
                    float(
                        np.median(
                            np.abs(
                                m[1] / keras.ops.convert_to_numpy(n.moving_variance) - 1
                            )
                        )
                    )
                    for n, m in zip(norms, moving)
                ]
                row["variance_gap"] = float(np.median(gaps)) if gaps else 0.0
                for n, m in zip(norms, moving):
                    for variable, value in zip(n.non_trainable_variables, m):
                        variable.assign(value)
            rows.append(row)
            print(json.dumps(row), flush=True)

    start = time.perf_counter()
    model.fit(
        batches, epochs=args.iterations // args.every, callbacks=[Probe()], verbose=0
    )
    result = {"args": vars(args), "rows": rows, "seconds": time.perf_counter() - start}
    with open(args.out, "w") as file:
        json.dump(result, file, indent=1)


if __name__ == "__main__":
    main()
