"""Runs the test suite once per Keras backend, the backends side by side.

    python ci/test_backends.py                        # every backend, 3 at once
    python ci/test_backends.py --backends jax torch --jobs 1 -- -x tests/ops

Each backend runs `python -m pytest tests` in its own process with
`KERAS_BACKEND` set. On a small CPU machine the backends share the cores
better than one backend's intra-op threads do (most test steps are too small
to split), so each process gets one thread (`--threads`) and up to `--jobs`
run at once. A backend given `--workers BACKEND=N` runs its tests in N
pytest-xdist processes (`-n N --dist worksteal`: each takes half of the
tests in order and takes over half of another's remaining tests when it
runs out), so no backend finishes alone on one core while the other core
idles. The processes of a run share one JAX compilation cache.
Every backend's output goes to `<log-dir>/<backend>.log` and is printed,
whole, when that backend finishes; the exit status is non-zero when any
backend fails, and a last table gives each backend's wall time.
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BACKENDS = ("tensorflow", "jax", "torch")
ROOT = Path(__file__).resolve().parents[1]


def _environment(backend, threads, jax_cache):
    env = dict(os.environ, KERAS_BACKEND=backend, PYTHONUNBUFFERED="1")
    # Every JAX process of the run (the JAX tests' workers, the subprocesses
    # that load or train on JAX) reads the programs the others compiled.
    env.setdefault("JAX_COMPILATION_CACHE_DIR", jax_cache)
    if threads:
        n = str(threads)
        env.update(
            OMP_NUM_THREADS=n,
            MKL_NUM_THREADS=n,
            TF_NUM_INTRAOP_THREADS=n,
            TF_NUM_INTEROP_THREADS=n,
        )
        if threads == 1:
            flags = env.get("XLA_FLAGS", "")
            env["XLA_FLAGS"] = f"{flags} --xla_cpu_multi_thread_eigen=false".strip()
    return env


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--backends", nargs="+", default=list(BACKENDS), choices=BACKENDS
    )
    parser.add_argument(
        "--jobs",
        type=int,
        default=len(BACKENDS),
        help="backends run at once (1: one after another)",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="intra-op threads per backend (0: the default)",
    )
    parser.add_argument(
        "--workers",
        nargs="*",
        default=[],
        metavar="BACKEND=N",
        help="pytest-xdist processes for a backend's tests (default: 1 each)",
    )
    parser.add_argument("--log-dir", default=str(ROOT / ".test-logs"))
    parser.add_argument(
        "pytest_args", nargs="*", help="arguments for pytest, after `--`"
    )
    args = parser.parse_args(argv)
    workers = _workers(parser, args.workers)
    log_dir = Path(args.log_dir)
    log_dir.mkdir(parents=True, exist_ok=True)
    pytest_args = args.pytest_args or ["-q"]
    if not any(
        (ROOT / arg.split("::")[0]).exists()
        for arg in pytest_args
        if not arg.startswith("-")
    ):
        pytest_args = [*pytest_args, "tests"]  # the whole suite unless told
    commands = {
        backend: [
            sys.executable,
            "-m",
            "pytest",
            *(
                ["-n", str(workers[backend]), "--dist", "worksteal"]
                if workers.get(backend, 1) > 1
                else []
            ),
            *pytest_args,
        ]
        for backend in args.backends
    }
    waiting = list(args.backends)
    running, results = {}, {}
    jax_cache = tempfile.mkdtemp(prefix="parcaps-jax-cache-")
    start = time.perf_counter()
    try:
        _run(commands, args, jax_cache, log_dir, waiting, running, results)
    finally:
        for process, log, _ in running.values():  # interrupted: stop the rest
            process.terminate()
            log.close()
        shutil.rmtree(jax_cache, ignore_errors=True)
    print("\n| backend | exit | wall min |\n| --- | --- | --- |")
    for backend in args.backends:
        code, seconds = results[backend]
        print(f"| {backend} | {code} | {seconds / 60:.1f} |")
    print(f"All backends: {(time.perf_counter() - start) / 60:.1f} min wall.")
    failed = [backend for backend, (code, _) in results.items() if code]
    if failed:
        print(f"FAILED on: {', '.join(failed)}")
    return 1 if failed else 0


def _workers(parser, values):
    workers = {}
    for value in values:
        backend, _, count = value.partition("=")
        if backend not in BACKENDS or not count.isdigit() or int(count) < 1:
            parser.error(
                f"--workers takes BACKEND=N with BACKEND one of {', '.join(BACKENDS)}"
                f" and N >= 1; got {value!r}"
            )
        workers[backend] = int(count)
    return workers


def _run(commands, args, jax_cache, log_dir, waiting, running, results):
    while waiting or running:
        while waiting and len(running) < max(args.jobs, 1):
            backend = waiting.pop(0)
            log = open(log_dir / f"{backend}.log", "w")
            print(f"=== KERAS_BACKEND={backend}: started ({log.name})", flush=True)
            process = subprocess.Popen(
                commands[backend],
                cwd=ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=_environment(backend, args.threads, jax_cache),
            )
            running[backend] = (process, log, time.perf_counter())
        time.sleep(0.5)
        for backend, (process, log, began) in list(running.items()):
            if process.poll() is None:
                continue
            log.close()
            del running[backend]
            results[backend] = (process.returncode, time.perf_counter() - began)
            print(f"=== KERAS_BACKEND={backend}: exit {process.returncode}", flush=True)
            sys.stdout.write(Path(log.name).read_text())
            sys.stdout.flush()


if __name__ == "__main__":
    sys.exit(main())
