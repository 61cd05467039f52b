"""Train one network on one fold of a leukocyte dataset and evaluate it.

    KERAS_BACKEND=jax python examples/train_leukocytes.py \
        --data ../shared/data/pbc_matek_dev --model parallel_dr --branches 4 \
        --image-size 64 --epochs 20 --steps 100 --fold 0 --out runs/pbc

Without --data it uses the built-in synthetic cells. The same run, with more
options, is `keras-parcaps train`. Killed runs resume when restarted.
--distribute trains data-parallel on every GPU (JAX or TensorFlow backend; see
docs/distributed.md).
"""

import argparse

import keras_parcaps as kp


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=None)
    parser.add_argument("--model", default="parallel_dr")
    parser.add_argument("--branches", type=int, default=None)
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--fold", type=int, default=0)
    parser.add_argument("--out", default="runs/train_leukocytes")
    parser.add_argument(
        "--distribute",
        action="store_true",
        help="build and train inside kp.training.data_parallel()",
    )
    args = parser.parse_args()

    options = {} if args.branches is None else {"n_branches": args.branches}
    builder = kp.training.builders.get_builder(args.model, **options)
    data = kp.data.load(args.data, args.image_size)
    folds = kp.data.stratified_folds(data.labels, n_folds=5)
    train_idx, val_idx = kp.data.fold_split(folds, args.fold)
    report = kp.training.experiments.train_and_evaluate(
        builder,
        data.subset(train_idx),
        data.subset(val_idx),
        args.out,
        epochs=args.epochs,
        steps_per_epoch=args.steps,
        distribute=args.distribute,
    )
    print(kp.evaluation.format_summary(report))
    print(kp.evaluation.format_table(report))


if __name__ == "__main__":
    main()
