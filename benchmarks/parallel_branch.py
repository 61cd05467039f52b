"""ParallelBranch one-by-one against a hand-fused equivalent: training step.

The branch is the paper's DR branch (`kp.models.dr.dr_branch`) on the stem's
50x50x256 output: a ResNeXtBlock [256, 256, 512] (cardinality 64, 7x7,
stride 2), Primary-Caps of two 256-long capsules per grid point and one
16-long Mid-Cap. The fused
network computes the same function with the branch axis folded into the
channels: one wide 1x1 convolution for the shared-input convolutions,
grouped convolutions (`GroupConv2D`) with `n` times the groups, and one
einsum over the branch axis for the Mid-Caps.

    KERAS_BACKEND=jax python benchmarks/parallel_branch.py --branches 4 12
"""

import argparse

import bench_utils
import keras
import numpy as np
from keras import ops

import keras_parcaps as kp
from keras_parcaps.ops.capsule_ops import squash

CAPS, LENGTH, MID = 2, 256, 16


def one_by_one(n, shape):
    branch = kp.models.dr.dr_branch(shape, capsule_size=MID)
    inputs = keras.Input(shape)
    return keras.Model(inputs, kp.layers.ParallelBranch(branch, n)(inputs))


class FusedMidCaps(keras.layers.Layer):
    """One unshared Mid-Cap per branch, all branches in one einsum."""

    def __init__(self, n, **kwargs):
        super().__init__(**kwargs)
        self.n = n

    def build(self, input_shape):
        size = input_shape[1] * input_shape[2] * CAPS * LENGTH
        self.kernel = self.add_weight(
            name="kernel",
            shape=(self.n, size, MID),
            initializer=keras.initializers.RandomNormal(stddev=0.01),
        )

    def call(self, x):
        height, width = x.shape[1], x.shape[2]
        x = ops.reshape(x, (-1, height, width, self.n, CAPS, LENGTH))
        x = squash(x)
        x = ops.transpose(x, (0, 3, 1, 2, 4, 5))
        x = ops.reshape(x, (-1, self.n, height * width * CAPS * LENGTH))
        return squash(ops.einsum("bnk,nko->bno", x, self.kernel))


def fused(n, shape):
    inputs = keras.Input(shape)

    def norm(x):
        return keras.layers.BatchNormalization()(x)

    h = keras.layers.Conv2D(256 * n, 1, use_bias=False)(inputs)
    h = keras.layers.ReLU()(norm(h))
    h = kp.layers.GroupConv2D(
        256 * n, 7, groups=64 * n, strides=2, padding="same", use_bias=False
    )(h)
    h = keras.layers.ReLU()(norm(h))
    h = norm(kp.layers.GroupConv2D(512 * n, 1, groups=n, use_bias=False)(h))
    s = keras.layers.Conv2D(512 * n, 1, strides=2, use_bias=False)(inputs)
    h = keras.layers.ReLU()(h + norm(s))
    h = kp.layers.GroupConv2D(CAPS * LENGTH * n, 1, groups=n)(h)
    return keras.Model(inputs, FusedMidCaps(n)(h))


def step_time(model, x, y, steps):
    model.compile(optimizer="sgd", loss="mse")
    _, times, _ = bench_utils.train_steps(model, x, y, steps)
    return min(times)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--branches", type=int, nargs="+", default=[4, 12])
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--size", type=int, default=50, help="feature-map side")
    parser.add_argument("--steps", type=int, default=3)
    args = parser.parse_args()
    shape = (args.size, args.size, 256)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(args.batch, *shape)).astype("float32")
    backend = keras.backend.backend()
    print("| backend | N | one-by-one s/step | fused s/step | fused / one-by-one |")
    print("| --- | --- | --- | --- | --- |")
    for n in args.branches:
        y = np.zeros((args.batch, n, MID), "float32")
        base = step_time(one_by_one(n, shape), x, y, args.steps)
        fast = step_time(fused(n, shape), x, y, args.steps)
        print(
            f"| {backend} | {n} | {base:.3f} | {fast:.3f} | {fast / base:.2f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
