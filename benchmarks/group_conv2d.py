"""GroupConv2D training-step time per formulation, against keras Conv2D(groups).

A 7x7 grouped convolution with 64 groups, 256 filters, on a batch of 50x50x256
inputs (the paper's branch block): one `train_on_batch` of a one-layer model,
the best of a few steps after a warm-up (compilation) step. `keras.layers.
Conv2D(groups=64)` is measured in a subprocess under a time limit, since under
XLA on CPU a single step can take minutes.

    KERAS_BACKEND=tensorflow python benchmarks/group_conv2d.py
"""

import argparse
from pathlib import Path

import bench_utils
import keras
import numpy as np

import keras_parcaps as kp
from keras_parcaps.layers.group_conv2d_backend import default_implementation


def make_layer(kind, args):
    common = dict(padding="same", use_bias=False)
    if kind == "keras-conv2d":
        return keras.layers.Conv2D(
            args.filters, args.kernel, groups=args.groups, **common
        )
    return kp.layers.GroupConv2D(
        args.filters, args.kernel, groups=args.groups, implementation=kind, **common
    )


def step_time(kind, args):
    shape = (args.size, args.size, args.channels)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(args.batch, *shape)).astype("float32")
    y = np.zeros((args.batch, args.size, args.size, args.filters), "float32")
    inputs = keras.Input(shape)
    model = keras.Model(inputs, make_layer(kind, args)(inputs))
    model.compile(optimizer="sgd", loss="mse")
    first, times, _ = bench_utils.train_steps(model, x, y, args.steps)
    return first, min(times)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--size", type=int, default=50)
    parser.add_argument("--channels", type=int, default=256)
    parser.add_argument("--filters", type=int, default=256)
    parser.add_argument("--kernel", type=int, default=7)
    parser.add_argument("--groups", type=int, default=64)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument(
        "--kinds",
        nargs="+",
        help="auto, native, split, keras-conv2d; default: all but native off "
        "torch (under XLA it is the op of keras Conv2D(groups))",
    )
    parser.add_argument(
        "--timeout", type=float, default=150, help="seconds for keras Conv2D"
    )
    parser.add_argument("--only", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.only:
        bench_utils.emit(step_time(args.only, args))
        return

    backend = keras.backend.backend()
    if args.kinds is None:
        args.kinds = ["auto", "split", "keras-conv2d"]
        if backend == "torch":
            args.kinds.insert(1, "native")
    print(f"backend {backend}; auto = {default_implementation()}")
    print("| backend | layer | first step s | train step s |")
    print("| --- | --- | --- | --- |")
    for kind in args.kinds:
        if kind == "keras-conv2d" or kind == "native" and backend != "torch":
            # Possibly the pathological XLA path: a subprocess under a limit.
            arguments = [
                Path(__file__).resolve(),
                "--only",
                kind,
                "--steps",
                1 if kind == "keras-conv2d" else args.steps,
            ]
            for name in ("batch", "size", "channels", "filters", "kernel", "groups"):
                arguments += [f"--{name}", getattr(args, name)]
            result, error = bench_utils.spawn(arguments, args.timeout)
            if result is None:
                row = f"{error} | -"
            else:
                first, step = result
                row = f"{first:.2f} | {step:.3f}"
        else:
            first, step = step_time(kind, args)
            row = f"{first:.2f} | {step:.3f}"
        label = f"GroupConv2D {kind}"
        if kind == "keras-conv2d":
            label = "keras Conv2D(groups)"
        print(f"| {backend} | {label} | {row} |", flush=True)


if __name__ == "__main__":
    main()
