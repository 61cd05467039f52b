"""Benchmark suite: every layer and model builder against the machine's limits.

For each backend, each case (a layer alone, or a model from its builder) and
`jit_compile` on and off (`model.jit_compile`: XLA on TensorFlow and JAX,
`torch.compile` on PyTorch), one subprocess under a time limit measures a
`train_on_batch` step: the median of `--steps` steps after `--warmup` steps
(the first one traces and compiles), images per second, and peak memory (on
a GPU the device's peak allocation, on a CPU the growth of the process's
peak resident set size). Every figure is also given as a ratio to a limit:

- compute: the training step's FLOPs divided by its time, as a fraction of
  the same backend's dense float32 matmul FLOP/s, measured on the same
  machine in the same run (an `n x n` matmul, `2 n^3` FLOPs, best of several);
- memory: the peak as a fraction of the machine's RAM (of the GPU's memory
  on a GPU).

The FLOPs of a step are counted once per case, with PyTorch's
`torch.utils.flop_counter.FlopCounterMode` around one `train_on_batch` of
the same Keras model under `KERAS_BACKEND=torch`, and used for every
backend: it counts the matrix products and convolutions (forward and
backward), the work a matmul peak is a limit for, and a backend that does
more work for the same function (a different formulation, recomputation)
shows up as a lower fraction, which is what the figure is for.

Results accumulate in a JSON file (`--out`, one entry per backend and size,
so backends can be run one at a time) and the whole table is written into
`docs/benchmarks.md` between `<!-- bench:begin -->` and `<!-- bench:end -->`.

    python benchmarks/suite.py --backend torch --size small
    python benchmarks/suite.py --backend tensorflow jax torch --size paper \
        --timeout 300 --out runs/suite_paper.json
"""

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
from pathlib import Path

import bench_utils
from bench_utils import ROOT, rss_mib

BEGIN, END = "<!-- bench:begin -->", "<!-- bench:end -->"
BACKENDS = ("tensorflow", "jax", "torch")
# Per size: batch, image size for the builders, branches of the parallel
# models, matmul side of the peak probe. `small` keeps every case to seconds
# on a 2-core CPU; `paper` is the paper's 400x400, batch 15 (for a GPU).
SIZES = {
    "small": dict(batch=8, image=64, branches=3, matmul=2048),
    "paper": dict(batch=15, image=400, branches=None, matmul=8192),
}


# Cases. Each returns (model, x, y, description); layer cases are compiled
# here with SGD and a mean squared error against zeros, builders keep the
# optimizer and loss their builder compiled them with.


def _layer_case(layer, x, description):
    import keras
    import numpy as np

    inputs = keras.Input(x.shape[1:])
    model = keras.Model(inputs, layer(inputs))
    model.compile(optimizer=keras.optimizers.SGD(1e-3), loss="mse")
    y = np.zeros((x.shape[0], *model.output.shape[1:]), "float32")
    return model, x, y, description


def _normal(*shape):
    import numpy as np

    return np.random.default_rng(0).normal(size=shape).astype("float32")


def _vector_caps(*shape):
    import keras

    import keras_parcaps as kp

    return keras.ops.convert_to_numpy(kp.ops.squash(_normal(*shape)))


def _matrix_caps(*shape):
    import numpy as np

    x = _normal(*shape, 17)
    x[..., -1] = np.random.default_rng(1).uniform(size=x.shape[:-1])
    return x


def primary_caps(size):
    import keras_parcaps as kp

    if size == "paper":  # the DR Primary-Caps on a branch block's output
        x, caps, dim, kernel = _normal(15, 25, 25, 512), 2, 256, 1
    else:
        x, caps, dim, kernel = _normal(8, 16, 16, 64), 8, 8, 3
    layer = kp.layers.PrimaryCaps(caps, dim, kernel_size=kernel)
    return _layer_case(
        layer, x, f"{x.shape[1:]} -> {caps} caps x {dim}, {kernel}x{kernel}"
    )


def dr_caps(size):
    import keras_parcaps as kp

    if size == "paper":  # the Primary- to Mid-Caps of build_dr
        x, out, share = _vector_caps(15, 25, 25, 2, 256), 2, False
    else:
        x, out, share = _vector_caps(8, 6, 6, 8, 8), 10, True
    layer = kp.layers.DRCaps(out, 16, share_weights=share)
    n_in = x.shape[1] * x.shape[2] * x.shape[3]
    kind = "shared" if share else "unshared"
    return _layer_case(layer, x, f"{n_in}x{x.shape[-1]} -> {out}x16, {kind}")


def em_conv_caps(size):
    import keras_parcaps as kp

    if size == "paper":  # Mid-Caps of build_em
        x, out = _matrix_caps(15, 25, 25, 32), 1
    else:
        x, out = _matrix_caps(8, 9, 9, 8), 4
    layer = kp.layers.EMConvCaps(out, kernel_size=3, strides=2)
    grid = f"{x.shape[1]}x{x.shape[2]}x{x.shape[3]}"
    return _layer_case(layer, x, f"{grid} -> {out} types, K=3, stride 2")


def em_class_caps(size):
    import keras_parcaps as kp

    if size == "paper":  # Class-Caps of build_parallel_em(10)
        x, out = _matrix_caps(15, 12, 12, 10), 15
    else:
        x, out = _matrix_caps(8, 4, 4, 8), 5
    layer = kp.layers.EMClassCaps(out)
    grid = f"{x.shape[1]}x{x.shape[2]}x{x.shape[3]}"
    return _layer_case(layer, x, f"{grid} -> {out} classes")


def group_conv2d(size):
    import keras_parcaps as kp

    if size == "paper":  # the grouped convolution of the branch block
        x, filters, kernel, groups = _normal(15, 50, 50, 256), 256, 7, 64
    else:
        x, filters, kernel, groups = _normal(8, 16, 16, 64), 64, 3, 16
    layer = kp.layers.GroupConv2D(filters, kernel, groups=groups, padding="same")
    return _layer_case(
        layer,
        x,
        f"{x.shape[1:]}, {kernel}x{kernel}, {filters} filters, {groups} groups",
    )


def resnext_block(size):
    import keras_parcaps as kp

    if size == "paper":  # the branch block
        x, filters, card, kernel = _normal(15, 50, 50, 256), [256, 256, 512], 64, 7
    else:
        x, filters, card, kernel = _normal(8, 16, 16, 64), [64, 64, 128], 16, 3
    layer = kp.layers.ResNeXtBlock(filters, card, kernel_size=kernel, strides=2)
    return _layer_case(
        layer, x, f"{x.shape[1:]}, {filters}, cardinality {card}, {kernel}x{kernel}"
    )


def parallel_branch(size):
    import keras

    import keras_parcaps as kp

    if size == "paper":  # the DR branches of build_parallel_dr(12)
        x, n = _normal(15, 50, 50, 256), 12
        branch = kp.models.dr.dr_branch(x.shape[1:])
        description = f"{n} x the paper's DR branch (kp.models.dr.dr_branch)"
    else:
        x, n, width, length, kernel = _normal(8, 16, 16, 32), 3, 32, 16, 3
        branch_in = keras.Input(x.shape[1:])
        h = kp.layers.ResNeXtBlock(
            [width, width, 2 * width], width // 4, kernel_size=kernel, strides=2
        )(branch_in)
        h = kp.layers.PrimaryCaps(2, length)(h)
        branch = keras.Model(branch_in, kp.layers.DRCaps(1, 16)(h))
        description = (
            f"{n} x (block [{width}, {width}, {2 * width}], 2 caps x {length}, "
            "1 Mid-Cap)"
        )
    return _layer_case(kp.layers.ParallelBranch(branch, n), x, description)


def _builder_case(name, size, **options):
    import keras
    import numpy as np

    from keras_parcaps.models import get_model_spec

    spec = SIZES[size]
    if name == "build_sabour_capsnet":  # its own 28x28 grayscale input
        shape, classes = (28, 28, 1), 10
        batch = 128 if size == "paper" else spec["batch"]
    else:
        shape, classes = (spec["image"], spec["image"], 3), 15
        batch = spec["batch"]
    if "n_branches" in options and spec["branches"]:
        options["n_branches"] = spec["branches"]
    model = get_model_spec(name).builder(
        input_shape=shape, num_classes=classes, **options
    )
    x = np.random.default_rng(0).uniform(size=(batch, *shape)).astype("float32")
    y = keras.utils.to_categorical(np.arange(batch) % classes, classes)
    details = ", ".join(f"{k}={v}" for k, v in options.items())
    return (
        model,
        x,
        y,
        f"{shape[0]}x{shape[1]}x{shape[2]}" + (f", {details}" if details else ""),
    )


CASES = {
    "PrimaryCaps": primary_caps,
    "DRCaps": dr_caps,
    "EMConvCaps": em_conv_caps,
    "EMClassCaps": em_class_caps,
    "GroupConv2D": group_conv2d,
    "ResNeXtBlock": resnext_block,
    "ParallelBranch": parallel_branch,
    "build_dr": lambda s: _builder_case("build_dr", s, capsule_layers=3, n_mid_caps=2),
    "build_parallel_dr": lambda s: _builder_case(
        "build_parallel_dr", s, capsule_layers=3, n_branches=12
    ),
    "build_em": lambda s: _builder_case("build_em", s, capsule_layers=3, n_mid_caps=2),
    "build_parallel_em": lambda s: _builder_case(
        "build_parallel_em", s, capsule_layers=3, n_branches=10
    ),
    "build_resnext50": lambda s: _builder_case("build_resnext50", s),
    "build_sabour_capsnet": lambda s: _builder_case("build_sabour_capsnet", s),
}


# What runs in the subprocesses.


def _device():
    """The accelerator's name and memory in MiB, or None on a CPU."""
    import keras

    backend = keras.backend.backend()
    if backend == "torch":
        import torch

        if torch.cuda.is_available():
            props = torch.cuda.get_device_properties(0)
            return props.name, props.total_memory / 2**20
    elif backend == "jax":
        import jax

        device = jax.devices()[0]
        if device.platform == "gpu":
            return device.device_kind, device.memory_stats()["bytes_limit"] / 2**20
    else:
        import tensorflow as tf

        if tf.config.list_physical_devices("GPU"):
            name = tf.config.experimental.get_device_details(
                tf.config.list_physical_devices("GPU")[0]
            ).get("device_name", "GPU")
            out = subprocess.run(
                [
                    "nvidia-smi",
                    "--query-gpu=memory.total",
                    "--format=csv,noheader,nounits",
                ],
                capture_output=True,
                text=True,
                check=False,
            )
            return name, float(out.stdout.split()[0]) if out.stdout.strip() else None
    return None


def _device_peak_mib():
    import keras

    backend = keras.backend.backend()
    if backend == "torch":
        import torch

        return torch.cuda.max_memory_allocated() / 2**20
    if backend == "jax":
        import jax

        return jax.devices()[0].memory_stats()["peak_bytes_in_use"] / 2**20
    import tensorflow as tf

    return tf.config.experimental.get_memory_info("GPU:0")["peak"] / 2**20


def _ram_mib():
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**20


def probe(n, repeats):
    """Best dense float32 matmul FLOP/s of this backend, in the subprocess."""
    import keras

    best = bench_utils.matmul_seconds(n, repeats)
    device = _device()
    backend = keras.backend.backend()
    module = __import__(backend)
    return {
        "versions": f"Keras {keras.__version__}, {backend} {module.__version__}",
        "n": n,
        "best_s": best,
        "flops_per_s": 2 * n**3 / best,
        "device": device[0] if device else None,
        "memory_mib": device[1] if device else _ram_mib(),
    }


def measure(case, size, jit, steps, warmup):
    """One case's training step, in the subprocess."""
    import keras

    before = rss_mib()
    model, x, y, description = CASES[case](size)
    model.jit_compile = jit
    first, times, loss = bench_utils.train_steps(model, x, y, steps, warmup)
    device = _device()
    peak = _device_peak_mib() if device else rss_mib() - before
    return {
        "description": description,
        "params": model.count_params(),
        "batch": int(x.shape[0]),
        "jit_effective": bool(model.jit_compile),
        "first_s": first,
        "step_s": statistics.median(times),
        "peak_mib": peak,
        "loss_finite": bool(keras.ops.all(keras.ops.isfinite(loss))),
    }


def count_flops(case, size):
    """FLOPs of one training step, under KERAS_BACKEND=torch."""
    import keras
    from torch.utils.flop_counter import FlopCounterMode

    if keras.backend.backend() != "torch":
        raise RuntimeError("FLOPs are counted under KERAS_BACKEND=torch")
    model, x, y, _ = CASES[case](size)
    model.jit_compile = False
    model.train_on_batch(x, y)  # builds the optimizer's variables outside the count
    with FlopCounterMode(display=False) as counter:
        model.train_on_batch(x, y)
    return {"flops": counter.get_total_flops()}


# The driver.


def spawn(backend, task, timeout):
    """Runs `task` (a JSON list) in a fresh process; returns (result, error)."""
    script = Path(__file__).resolve()
    return bench_utils.spawn(
        [script, "--child", json.dumps(task)], timeout, backend=backend
    )


def _child(task):
    kind, *args = task
    result = {"probe": probe, "measure": measure, "flops": count_flops}[kind](*args)
    bench_utils.emit(result)


def _machine():
    model = platform.processor() or "unknown CPU"
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=False)
        for line in out.stdout.splitlines():
            if line.startswith("Model name:"):
                model = line.split(":", 1)[1].strip()
    except OSError:
        pass
    return f"{model}, {os.cpu_count()} cores, {_ram_mib() / 1024:.0f} GiB RAM"


def run_backend(backend, args, flops, argv):
    """Measures every case on one backend; returns its JSON entry."""
    now = datetime.datetime.now(datetime.timezone.utc)
    entry = {
        "date": now.strftime("%Y-%m-%d %H:%M UTC"),
        "machine": _machine(),
        "cores": os.cpu_count(),
        "command": " ".join(["python", "benchmarks/suite.py", *argv]),
        "steps": args.steps,
        "warmup": args.warmup,
        "timeout": args.timeout,
        "probe_repeats": args.probe_repeats,
        "load": [os.getloadavg()[0]],
        "rows": [],
    }
    n = args.matmul or SIZES[args.size]["matmul"]
    peak, error = spawn(backend, ["probe", n, args.probe_repeats], args.timeout)
    entry["peak"] = peak
    if error:
        entry["peak_error"] = error
    rate = f"{peak['flops_per_s'] / 1e9:.1f} GFLOP/s" if peak else error
    print(f"{backend}: matmul {n}x{n}: {rate}", flush=True)
    for case in args.cases:
        for jit in args.jit:
            task = ["measure", case, args.size, jit, args.steps, args.warmup]
            result, error = spawn(backend, task, args.timeout)
            row = {"case": case, "jit": jit, "flops": flops.get(case), **(result or {})}
            if error:
                row["error"] = error
            entry["rows"].append(row)
            print(backend, " | ".join(_cells(row, peak)), flush=True)
    entry["load"].append(os.getloadavg()[0])
    return entry


def _fmt(value, digits=2):
    if value >= 100:
        return f"{value:,.0f}"
    return f"{value:.{digits}f}" if value >= 1 else f"{value:.{digits}g}"


def _percent(fraction):
    percent = 100 * fraction
    return f"{percent:.1f}%" if percent >= 0.1 else f"{percent:.2g}%"


def _fraction(row, peak):
    """Achieved FLOP/s of a row as a fraction of the matmul peak, or None."""
    if peak and row.get("flops") and "step_s" in row:
        return row["flops"] / row["step_s"] / peak["flops_per_s"]
    return None


def _cells(row, peak):
    jit = "on" if row["jit"] else "off"
    if row["jit"] and row.get("jit_effective") is False:
        jit = "on (refused: off)"
    if "error" in row:
        return [row["case"], jit, row["error"]] + ["-"] * 8
    step, flops, fraction = row["step_s"], row.get("flops"), _fraction(row, peak)
    loss = "" if row.get("loss_finite", True) else " (loss not finite)"
    return [
        row["case"],
        jit,
        _fmt(row["first_s"]),
        _fmt(step * 1e3) + loss,
        _fmt(row["batch"] / step),
        _fmt(flops / 1e9, 3) if flops else "-",
        _fmt(flops / step / 1e9) if flops else "-",
        _percent(fraction) if fraction is not None else "-",
        f"{row['peak_mib']:,.0f}",
        _percent(row["peak_mib"] / peak["memory_mib"]) if peak else "-",
        f"{row['params']:,}",
    ]


HEADER = (
    "| case | jit_compile | first step s | step ms (median) | images/s | GFLOP/step "
    "| GFLOP/s | of matmul peak | peak MiB | of memory | params |\n"
    "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
)


def _render_entry(size, backend, entry):
    peak = entry.get("peak")
    device = f"; {peak['device']}" if peak and peak["device"] else ""
    versions = f"; {peak['versions']}" if peak else ""
    lines = [
        f"### {backend}, `--size {size}`",
        "",
        f"`{entry['command']}`; {entry['date']}; {entry['machine']}{device}"
        f"{versions}. Median of {entry['steps']} steps after {entry['warmup']} "
        f"warm-up step(s); {entry['timeout']:.0f} s limit per case and setting.",
    ]
    start, end = entry["load"][0], entry["load"][-1]
    load = f"Load average (1 min) {start:.1f} at the start, {end:.1f} at the end"
    if max(start, end) > 0.5 * entry["cores"]:
        load += (
            ": **measured under load; other processes shared the cores, so times "
            "are inflated and fractions of the limits deflated.**"
        )
    lines.append(load + ("." if load[-1] != "*" else ""))
    if peak:
        lines.append(
            f"Limits: dense {peak['n']}x{peak['n']} float32 matmul "
            f"{peak['flops_per_s'] / 1e9:.1f} GFLOP/s (best of "
            f"{entry['probe_repeats']}); memory {peak['memory_mib'] / 1024:.1f} GiB."
        )
    else:
        lines.append(f"Dense matmul probe {entry.get('peak_error', 'missing')}.")
    lines += ["", HEADER]
    lines += ["| " + " | ".join(_cells(row, peak)) + " |" for row in entry["rows"]]
    shapes = {r["case"]: r["description"] for r in entry["rows"] if "description" in r}
    if shapes:
        batches = sorted({r["batch"] for r in entry["rows"] if "batch" in r})
        described = "; ".join(f"{k}: {v}" for k, v in shapes.items())
        lines += ["", f"Inputs (batch {', '.join(map(str, batches))}): {described}."]
    best = {}
    for row in entry["rows"]:
        fraction = _fraction(row, peak)
        if fraction is not None and fraction > best.get(row["case"], (-1,))[0]:
            best[row["case"]] = (fraction, row["jit"])
    if best:
        furthest = sorted(best.items(), key=lambda item: item[1][0])[:3]
        named = ", ".join(
            f"{case} {_percent(f)} (jit_compile {'on' if jit else 'off'})"
            for case, (f, jit) in furthest
        )
        lines += [
            "",
            f"Furthest from the matmul limit, at their best setting: {named}.",
        ]
    return lines + [""]


def render(results):
    """The markdown that goes between the markers."""
    lines = ["_Generated by `benchmarks/suite.py`; do not edit by hand._", ""]
    for size, runs in sorted(results.get("runs", {}).items()):
        for backend in BACKENDS:
            if backend in runs:
                lines += _render_entry(size, backend, runs[backend])
    return "\n".join(lines).rstrip() + "\n"


def write_doc(path, body):
    """Replaces the text between the markers of `path` with `body`."""
    text = Path(path).read_text()
    if (
        text.count(BEGIN) != 1
        or text.count(END) != 1
        or text.find(BEGIN) > text.find(END)
    ):
        raise ValueError(f"{path} must hold {BEGIN} once, then {END} once")
    head, rest = text.split(BEGIN)
    _, tail = rest.split(END)
    Path(path).write_text(f"{head}{BEGIN}\n{body}{END}{tail}")


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="\n".join(__doc__.splitlines()[1:]),
    )
    parser.add_argument(
        "--backend",
        nargs="+",
        choices=BACKENDS,
        default=[os.environ.get("KERAS_BACKEND", "torch")],
    )
    parser.add_argument("--size", choices=sorted(SIZES), default="small")
    parser.add_argument("--cases", nargs="+", choices=list(CASES), default=list(CASES))
    parser.add_argument(
        "--jit",
        nargs="+",
        choices=["off", "on"],
        default=["off", "on"],
        help="jit_compile settings to measure",
    )
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument(
        "--timeout",
        type=float,
        default=120,
        help="seconds per case and setting, build and compilation included",
    )
    parser.add_argument("--matmul", type=int, help="side of the matmul probe")
    parser.add_argument("--probe-repeats", type=int, default=10)
    parser.add_argument(
        "--out",
        default=str(ROOT / "benchmarks" / "suite_results.json"),
        help="JSON file the results are merged into",
    )
    parser.add_argument(
        "--doc",
        default=str(ROOT / "docs" / "benchmarks.md"),
        help="markdown file to update between the markers ('' for none)",
    )
    parser.add_argument(
        "--render-only",
        action="store_true",
        help="rewrite --doc from --out without measuring",
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parser.parse_args(argv)
    if args.child:
        _child(json.loads(args.child))
        return
    args.jit = [setting == "on" for setting in args.jit]

    out = Path(args.out)
    results = json.loads(out.read_text()) if out.exists() else {}
    if not args.render_only:
        flops = results.setdefault("flops", {}).setdefault(args.size, {})
        for case in args.cases:
            if flops.get(case) is None:
                task = ["flops", case, args.size]
                counted, error = spawn("torch", task, args.timeout)
                flops[case] = counted["flops"] if counted else None
                print(
                    f"{case}: {flops[case] / 1e9:.3f} GFLOP per step"
                    if counted
                    else f"{case}: FLOPs not counted, {error}",
                    flush=True,
                )
        for backend in args.backend:
            entry = run_backend(backend, args, flops, argv)
            results.setdefault("runs", {}).setdefault(args.size, {})[backend] = entry
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps(results, indent=1) + "\n")
    if args.doc:
        write_doc(args.doc, render(results))
        print(f"wrote {args.doc}")


if __name__ == "__main__":
    main()
