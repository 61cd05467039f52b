"""Training-step time and peak memory of `EMConvCaps` and `EMClassCaps`.

Every configuration runs in a fresh subprocess per backend, so that neither
compiled code nor allocator caches carry over. A training step is one
`train_on_batch` of a model made of the layer alone (MSE loss against zeros,
SGD): the layer's forward pass, EM routing included, and its backward pass.
Time is the median of `--steps` steps after `--warmup` steps (the first one
compiles on TensorFlow and JAX). Peak memory is the growth of the process's
peak resident set size (`resource.getrusage(RUSAGE_SELF).ru_maxrss`) from
just before the model is built to after the last step: CPU memory, including
the compiled program and everything the framework allocates for the steps.

Usage:

    python benchmarks/em_caps.py                   # everything, 3 backends
    python benchmarks/em_caps.py --backends jax --steps 10
"""

import argparse
import json
import statistics
from pathlib import Path

import bench_utils

# (name, layer, batch, grid, input types, output types or classes)
TIMING = [
    ("EMConvCaps Mid-Caps (K=3, stride 2)", "conv", 15, 25, 32, 1),
    ("EMClassCaps to 15 classes", "class", 15, 12, 10, 15),
]
MEMORY_GRIDS = [13, 25, 37]
MEMORY_BATCHES = [5, 15, 30]


def run_one(layer, batch, grid, types, outputs, steps, warmup):
    """Runs in the subprocess: returns median step seconds and peak MiB."""
    import keras
    import numpy as np

    import keras_parcaps as kp

    rng = np.random.default_rng(0)
    x = rng.normal(size=(batch, grid, grid, types, 17)).astype("float32")
    x[..., -1] = rng.uniform(size=x.shape[:-1])
    before = bench_utils.rss_mib()
    if layer == "conv":
        caps = kp.layers.EMConvCaps(outputs, kernel_size=3, strides=2)
    else:
        caps = kp.layers.EMClassCaps(outputs)
    inputs = keras.Input(x.shape[1:])
    model = keras.Model(inputs, caps(inputs))
    model.compile(optimizer=keras.optimizers.SGD(1e-3), loss="mse")
    y = np.zeros((batch, *model.output.shape[1:]), "float32")
    _, times, loss = bench_utils.train_steps(model, x, y, steps, warmup)
    assert np.isfinite(loss)
    return statistics.median(times), bench_utils.rss_mib() - before


def spawn(backend, config, steps, warmup):
    result, error = bench_utils.spawn(
        [Path(__file__).resolve(), "--child", json.dumps([*config, steps, warmup])],
        backend=backend,
    )
    if result is None:
        return None, None, error
    seconds, mib = result
    return seconds, mib, None


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", default="tensorflow,jax,torch")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--memory-steps", type=int, default=2)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        bench_utils.emit(run_one(*json.loads(args.child)))
        return
    backends = args.backends.split(",")

    print(
        "| layer | batch | input | backend | step (ms, median) "
        "| peak RSS growth (MiB) |"
    )
    print("| --- | --- | --- | --- | --- | --- |")
    for name, layer, batch, grid, types, outputs in TIMING:
        for backend in backends:
            seconds, mib, error = spawn(
                backend, (layer, batch, grid, types, outputs), args.steps, args.warmup
            )
            cells = (
                f"{seconds * 1e3:.0f} | {mib:.0f}" if error is None
                else f"failed: {error} |"
            )
            print(f"| {name} | {batch} | {grid}x{grid}x{types} | {backend} | {cells} |",
                  flush=True)

    print()
    print("| EMConvCaps Mid-Caps (K=3, stride 2, 32 -> 1 types) | " + " | ".join(
        backends) + " |")
    print("| --- |" + " --- |" * len(backends))
    sweep = [(15, grid) for grid in MEMORY_GRIDS] + [
        (batch, 25) for batch in MEMORY_BATCHES if batch != 15
    ]
    for batch, grid in sweep:
        cells = []
        for backend in backends:
            seconds, mib, error = spawn(
                backend, ("conv", batch, grid, 32, 1), args.memory_steps, 1
            )
            cells.append(
                f"{mib:.0f} MiB, {seconds * 1e3:.0f} ms" if error is None
                else f"failed: {error}"
            )
        print(f"| batch {batch}, grid {grid}x{grid} | " + " | ".join(cells) + " |",
              flush=True)


if __name__ == "__main__":
    main()
