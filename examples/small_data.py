"""The paper's small-data protocol: up to x images per class, the rest tests.

    KERAS_BACKEND=jax python examples/small_data.py \
        --data ../shared/data/pbc_matek_dev --x 10 25 50 --epochs 10 --steps 100

For each x, up to x images per class form 5 folds (4 train, 1 test) and every
image above x joins the test set. Same as `keras-parcaps small-data`.
"""

import argparse

import keras_parcaps as kp


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=None)
    parser.add_argument("--model", default="parallel_dr")
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--x", type=int, nargs="+", default=[10, 25, 50])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--out", default="runs/small_data")
    args = parser.parse_args()

    data = kp.data.load(args.data, args.image_size)
    builder = kp.training.builders.get_builder(args.model)
    print("| x | Acc | WAcc | Agr |\n| ---: | ---: | ---: | ---: |")
    for x in args.x:
        report = kp.training.experiments.small_data(
            builder,
            data,
            f"{args.out}/x{x}",
            max_per_class=x,
            epochs=args.epochs,
            steps_per_epoch=args.steps,
        )
        print(
            f"| {x} | {100 * report['acc_fold_mean']:.1f} | "
            f"{100 * report['wacc_fold_mean']:.1f} | "
            f"{100 * report['agr_fold_mean']:.1f} |"
        )


if __name__ == "__main__":
    main()
