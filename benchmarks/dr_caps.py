"""DRCaps training-step time and peak memory, against the tiled formulation.

The tiled formulation is the one popular tf.keras CapsNets use: W tiled over
the batch, the inputs tiled over the output capsules, then one batched matmul
(`u_hat = W_tiled @ u_tiled`). `DRCaps` contracts the unreplicated W and,
where that is smaller, routes without forming the votes at all.

Each (shape, formulation) runs in a fresh subprocess so that its peak
resident memory (ru_maxrss) above the process's level before the first step
is its own. Prints a markdown table.

    KERAS_BACKEND=jax python benchmarks/dr_caps.py
"""

import argparse
import statistics
from pathlib import Path

import bench_utils

SHAPES = {
    # name: (batch, grid, n_types, in_dim, n_out, out_dim, share_weights)
    "a: 1152x8 -> 10x16, shared, batch 128": (128, (6, 6), 32, 8, 10, 16, True),
    "b: 1250x256 -> 1x16, unshared, batch 15": (15, (25, 25), 2, 256, 1, 16, False),
    "c: 12x16 -> 15x16, unshared, batch 15": (15, None, 12, 16, 15, 16, False),
}


def _tiled_layer_class():
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
            return dynamic_routing(votes, 3)

    return TiledDRCaps


def _n_in(shape):
    n = 1
    for dim in shape[1:-1]:
        n *= dim
    return n


def measure(name, formulation, steps):
    import keras
    import numpy as np

    import keras_parcaps as kp

    batch, grid, n_types, in_dim, n_out, out_dim, shared = SHAPES[name]
    in_shape = (*grid, n_types, in_dim) if grid else (n_types, in_dim)
    if formulation == "DRCaps":
        layer = kp.layers.DRCaps(n_out, out_dim, share_weights=shared)
    else:
        layer = _tiled_layer_class()(n_out, out_dim, shared)
    inputs = keras.Input(in_shape)
    model = keras.Model(inputs, kp.layers.CapsuleLength()(layer(inputs)))
    model.compile(optimizer="sgd", loss=kp.losses.MarginLoss())
    rng = np.random.default_rng(0)
    x = kp.ops.squash(rng.normal(size=(batch, *in_shape)).astype("float32"))
    x = keras.ops.convert_to_numpy(x)
    y = keras.utils.to_categorical(rng.integers(0, n_out, batch), n_out)
    base = bench_utils.rss_mib()
    _, times, _ = bench_utils.train_steps(model, x, y, steps, warmup=2)
    return {
        "median_s": statistics.median(times),
        "peak_mib": bench_utils.rss_mib() - base,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument(
        "--shapes", default="abc", help="which shapes to run, e.g. 'a' or 'bc'"
    )
    parser.add_argument("--one", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        bench_utils.emit(measure(*args.one, args.steps))
        return
    import keras

    backend = keras.backend.backend()
    print(f"| backend | shape | formulation | step (ms, median of {args.steps}) "
          "| peak memory (MiB above start) |")
    print("| --- | --- | --- | --- | --- |")
    for name in SHAPES:
        if name[0] not in args.shapes:
            continue
        results = {}
        for formulation in ("DRCaps", "tiled"):
            r, error = bench_utils.spawn(
                [Path(__file__).resolve(), "--steps", args.steps,
                 "--one", name, formulation]
            )
            if r is None:
                print(f"| {backend} | {name} | {formulation} | {error} | |")
                continue
            results[formulation] = r
            print(f"| {backend} | {name} | {formulation} | {r['median_s'] * 1e3:.1f} "
                  f"| {r['peak_mib']:.0f} |", flush=True)
        if len(results) == 2:
            speedup = results["tiled"]["median_s"] / results["DRCaps"]["median_s"]
            print(f"| {backend} | {name} | speed-up | {speedup:.1f}x | |", flush=True)


if __name__ == "__main__":
    main()
