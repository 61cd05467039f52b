"""The paper's final 5-fold cross-validation with a Table 2-style report.

    KERAS_BACKEND=jax python examples/cross_validate.py \
        --data ../shared/data/pbc_matek_dev --model parallel_dr --epochs 20 \
        --steps 100 --out runs/cv

Writes `cv_report.json`, `cv_report_table.csv`, `cv_report.md`,
`cv_confusion_matrix.png` and one folder per fold (checkpoints, log,
training curves). Same as `keras-parcaps cross-validate`.
"""

import argparse

import keras_parcaps as kp


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=None)
    parser.add_argument("--model", default="parallel_dr")
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--out", default="runs/cross_validate")
    args = parser.parse_args()

    report = kp.training.experiments.cross_validate(
        kp.training.builders.get_builder(args.model),
        kp.data.load(args.data, args.image_size),
        args.out,
        n_folds=5,
        epochs=args.epochs,
        steps_per_epoch=args.steps,
    )
    print(kp.evaluation.format_summary(report))
    for key in ("acc", "wacc", "agr"):
        print(
            f"{key}: {report[f'{key}_fold_mean']:.3f} "
            f"+- {report[f'{key}_fold_std']:.3f} over folds"
        )
    print(kp.evaluation.format_table(report))


if __name__ == "__main__":
    main()
