"""DRCaps training-step time and peak memory, against two baselines.

Baselines, both with Sabour's routing (softmax over the output capsules):

- "tiled": the formulation of popular tf.keras CapsNets, W tiled over the
  batch, the inputs tiled over the output capsules, one batched matmul
  (`u_hat = W_tiled @ u_tiled`), then `kp.ops.dynamic_routing`.
- "xifengguo": a faithful Keras 3 port of XifengGuo/CapsNet-Keras's
  `CapsuleLayer` (tf2.2 branch): W of shape `(n_out, n_in, out_dim, in_dim)`,
  the inputs tiled over the output capsules, `u_hat = W @ u_tiled` as one
  batched matmul broadcast over the batch (the original maps it over the
  batch with `tf.map_fn`), and the routing as matmuls on the
  `(batch, n_out, n_in, out_dim)` votes with logits `(batch, n_out, 1, n_in)`.

Time: all formulations of a shape are built in ONE process and their steps
are interleaved (A, B, C, B, C, A, ...) for `--rounds` rounds, so that load
from other processes hits them alike; the figure is the median per
formulation, and the speed-up is the median of the per-round ratios.
Memory: each (shape, formulation) runs a few steps in a fresh subprocess,
whose growth of peak resident memory (ru_maxrss) is its own.

"of matmul" is the step's useful FLOPs (counted by formula for the votes
formulation: the votes forward and twice that backward, plus the routing's
weighted sums and agreements, likewise tripled) over the time, as a fraction
of the same backend's dense float32 2048x2048 matmul rate measured in the
same process.

    KERAS_BACKEND=jax python benchmarks/dr_caps.py --shapes sd
"""

import argparse
import functools
import os
import statistics
from pathlib import Path

import bench_utils

SHAPES = {
    # name: (batch, grid, n_types, in_dim, n_out, out_dim, share_weights)
    "s: 1152x8 -> 10x16, unshared, batch 128 (Sabour's DigitCaps)": (
        128,
        (6, 6),
        32,
        8,
        10,
        16,
        False,
    ),
    "a: 1152x8 -> 10x16, shared, batch 128": (128, (6, 6), 32, 8, 10, 16, True),
    "b: 1250x256 -> 1x16, unshared, batch 15": (15, (25, 25), 2, 256, 1, 16, False),
    "c: 12x16 -> 15x16, unshared, batch 15": (15, None, 12, 16, 15, 16, False),
    "d: 1250x256 -> 15x16, unshared, batch 15 (2-layer DR Class-Caps)": (
        15,
        (25, 25),
        2,
        256,
        15,
        16,
        False,
    ),
}
FORMULATIONS = ("DRCaps", "tiled", "xifengguo")
# Also accepted by --formulations: DRCaps with its routing left uncompiled
# (`routing_backend.set_jit_compile(False)`), the keras.ops path.
UNCOMPILED = "DRCaps-uncompiled"
ROUTING_ITERATIONS = 3


def _baseline_classes():
    import keras
    from keras import ops

    from keras_parcaps.ops import dynamic_routing

    class TiledDRCaps(keras.layers.Layer):
        """The tile-then-matmul formulation, for comparison only."""

        def __init__(self, n_out, out_dim, share_weights, **kwargs):
            super().__init__(**kwargs)
            self.n_out, self.out_dim, self.share_weights = n_out, out_dim, share_weights

        def build(self, input_shape):
            n_w = input_shape[-2] if self.share_weights else _n_in(input_shape)
            self.kernel = self.add_weight(
                shape=(n_w, self.n_out, self.out_dim, input_shape[-1]),
                initializer=keras.initializers.RandomNormal(stddev=0.01),
            )

        def call(self, u):
            n_in, in_dim = _n_in(u.shape), u.shape[-1]
            kernel = self.kernel
            if self.share_weights:  # one W per type: tile it over the grid
                kernel = ops.tile(kernel[None], (n_in // kernel.shape[0], 1, 1, 1, 1))
                kernel = ops.reshape(kernel, (n_in, self.n_out, self.out_dim, in_dim))
            u = ops.reshape(u, (-1, n_in, 1, in_dim, 1))
            w_tiled = ops.tile(kernel[None], (ops.shape(u)[0], 1, 1, 1, 1))
            u_tiled = ops.tile(u, (1, 1, self.n_out, 1, 1))
            votes = ops.squeeze(ops.matmul(w_tiled, u_tiled), axis=-1)
            return dynamic_routing(votes, ROUTING_ITERATIONS)

    class XifengGuoCapsuleLayer(keras.layers.Layer):
        """XifengGuo/CapsNet-Keras's `CapsuleLayer` (tf2.2), ported to Keras 3.

        Unshared weights only, as the original. Inputs
        `(batch, n_in, in_dim)` (a grid input is flattened first).
        """

        def __init__(self, num_capsule, dim_capsule, routings=3, **kwargs):
            super().__init__(**kwargs)
            self.num_capsule = num_capsule
            self.dim_capsule = dim_capsule
            self.routings = routings

        def build(self, input_shape):
            self.input_num_capsule = _n_in(input_shape)
            self.input_dim_capsule = input_shape[-1]
            self.W = self.add_weight(
                shape=(
                    self.num_capsule,
                    self.input_num_capsule,
                    self.dim_capsule,
                    self.input_dim_capsule,
                ),
                initializer=keras.initializers.RandomNormal(stddev=0.01),
                name="W",
            )

        def call(self, inputs):
            inputs = ops.reshape(
                inputs, (-1, self.input_num_capsule, self.input_dim_capsule)
            )
            # [None, 1, n_in, in_dim, 1] tiled to [None, n_out, n_in, in_dim, 1]
            inputs_expand = ops.expand_dims(ops.expand_dims(inputs, 1), -1)
            inputs_tiled = ops.tile(inputs_expand, [1, self.num_capsule, 1, 1, 1])
            # W @ x for every batch item: [None, n_out, n_in, out_dim]
            inputs_hat = ops.squeeze(ops.matmul(self.W, inputs_tiled), axis=-1)
            b = ops.zeros_like(inputs_hat[:, :, None, :, 0])  # [None, n_out, 1, n_in]
            for i in range(self.routings):
                c = ops.softmax(b, axis=1)
                outputs = _xifengguo_squash(ops.matmul(c, inputs_hat))
                if i < self.routings - 1:
                    b = b + ops.matmul(outputs, ops.swapaxes(inputs_hat, -1, -2))
            return ops.squeeze(outputs, axis=2)

    return TiledDRCaps, XifengGuoCapsuleLayer


def _xifengguo_squash(vectors, axis=-1):
    import keras
    from keras import ops

    s_squared_norm = ops.sum(ops.square(vectors), axis, keepdims=True)
    scale = (
        s_squared_norm
        / (1 + s_squared_norm)
        / ops.sqrt(s_squared_norm + keras.config.epsilon())
    )
    return scale * vectors


def _n_in(shape):
    n = 1
    for dim in shape[1:-1]:
        n *= dim
    return n


def useful_flops(name):
    """FLOPs of one training step of the votes formulation (see above)."""
    batch, grid, n_types, in_dim, n_out, out_dim, _ = SHAPES[name]
    n_in = n_types * (grid[0] * grid[1] if grid else 1)
    votes = 2 * batch * n_in * in_dim * n_out * out_dim
    contraction = 2 * batch * n_in * n_out * out_dim
    routing = 0 if n_out == 1 else (2 * ROUTING_ITERATIONS - 1) * contraction
    return 3 * (votes + routing)


def _model(name, formulation):
    import keras
    import numpy as np

    import keras_parcaps as kp

    batch, grid, n_types, in_dim, n_out, out_dim, shared = SHAPES[name]
    in_shape = (*grid, n_types, in_dim) if grid else (n_types, in_dim)
    tiled, xifengguo = _baseline_classes()
    if formulation.startswith("DRCaps"):
        layer = kp.layers.DRCaps(n_out, out_dim, share_weights=shared)
    elif formulation == "tiled":
        layer = tiled(n_out, out_dim, shared)
    else:
        layer = xifengguo(n_out, out_dim)
    inputs = keras.Input(in_shape)
    model = keras.Model(inputs, kp.layers.CapsuleLength()(layer(inputs)))
    model.compile(optimizer="sgd", loss=kp.losses.MarginLoss())
    rng = np.random.default_rng(0)
    x = kp.ops.squash(rng.normal(size=(batch, *in_shape)).astype("float32"))
    x = keras.ops.convert_to_numpy(x)
    y = keras.utils.to_categorical(rng.integers(0, n_out, batch), n_out)
    return model, x, y


def _step(formulation, model, x, y):
    from keras_parcaps.ops import routing_backend

    routing_backend.set_jit_compile(formulation != UNCOMPILED)
    model.train_on_batch(x, y)


def interleaved(name, formulations, rounds):
    """Step seconds per formulation, steps interleaved in one process."""
    models = {f: _model(name, f) for f in formulations}
    return bench_utils.interleaved(
        {f: functools.partial(_step, f, *models[f]) for f in formulations}, rounds
    )


def memory(name, formulation, steps=3):
    model, x, y = _model(name, formulation)
    base = bench_utils.rss_mib()
    for _ in range(steps):
        _step(formulation, model, x, y)
    return bench_utils.rss_mib() - base


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--shapes", default="sabcd", help="e.g. 's' or 'sd'")
    parser.add_argument(
        "--formulations",
        default=",".join(FORMULATIONS),
        help="comma-separated subset of " + ", ".join(FORMULATIONS),
    )
    parser.add_argument("--no-memory", action="store_true")
    parser.add_argument("--memory-child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_child:
        bench_utils.emit(memory(*args.memory_child))
        return
    import keras

    backend = keras.backend.backend()
    rate = bench_utils.matmul_rate()
    print(
        f"{backend}: dense 2048x2048 float32 matmul {rate / 1e9:.1f} GFLOP/s; "
        f"load average {os.getloadavg()[0]:.1f} at the start"
    )
    print(
        f"| backend | shape | formulation | step ms (median of {args.rounds}, "
        "interleaved) | speed-up of DRCaps (median ratio) | of matmul "
        "| peak MiB |"
    )
    print("| --- | --- | --- | ---: | ---: | ---: | ---: |")
    cases = {
        name: [
            f
            for f in args.formulations.split(",")
            if not (f == "xifengguo" and SHAPES[name][-1])  # unshared only
        ]
        for name in SHAPES
        if name[0] in args.shapes
    }
    # Memory first: a child's ru_maxrss starts at its parent's, so every child
    # is spawned before this process builds a model.
    mib = {(name, f): "" for name, fs in cases.items() for f in fs}
    if not args.no_memory:
        for name, f in mib:
            result, error = bench_utils.spawn(
                [Path(__file__).resolve(), "--memory-child", name, f]
            )
            mib[name, f] = error if result is None else f"{result:.0f}"
    for name, formulations in cases.items():
        times = interleaved(name, formulations, args.rounds)
        flops = useful_flops(name)
        for f in formulations:
            median = statistics.median(times[f])
            ratio = ""
            if f != "DRCaps" and "DRCaps" in times:
                ratio = statistics.median(
                    t / d for t, d in zip(times[f], times["DRCaps"], strict=True)
                )
                ratio = f"{ratio:.2f}x"
            print(
                f"| {backend} | {name} | {f} | {median * 1e3:.1f} | {ratio} "
                f"| {flops / median / rate:.1%} | {mib[name, f]} |",
                flush=True,
            )
    print(f"load average {os.getloadavg()[0]:.1f} at the end")


if __name__ == "__main__":
    main()
