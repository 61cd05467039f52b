"""Training-step time of the paper's networks at 400x400, batch 15.

Builds each model with its builder (compiled with the paper's loss and
Nadam), runs one warm-up step (tracing and compilation), then times a few
`train_on_batch` steps on random images and one-hot labels and reports the
best and the images per second. One model per subprocess, under a time limit,
so that a model too slow for the machine is reported as stopped rather than
holding up the others.

    KERAS_BACKEND=jax python benchmarks/models_step.py --steps 2
"""

import argparse
from pathlib import Path

import bench_utils

# Row name -> (name in the model catalogue `kp.models.CATALOGUE`, options).
MODELS = {
    "parallel_dr_12": ("parallel_dr", dict(capsule_layers=3, n_branches=12)),
    "dr_3l_2mid": ("dr", dict(capsule_layers=3, n_mid_caps=2)),
    "resnext50": ("resnext50", {}),
    "parallel_em_10": ("parallel_em", dict(capsule_layers=3, n_branches=10)),
    "em_2l": ("em", dict(capsule_layers=2)),
    "parallel_dr_12_pooled": (
        "parallel_dr",
        dict(capsule_layers=3, n_branches=12, backbone="pooled"),
    ),
}


def measure(name, args):
    import keras
    import numpy as np

    from keras_parcaps.models import get_model_spec

    model_name, options = MODELS[name]
    shape = (args.size, args.size, 3)
    model = get_model_spec(model_name).build(shape, 15, **options)
    rng = np.random.default_rng(0)
    x = rng.uniform(size=(args.batch, *shape)).astype("float32")
    y = keras.utils.to_categorical(np.arange(args.batch) % 15, 15)
    first, times, _ = bench_utils.train_steps(model, x, y, args.steps)
    return {"params": model.count_params(), "first": first, "step": min(times)}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--models", nargs="+", default=list(MODELS)[:3], choices=list(MODELS)
    )
    parser.add_argument("--size", type=int, default=400)
    parser.add_argument("--batch", type=int, default=15)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument(
        "--timeout",
        type=float,
        default=300,
        help="seconds per model, build and warm-up included",
    )
    parser.add_argument("--only", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.only:
        bench_utils.emit(measure(args.only, args))
        return

    import keras

    backend = keras.backend.backend()
    print("| backend | model | params | first step s | train step s | images/s |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name in args.models:
        arguments = [
            Path(__file__).resolve(),
            "--only",
            name,
            "--size",
            args.size,
            "--batch",
            args.batch,
            "--steps",
            args.steps,
        ]
        r, error = bench_utils.spawn(arguments, args.timeout)
        if r is None:
            row = f"- | {error[:80]} | - | -"
        else:
            row = (
                f"{r['params'] / 1e6:.1f}M | {r['first']:.1f} | "
                f"{r['step']:.2f} | {args.batch / r['step']:.2f}"
            )
        print(f"| {backend} | {name} | {row} |", flush=True)


if __name__ == "__main__":
    main()
