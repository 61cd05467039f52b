"""What every benchmark shares: timing training steps (one model's, or
competing ones interleaved), the backend's matmul rate, and one measurement
per subprocess under a time limit.

The scripts import it as a sibling module (`import bench_utils`): run them as
`python benchmarks/<name>.py`, from anywhere.
"""

import json
import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULT = "RESULT "


def sync(tensor):
    """Waits for `tensor` (asynchronous on a GPU, and on JAX) by reading one value."""
    import keras

    keras.ops.convert_to_numpy(keras.ops.reshape(tensor, (-1,))[0])


def rss_mib() -> float:
    """The process's peak resident set size so far, in MiB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def train_steps(model, x, y, steps: int, warmup: int = 1):
    """Times `model.train_on_batch(x, y)`.

    Args:
        model: A compiled Keras model.
        x, y: One batch.
        steps: Timed steps, after the warm-up.
        warmup: Untimed steps first; the first one traces and compiles.

    Returns:
        `(first, times, loss)`: the seconds of the first warm-up step (with
        tracing and compilation), the seconds of each timed step, and the
        last loss.
    """
    first, loss = None, None
    for _ in range(max(warmup, 1)):
        start = time.perf_counter()
        loss = model.train_on_batch(x, y)
        first = time.perf_counter() - start if first is None else first
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        loss = model.train_on_batch(x, y)
        times.append(time.perf_counter() - start)
    return first, times, loss


def matmul_seconds(n: int = 2048, repeats: int = 10) -> float:
    """The best time of a dense float32 `n x n` matmul on this backend.

    The machine's limit that the layers' rates are compared with: two
    untimed runs first (kernel selection, allocation), then the best of
    `repeats`. `2 * n**3` over it is the backend's matmul FLOP/s.
    """
    import keras
    import numpy as np

    rng = np.random.default_rng(0)
    a = keras.ops.convert_to_tensor(rng.standard_normal((n, n), "float32"))
    b = keras.ops.convert_to_tensor(rng.standard_normal((n, n), "float32"))
    times = []
    for _ in range(repeats + 2):
        start = time.perf_counter()
        sync(keras.ops.matmul(a, b))
        times.append(time.perf_counter() - start)
    return min(times[2:])


def matmul_rate(n: int = 2048, repeats: int = 10) -> float:
    """The backend's dense float32 matmul FLOP/s (see `matmul_seconds`)."""
    return 2 * n**3 / matmul_seconds(n, repeats)


def interleaved(steps: dict, rounds: int, warmup: int = 2) -> dict:
    """Times competing steps in one process, interleaved.

    Each round runs every step once, in an order rotated by one each round,
    so that no step always follows another (caches, allocator, turbo).

    Args:
        steps: Name -> a function running one step.
        rounds: Timed rounds.
        warmup: Untimed runs of each step first (tracing, compilation).

    Returns:
        Name -> the seconds of each timed run.
    """
    for step in steps.values():
        for _ in range(warmup):
            step()
    names = list(steps)
    times = {name: [] for name in names}
    for r in range(rounds):
        shift = r % len(names)
        for name in names[shift:] + names[:shift]:
            start = time.perf_counter()
            steps[name]()
            times[name].append(time.perf_counter() - start)
    return times


def emit(result):
    """Prints `result` for `spawn`, in the child process."""
    print(RESULT + json.dumps(result), flush=True)


def spawn(arguments, timeout=None, backend=None):
    """Runs `python <arguments>` in a fresh process; returns `(result, error)`.

    The child prints its result with `emit`; `result` is the last one it
    printed, or `None` with `error` saying why (a timeout or the child's
    exception). A session of its own, so that a timeout also ends what the
    child started (torch.compile's compile workers).

    Args:
        arguments: The script and its arguments.
        timeout: Seconds before the child is stopped; `None` waits.
        backend: `KERAS_BACKEND` of the child; default this process's.
    """
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    if backend:
        env["KERAS_BACKEND"] = backend
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    process = subprocess.Popen(
        [sys.executable, *map(str, arguments)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        return None, f"stopped after {timeout:.0f} s"
    lines = [x for x in stdout.splitlines() if x.startswith(RESULT)]
    if process.returncode != 0 or not lines:
        # The exception's line, not the warnings logged after it.
        errors = [x for x in stderr.splitlines() if "Error" in x.split(":")[0]]
        tail = errors or stderr.strip().splitlines() or [f"exit {process.returncode}"]
        return None, f"failed: {tail[-1][:120]}"
    return json.loads(lines[-1][len(RESULT) :]), None


def shared_data(name: str) -> Path:
    """`$PARCAPS_DATA/<name>`, else `../shared/data/<name>` beside the clone."""
    from keras_parcaps.data import data_dir

    path = data_dir(name) or data_dir(name, root=ROOT.parent / "shared" / "data")
    if path is None:
        raise SystemExit(f"{name} not found ($PARCAPS_DATA or ../shared/data)")
    return path
