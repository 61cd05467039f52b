"""Which part of the paper's stem holds its DR networks back on small images?

Builds the 3-layer parallel DR network (`build_parallel_dr`, 4 branches) with
one part of the paper's CNN changed, then trains and scores it exactly as
`benchmarks/model_comparison.py` does (`run_one`: plain `fit` on one image
per class, held-out Acc every `--eval-every` iterations, Acc, WAcc and Agr of
plain `predict`), for `--iterations` iterations; the result is printed as
one JSON line and written under `--out/<variant>`. The table of
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
- `pool_first_wide_k3`: all three: the first layer as in `pool_first`, groups
  32 channels wide, 3x3 grouped convolutions.
- `pooled`: every block (stem and branches) 2x2 max-pooling followed by the
  block at stride 1, instead of the block's stride-2 grouped convolution and
  stride-2 1x1 shortcut (which read every other pixel, a grid that a
  90-degree rotation of an even-sized image does not map onto itself).
- `pool_first_wide_pooled`: `pool_first_wide` and `pooled`.
- `stride1_pooled`: `backbone="pooled"` (the builder's own option): every
  weight of the paper's network, sampled as the plain CNN samples: the 7x7
  first layer at stride 1 then 2x2 max-pooling, and every block `pooled`.
  The parameter count is the paper's.
- `plain`: `backbone="plain"` (the builder's own option).

    KERAS_BACKEND=torch OMP_NUM_THREADS=1 python benchmarks/stem_ablation.py \\
        --variant pool_first_wide --fold 1

The data is the shared `pbc_matek_dev` (`$PARCAPS_DATA`) unless `--data`
names another (see `model_comparison.py`).
"""

import argparse
import math
from pathlib import Path

import keras
import model_comparison

import keras_parcaps as kp
from keras_parcaps.models import dr, stem

VARIANTS = (
    "paper",
    "k3",
    "pool_first",
    "wide",
    "pool_first_wide",
    "pool_first_wide_k3",
    "pooled",
    "pool_first_wide_pooled",
    "stride1_pooled",
    "plain",
)


def _pooled_stem(inputs, downsample="stride"):
    """The paper's stem with its first layer 3x3 at stride 1, then max-pooling."""
    x = kp.layers.ImageCentering(name="centering")(inputs)
    x = keras.layers.Conv2D(64, 3, padding="same", use_bias=False, name="stem_conv")(x)
    x = keras.layers.BatchNormalization(
        momentum=stem.BATCH_NORM_MOMENTUM, name="stem_norm"
    )(x)
    x = keras.layers.ReLU(name="stem_relu")(x)
    x = keras.layers.MaxPooling2D(2, padding="same")(x)
    x = stem.block([64, 64, 128], 16, "stem_block_1", downsample)(x)
    return stem.block([128, 128, 256], 32, "stem_block_2", downsample)(x)


def apply_variant(variant):
    """Patches the stem and the branch block (`plain` and `stride1_pooled`
    are builder options)."""
    if variant.endswith("k3"):
        stem.BLOCK_KERNEL = 3
    width = 8 if "wide" in variant else 1
    pooled = variant in ("pooled", "pool_first_wide_pooled")
    if width > 1 or pooled:

        def patched_block(filters, cardinality, name, downsample="stride"):
            return kp.layers.ResNeXtBlock(
                filters,
                cardinality=cardinality // width,
                kernel_size=stem.BLOCK_KERNEL,
                strides=2,
                downsample="pool" if pooled else downsample,
                momentum=stem.BATCH_NORM_MOMENTUM,
                name=name,
            )

        stem.block = dr.block = patched_block
    if variant.startswith("pool_first"):
        dr.stem = _pooled_stem


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", choices=VARIANTS, required=True)
    parser.add_argument("--data", default=None)
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--iterations", type=int, default=1000)
    parser.add_argument("--eval-every", type=int, default=250)
    parser.add_argument("--fold", type=int, default=0)
    parser.add_argument(
        "--cosine-decay",
        action="store_true",
        help="the learning rate falls from 1e-3 to 0 over --iterations",
    )
    parser.add_argument(
        "--seed", type=int, default=None, help="weight seed (default: --fold)"
    )
    parser.add_argument("--out", default="runs/stem_ablation")
    args = parser.parse_args()
    apply_variant(args.variant)
    args.model = {"plain": "pdr_3l_4b_plain", "stride1_pooled": "pdr_3l_4b_pooled"}.get(
        args.variant, "pdr_3l_4b"
    )
    args.out = Path(args.out) / args.variant
    args.out.mkdir(parents=True, exist_ok=True)
    args.budget, args.images_per_class = math.inf, 1
    model_comparison.run_one(args)


if __name__ == "__main__":
    main()
