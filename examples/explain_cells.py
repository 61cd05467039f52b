"""Train a small parallel DR-CapsNet on real cells, then explain its decisions.

    KERAS_BACKEND=torch python examples/explain_cells.py \
        --data ../shared/data/pbc_matek_dev --out runs/explain_cells \
        --figures docs/img/explain

Trains `kp.models.build_parallel_dr` (3 capsule layers, 4 branches, 48x48) with
`kp.training.train` on folds 1-4 for 6 epochs of 50 iterations (a few minutes on
a quiet 2-core CPU; with the same --out a killed run resumes and a finished one
is not touched again), then explains fold 0 with `kp.explain`: the dataset summary,
one page per image for a few images of each class, and the numbers as JSON.
With --pose-steps N it also trains Sabour et al.'s CapsNet with its
reconstruction decoder at 32x32 for N iterations and draws the pose-perturbation
grid of one cell (Sabour et al., Fig. 4). These are the figures of docs/explain.md.
"""

import argparse
import json
from pathlib import Path

import keras
import numpy as np

import keras_parcaps as kp


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="pbc_matek_dev")
    parser.add_argument("--image-size", type=int, default=48)
    parser.add_argument("--branches", type=int, default=4)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--out", default="runs/explain_cells")
    parser.add_argument("--figures", default="runs/explain_cells/figures")
    parser.add_argument(
        "--panels",
        default="NGS,LYT,MON,EOS,BAS",
        help="one page for the first image of each of these classes",
    )
    parser.add_argument("--pose-steps", type=int, default=0)
    args = parser.parse_args()

    keras.utils.set_random_seed(0)
    data = kp.data.load(args.data, args.image_size)
    folds = kp.data.stratified_folds(data.labels, n_folds=5)
    train_idx, val_idx = kp.data.fold_split(folds, 0)
    saved = Path(args.out) / "model.keras"
    if not saved.is_file():  # trained once; the figures are then reproducible
        model = kp.models.build_parallel_dr(
            input_shape=(args.image_size, args.image_size, 3),
            num_classes=data.num_classes,
            n_branches=args.branches,
            capsule_layers=3,
        )
        kp.training.train(
            model,
            data.subset(train_idx),
            args.out,
            val_data=data.subset(val_idx),
            epochs=args.epochs,
            steps_per_epoch=args.steps,
            verbose=2,
        )
    model = keras.saving.load_model(saved)

    val = data.subset(val_idx)
    explanation = kp.explain.explain_capsules(
        model, val.images(), val.labels, data.class_names
    )
    figures = Path(args.figures)
    figures.mkdir(parents=True, exist_ok=True)
    kp.explain.plot_explanation_summary(explanation, figures / "summary.png")
    for code in args.panels.split(","):
        index = int(np.flatnonzero(val.labels == data.class_names.index(code))[0])
        kp.explain.plot_explanation(explanation, index, figures / f"panel_{code}.png")
    summary = explanation.summary()
    (Path(args.out) / "explanation_summary.json").write_text(
        json.dumps(summary, indent=1)
    )
    print(json.dumps(summary, indent=1))
    if args.pose_steps:
        pose_grid(args, figures)


def pose_grid(args, figures, size=32, code="EOS"):
    """Sabour's CapsNet with its decoder on the same cells, then Fig. 4."""
    keras.utils.set_random_seed(0)
    data = kp.data.load(args.data, size)
    folds = kp.data.stratified_folds(data.labels, n_folds=5)
    train_idx, val_idx = kp.data.fold_split(folds, 0)
    out = Path(args.out) / "sabour"
    if not (out / "model.keras").is_file():
        model = kp.models.build_sabour_capsnet(
            input_shape=(size, size, 3), num_classes=data.num_classes
        )
        kp.training.train(
            model,
            data.subset(train_idx),
            out,
            epochs=1,
            steps_per_epoch=args.pose_steps,
            verbose=2,
        )
    model = keras.saving.load_model(out / "model.keras")
    val = data.subset(val_idx)
    index = int(np.flatnonzero(val.labels == data.class_names.index(code))[0])
    explanation = kp.explain.explain_capsules(
        model,
        val.images([index]),
        val.labels[[index]],
        data.class_names,
        orientations=False,
    )
    kp.explain.plot_pose_perturbation(explanation, 0, figures / f"pose_{code}.png")


if __name__ == "__main__":
    main()
