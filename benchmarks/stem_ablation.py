"""Which part of the paper's stem holds its DR networks back on small images?

Builds the 3-layer parallel DR network (`build_parallel_dr`, 4 branches) with
one part of the paper's CNN changed, trains it the way a user would (plain
`fit` on one image per class with flips and rotations, folds 1-4 of 5 held
in, the builder's compile), and prints one JSON line: held-out Acc every
`--eval-every` iterations (averaged weights, as `predict` after `fit` sees
them), then Acc, WAcc and Agr of plain `predict`. The table of
docs/concepts.md ("The stem, not the capsules") comes from these runs.

Variants (each patches `keras_parcaps.models.stem` and the builder's branch
block for this process only):

- `paper`: nothing changed.
- `k3`: the blocks' grouped convolutions 3x3 instead of 7x7.
- `pool_first`: the first layer a 3x3 convolution with stride 1, then 2x2
  max-pooling, instead of a 7x7 convolution with stride 2.
- `wide`: every block's groups 32 channels wide instead of 4 (cardinality
  divided by 8).
- `pool_first_wide`: both of the last two.
- `plain`: `backbone="plain"` (the builder's own option).

    KERAS_BACKEND=torch OMP_NUM_THREADS=1 python benchmarks/stem_ablation.py \\
        --variant pool_first_wide --fold 1

The data is the shared `pbc_matek_dev` (`$PARCAPS_DATA`) unless `--data`
names another class-folder dataset.
"""

import argparse
import json
import time

import keras
import numpy as np

import keras_parcaps as kp
from keras_parcaps.models import dr, stem

VARIANTS = ("paper", "k3", "pool_first", "wide", "pool_first_wide", "plain")


def _pooled_stem(inputs):
    """The paper's stem with its first layer at stride 1, then max-pooling."""
    x = kp.layers.ImageCentering(name="centering")(inputs)
    x = keras.layers.Conv2D(64, 3, padding="same", use_bias=False, name="stem_conv")(x)
    x = keras.layers.BatchNormalization(
        momentum=stem.BATCH_NORM_MOMENTUM, name="stem_norm"
    )(x)
    x = keras.layers.ReLU(name="stem_relu")(x)
    x = keras.layers.MaxPooling2D(2, padding="same")(x)
    x = stem.block([64, 64, 128], cardinality=16, name="stem_block_1")(x)
    return stem.block([128, 128, 256], cardinality=32, name="stem_block_2")(x)


def apply_variant(variant):
    """Patches the stem and the branch block; returns the builder's options."""
    if variant == "plain":
        return {"backbone": "plain"}
    if variant == "k3":
        stem.BLOCK_KERNEL = 3
    if variant in ("wide", "pool_first_wide"):
        paper_block = stem.block

        def wide_block(filters, cardinality, name):
            return paper_block(filters, cardinality // 8, name)

        stem.block = dr.block = wide_block
    if variant in ("pool_first", "pool_first_wide"):
        dr.stem = _pooled_stem
    return {}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", choices=VARIANTS, required=True)
    parser.add_argument("--data", default="pbc_matek_dev")
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--iterations", type=int, default=1000)
    parser.add_argument("--eval-every", type=int, default=250)
    parser.add_argument("--fold", type=int, default=0)
    parser.add_argument(
        "--seed", type=int, default=None, help="weight seed (default: --fold)"
    )
    args = parser.parse_args()
    options = apply_variant(args.variant)

    data = kp.data.load(args.data, args.image_size).preload()
    folds = kp.data.stratified_folds(data.labels, 5, seed=0)
    train_idx, test_idx = kp.data.fold_split(folds, args.fold)
    train, test = data.subset(train_idx), data.subset(test_idx)
    keras.utils.set_random_seed(args.fold if args.seed is None else args.seed)
    model = kp.models.build_parallel_dr(
        input_shape=(args.image_size, args.image_size, 3),
        num_classes=data.num_classes,
        n_branches=4,
        capsule_layers=3,
        **options,
    )
    test_images = kp.data.to_model_input(test.images())
    curve = []

    class HeldOutAcc(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            with kp.training.averaged_weights(self.model):
                scores = self.model.predict(test_images, batch_size=64, verbose=0)
            curve.append(round(float(np.mean(scores.argmax(-1) == test.labels)), 3))

    start = time.time()
    model.fit(
        kp.data.OnePerClassBatches(
            train, steps_per_epoch=args.eval_every, seed=args.fold
        ),
        epochs=args.iterations // args.eval_every,
        callbacks=[HeldOutAcc()],
        verbose=0,
    )
    report = kp.evaluation.evaluate_model(model, test, batch_size=64)
    print(
        json.dumps(
            {
                "variant": args.variant,
                "fold": args.fold,
                "seed": args.fold if args.seed is None else args.seed,
                "parameters": model.count_params(),
                "acc": report["acc"],
                "wacc": report["wacc"],
                "agr": report["agr"],
                "curve": curve,
                "seconds": round(time.time() - start),
            }
        )
    )


if __name__ == "__main__":
    main()
