"""Multi-process training against one process: same weights? steps/s?

For each case (backend, device, processes) this trains the small
`build_parallel_dr` of `tests/training/multiprocess_run.py` once in one plain
process and once in `processes` processes started like a launcher would
(torchrun; `TF_CONFIG`; the JAX coordinator variables), on the same global
batches, and reports the largest weight difference between the two runs and
the median time of a training step (after the first epoch) of each.

    python benchmarks/multiprocess_check.py --case torch:cpu:2 --case jax:cpu:2 \
        --epochs 3 --steps 5 --image-size 32 --out runs/multiprocess

`device` is `cpu` (CUDA hidden, JAX_PLATFORMS=cpu) or `gpu`; torch with
`gpu:1` runs the DistributedDataParallel path (NCCL) under torchrun with one
process. Writes `multiprocess_check.md` (a markdown table) and
`multiprocess_check.json` to `--out`.
"""

import argparse
import json
import os
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.training.multiprocess_run import launch  # noqa: E402


def _port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _device_env(device):
    if device == "cpu":
        return {"CUDA_VISIBLE_DEVICES": "", "JAX_PLATFORMS": "cpu"}
    return {}


def _results(processes, timeout):
    results, errors = [], []
    for process in processes:
        try:
            out, err = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, 9)
            out, err = process.communicate()
            errors.append(f"timed out after {timeout} s")
        if process.returncode:
            errors.append(err.strip().splitlines()[-1] if err.strip() else "failed")
        results += [
            json.loads(line) for line in out.splitlines() if line.startswith('{"index"')
        ]
    return results, errors


def _weights(path, backend):
    code = (
        "import sys, numpy as np, keras, keras_parcaps\n"
        "m = keras.saving.load_model(sys.argv[1])\n"
        "np.savez(sys.argv[2], *[keras.ops.convert_to_numpy(w) for w in m.weights])\n"
    )
    target = Path(path).with_suffix(".npz")
    subprocess.run(
        [sys.executable, "-c", code, str(path), str(target)],
        check=True,
        cwd=ROOT,
        env={
            **os.environ,
            "KERAS_BACKEND": backend,
            "CUDA_VISIBLE_DEVICES": "",
            "JAX_PLATFORMS": "cpu",
        },
        capture_output=True,
    )
    import numpy as np

    with np.load(target) as arrays:
        return [arrays[k] for k in sorted(arrays, key=lambda k: int(k.split("_")[1]))]


def run_case(case, args, out):
    import numpy as np

    backend, device, processes = case.split(":")
    processes = int(processes)
    flags = [
        "--epochs",
        str(args.epochs),
        "--steps",
        str(args.steps),
        "--image-size",
        str(args.image_size),
        "--no-validation",
        "--backbone",
        "paper",
    ]
    env = {**os.environ, **_device_env(device), "PYTHONPATH": str(ROOT)}
    single_dir = out / f"{backend}_{device}_single"
    multi_dir = out / f"{backend}_{device}_{processes}proc"
    row = {"case": case}
    start = time.time()
    single = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.training.multiprocess_run",
            str(single_dir),
            *flags,
        ],
        cwd=ROOT,
        env={**env, "KERAS_BACKEND": backend},
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    results, errors = _results([single], args.timeout)
    row["single_s"] = time.time() - start
    if errors or not results:
        row["error"] = f"single: {errors}"
        return row
    row["single_step_s"] = results[0]["step_s"]
    start = time.time()
    launched = launch(
        processes, [str(multi_dir), *flags], _port(), backend, _device_env(device)
    )
    results, errors = _results(launched, args.timeout)
    row["multi_s"] = time.time() - start
    if errors or len(results) != processes:
        row["error"] = f"{processes} processes: {errors}"
        return row
    row["devices"] = next(r["devices"] for r in results if r["index"] == 0)
    row["multi_step_s"] = max(r["step_s"] for r in results)
    a = _weights(single_dir / "model.keras", backend)
    b = _weights(multi_dir / "model.keras", backend)
    row["max_weight_diff"] = max(float(np.max(np.abs(x - y))) for x, y in zip(a, b))
    return row


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--case",
        action="append",
        required=True,
        help="backend:device:processes, e.g. torch:cpu:2",
    )
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--image-size", type=int, default=16)
    parser.add_argument("--timeout", type=int, default=240)
    parser.add_argument(
        "--jobs",
        type=int,
        default=1,
        help="cases run at the same time (on a many-core machine)",
    )
    parser.add_argument("--out", default="runs/multiprocess_check")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    def one(case):
        try:
            row = run_case(case, args, out)
        except Exception as error:  # reported in the table, the others go on
            row = {"case": case, "error": f"{type(error).__name__}: {error}"}
        print(json.dumps(row), flush=True)
        return row

    with ThreadPoolExecutor(args.jobs) as pool:
        rows = list(pool.map(one, args.case))
    (out / "multiprocess_check.json").write_text(json.dumps(rows, indent=2))
    lines = [
        f"Small build_parallel_dr, {args.image_size}x{args.image_size}, global "
        f"batch 6, {args.epochs} epochs x {args.steps} steps; step time is the "
        "median after the first epoch (slowest process).",
        "",
        "| case | one process: s/step | steps/s | several: s/step | steps/s "
        "| max weight difference | wall s (1 / n) | devices |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        if "error" in r:
            lines.append(
                f"| {r['case']} | failed: {r['error'][:120]} | - | - | - | - | - | - |"
            )
            continue
        lines.append(
            f"| {r['case']} | {r['single_step_s']:.3f} | {1 / r['single_step_s']:.2f} "
            f"| {r['multi_step_s']:.3f} | {1 / r['multi_step_s']:.2f} "
            f"| {r['max_weight_diff']:.1e} | {r['single_s']:.0f} / {r['multi_s']:.0f} "
            f"| {r['devices']} |"
        )
    (out / "multiprocess_check.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
