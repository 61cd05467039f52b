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
import json
import subprocess
import sys
import time

MODELS = {
    "parallel_dr_12": ("build_parallel_dr", dict(capsule_layers=3, n_branches=12)),
    "dr_3l_2mid": ("build_dr", dict(capsule_layers=3, n_mid_caps=2)),
    "resnext50": ("build_resnext50", {}),
    "parallel_em_10": ("build_parallel_em", dict(capsule_layers=3, n_branches=10)),
    "em_2l": ("build_em", dict(capsule_layers=2)),
}


def measure(name, args):
    import keras
    import numpy as np

    import keras_parcaps as kp

    builder, options = MODELS[name]
    shape = (args.size, args.size, 3)
    model = getattr(kp.models, builder)(input_shape=shape, num_classes=15, **options)
    rng = np.random.default_rng(0)
    x = rng.uniform(size=(args.batch, *shape)).astype("float32")
    y = keras.utils.to_categorical(np.arange(args.batch) % 15, 15)
    start = time.perf_counter()
    model.train_on_batch(x, y)
    first = time.perf_counter() - start
    times = []
    for _ in range(args.steps):
        start = time.perf_counter()
        model.train_on_batch(x, y)
        times.append(time.perf_counter() - start)
    return {"params": model.count_params(), "first": first, "step": min(times)}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS)[:3],
                        choices=list(MODELS))
    parser.add_argument("--size", type=int, default=400)
    parser.add_argument("--batch", type=int, default=15)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=300,
                        help="seconds per model, build and warm-up included")
    parser.add_argument("--only", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.only:
        print("RESULT " + json.dumps(measure(args.only, args)))
        return

    import keras

    backend = keras.backend.backend()
    print("| backend | model | params | first step s | train step s | images/s |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name in args.models:
        command = [sys.executable, __file__, "--only", name, "--size", str(args.size),
                   "--batch", str(args.batch), "--steps", str(args.steps)]
        try:
            result = subprocess.run(
                command, capture_output=True, text=True, timeout=args.timeout
            )
            lines = [x for x in result.stdout.splitlines() if x.startswith("RESULT")]
            if not lines:
                tail = result.stderr.strip().splitlines()[-1:] or ["no output"]
                row = f"- | failed: {tail[0][:80]} | - | -"
            else:
                r = json.loads(lines[-1][len("RESULT "):])
                row = (f"{r['params'] / 1e6:.1f}M | {r['first']:.1f} | "
                       f"{r['step']:.2f} | {args.batch / r['step']:.2f}")
        except subprocess.TimeoutExpired:
            row = f"- | > {args.timeout:.0f} s (stopped) | - | -"
        print(f"| {backend} | {name} | {row} |", flush=True)


if __name__ == "__main__":
    main()
