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

`--against-reference` instead times each layer against the same layer
routing by a straightforward reference formulation (`reference_em_routing`:
votes `(..., n_in, n_out, D)`, every M-step and E-step as broadcast
elementwise products and sums over the input axis, the full Gaussian
log-likelihood `-sum_h (V - mu)^2 / (2 var) - log(2 pi var) / 2` in every
E-step, all iterations run whatever `n_out`), both models built in one
process and their steps interleaved, and checks that both give the same
outputs. "of matmul" divides the nominal FLOPs of Procedure 1 (see
`nominal_flops`) per step time by the backend's 2048x2048 float32 matmul rate
measured in the same process.

Usage:

    python benchmarks/em_caps.py                   # everything, 3 backends
    python benchmarks/em_caps.py --backends jax --steps 10
    KERAS_BACKEND=torch python benchmarks/em_caps.py --against-reference
"""

import argparse
import functools
import json
import math
import os
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


def reference_em_routing(
    votes, activations, beta_a, beta_u, routing_iterations, final_lambda, epsilon
):
    """EM routing written out directly (the function of `kp.ops.em_routing`)."""
    from keras import ops

    from keras_parcaps.ops.em_routing import COST_SCALE, PRIOR_VOTES

    lead, (n_in, n_out, dim) = votes.shape[:-3], votes.shape[-3:]
    v = ops.reshape(ops.cast(votes, "float32"), (-1, n_in, n_out, dim))
    a = ops.reshape(ops.cast(activations, "float32"), (-1, n_in, 1))
    beta_a = ops.cast(beta_a, "float32")
    beta_u = ops.cast(beta_u, "float32")
    scale = ops.mean(ops.square(v), axis=(1, 2)) + epsilon  # (n, D)
    assignments = ops.ones_like(v[..., 0]) / n_out  # (n, n_in, n_out)
    for t in range(routing_iterations):
        lam = final_lambda * (1.0 - 0.95 ** (t + 1))
        r = assignments * a
        total = ops.sum(r, axis=1)  # (n, n_out)
        weights = ops.expand_dims(r / (ops.expand_dims(total, 1) + epsilon), -1)
        mean = ops.sum(weights * v, axis=1)  # (n, n_out, D)
        deviation = v - ops.expand_dims(mean, 1)
        spread = ops.sum(
            ops.expand_dims(r, -1) * ops.square(deviation), axis=1
        )  # with the variance prior of `em_m_step`, worth PRIOR_VOTES votes
        variance = (spread + PRIOR_VOTES * ops.expand_dims(scale, 1)) / (
            ops.expand_dims(total, -1) + PRIOR_VOTES + epsilon
        ) + epsilon
        log_ratio = ops.log(variance / ops.expand_dims(scale, 1))
        cost = ops.sum(ops.expand_dims(beta_u, -1) + 0.5 * log_ratio, axis=-1)
        cost = cost * total * (COST_SCALE * n_out / n_in)
        logits = lam * (beta_a - cost)
        if t < routing_iterations - 1:
            log_p = -ops.sum(
                ops.square(deviation) / (2.0 * ops.expand_dims(variance, 1)), axis=-1
            ) - 0.5 * ops.sum(
                ops.log(2.0 * math.pi * ops.expand_dims(variance, 1)), axis=-1
            )
            assignments = ops.softmax(
                ops.expand_dims(ops.log_sigmoid(logits), 1) + log_p, axis=-1
            )
    return (
        ops.reshape(mean, (-1, *lead[1:], n_out, dim)),
        ops.reshape(ops.sigmoid(logits), (-1, *lead[1:], n_out)),
    )


def nominal_flops(layer, batch, grid, types, outputs, iterations=3, side=4):
    """FLOPs of one training step by Procedure 1, counted per vote entry.

    Forward: the votes (`2 P` per pose entry), then per iteration an M-step
    (weighted mean 2, variance 4 per vote entry) and, but in the last, an
    E-step (deviation, square, scale, sum: 4); backward counted as twice the
    forward.
    """
    if layer == "conv":
        out = (grid - 3) // 2 + 1
        entries = batch * out * out * 9 * types * outputs * side * side
    else:
        entries = batch * grid * grid * types * outputs * side * side
    forward = entries * (2 * side + 6 * iterations + 4 * (iterations - 1))
    return 3 * forward


def against_reference(rounds):
    """Runs in one process: ours vs the reference, interleaved."""
    import keras
    import numpy as np

    import keras_parcaps as kp

    class Reference:
        def route(self, votes, activations):
            from keras import ops

            poses, acts = reference_em_routing(
                votes,
                activations,
                self.beta_a,
                self.beta_u,
                self.routing_iterations,
                self.final_lambda,
                self.epsilon,
            )
            outputs = ops.concatenate([poses, ops.expand_dims(acts, -1)], axis=-1)
            return ops.cast(outputs, self.compute_dtype)

    class ReferenceEMConvCaps(Reference, kp.layers.EMConvCaps):
        pass

    class ReferenceEMClassCaps(Reference, kp.layers.EMClassCaps):
        pass

    rng = np.random.default_rng(0)
    rate = bench_utils.matmul_rate()
    backend = keras.backend.backend()
    print(
        f"{backend}: 2048x2048 float32 matmul {rate / 1e9:.1f} GFLOP/s; "
        f"load average {os.getloadavg()[0]:.1f} at the start"
    )
    print(
        f"| backend | layer | formulation | step ms (median of {rounds}, "
        "interleaved) | speed-up (median ratio) | of matmul | max output diff |"
    )
    print("| --- | --- | --- | ---: | ---: | ---: | ---: |")
    for name, layer, batch, grid, types, outputs in TIMING:
        x = rng.normal(size=(batch, grid, grid, types, 17)).astype("float32")
        x[..., -1] = rng.uniform(size=x.shape[:-1])
        models = {}
        for formulation in ("EM routing", "reference"):
            keras.utils.set_random_seed(0)
            if layer == "conv":
                cls = (
                    kp.layers.EMConvCaps
                    if formulation == "EM routing"
                    else ReferenceEMConvCaps
                )
                caps = cls(outputs, kernel_size=3, strides=2)
            else:
                cls = (
                    kp.layers.EMClassCaps
                    if formulation == "EM routing"
                    else ReferenceEMClassCaps
                )
                caps = cls(outputs)
            inputs = keras.Input(x.shape[1:])
            model = keras.Model(inputs, caps(inputs))
            model.compile(optimizer=keras.optimizers.SGD(1e-3), loss="mse")
            models[formulation] = model
        ours, ref = models["EM routing"], models["reference"]
        ref.set_weights(ours.get_weights())
        diff = np.abs(
            keras.ops.convert_to_numpy(ours(x)) - keras.ops.convert_to_numpy(ref(x))
        ).max()
        y = np.zeros((batch, *ours.output.shape[1:]), "float32")
        steps = bench_utils.interleaved(
            {f: functools.partial(m.train_on_batch, x, y) for f, m in models.items()},
            rounds,
        )
        order = list(models)
        flops = nominal_flops(layer, batch, grid, types, outputs)
        for f in order:
            median = statistics.median(steps[f])
            ratio = ""
            if f == "reference":
                ratio = statistics.median(
                    t / o for t, o in zip(steps[f], steps["EM routing"], strict=True)
                )
                ratio = f"{ratio:.2f}x"
            print(
                f"| {backend} | {name} | {f} | {median * 1e3:.1f} | {ratio} "
                f"| {flops / median / rate:.1%} | {diff:.1e} |",
                flush=True,
            )
    print(f"load average {os.getloadavg()[0]:.1f} at the end")


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
    parser.add_argument("--against-reference", action="store_true")
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.against_reference:
        against_reference(args.rounds)
        return
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
                f"{seconds * 1e3:.0f} | {mib:.0f}"
                if error is None
                else f"failed: {error} |"
            )
            print(
                f"| {name} | {batch} | {grid}x{grid}x{types} | {backend} | {cells} |",
                flush=True,
            )

    print()
    print(
        "| EMConvCaps Mid-Caps (K=3, stride 2, 32 -> 1 types) | "
        + " | ".join(backends)
        + " |"
    )
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
                f"{mib:.0f} MiB, {seconds * 1e3:.0f} ms"
                if error is None
                else f"failed: {error}"
            )
        print(
            f"| batch {batch}, grid {grid}x{grid} | " + " | ".join(cells) + " |",
            flush=True,
        )


if __name__ == "__main__":
    main()
