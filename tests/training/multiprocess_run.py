"""One process of a (possibly multi-process) training run, for the tests.

`python -m tests.training.multiprocess_run OUT [--pause S] [--epochs E]
[--steps S] [--image-size P] [--no-validation] [--backbone B]` trains a
small `build_parallel_dr` (16x16 images, 3 classes, 2 branches, 2 capsule
layers, the plain CNN backbone unless `--backbone paper`) with
`kp.training.train_and_evaluate` for 2 epochs of 2 steps, 2 images per class
(global batches of 6), per-epoch validation and a final evaluation, seed 0.
Launched alone it trains in one process; launched by `launch(n, ...)`
(below) as n processes it trains data-parallel over them
(`distribute=True`). With `--pause S` it sleeps S seconds before the second
epoch, so a test can kill it there; with `PARCAPS_TEST_PIDS=DIR` each
process writes its pid to `DIR/<process index>`. The last line of stdout is
JSON: the process index and count, the devices, the final accuracy, the
files this process wrote through `kp.training.saving` (checkpoints,
`model.keras`) and the median time of a training step after the first epoch
(`step_s`).

`launch(n, args, port)` starts n such processes with the launcher
environment of the current backend (torchrun for torch, `TF_CONFIG`, the
JAX coordinator variables) and returns the `Popen`s.
"""

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

from tests.training.cpu_devices import split_cpu

ROOT = Path(__file__).resolve().parents[2]
EPOCHS, STEPS, IMAGES_PER_CLASS = 2, 2, 2


def free_port() -> int:
    """A TCP port of localhost that is free now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def launch(n, args, port, backend, env=None):
    """Starts `n` processes of this script; returns their `Popen`s.

    With `n == 1`, one plain process (no launcher, `port` unused).
    """
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "KERAS_BACKEND": backend,
        "TF_CPP_MIN_LOG_LEVEL": "3",
        **(env or {}),
    }
    script = [sys.executable, "-m", "tests.training.multiprocess_run", *args]
    options = dict(
        cwd=ROOT,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    if n == 1:
        return [subprocess.Popen(script, env=env, **options)]
    if backend == "torch":
        # torchrun itself, as users launch it.
        command = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            f"--nproc_per_node={n}",
            "--master_addr=127.0.0.1",
            f"--master_port={port}",
            "--max_restarts=0",
            "-m",
            "tests.training.multiprocess_run",
            *args,
        ]
        return [subprocess.Popen(command, env=env, **options)]
    # TensorFlow: one address per worker; `port` is the first.
    ports = [port] + [free_port() for _ in range(n - 1)]
    processes = []
    for index in range(n):
        if backend == "tensorflow":
            extra = {
                "TF_CONFIG": json.dumps(
                    {
                        "cluster": {"worker": [f"127.0.0.1:{p}" for p in ports]},
                        "task": {"type": "worker", "index": index},
                    }
                )
            }
        else:
            extra = {
                "JAX_COORDINATOR_ADDRESS": f"127.0.0.1:{port}",
                "JAX_NUM_PROCESSES": str(n),
                "JAX_PROCESS_ID": str(index),
            }
        processes.append(subprocess.Popen(script, env={**env, **extra}, **options))
    return processes


def main(argv):
    import argparse

    parser = argparse.ArgumentParser()
    parser.add_argument("out")
    parser.add_argument("--pause", type=float, default=0.0)
    parser.add_argument("--epochs", type=int, default=EPOCHS)
    parser.add_argument("--steps", type=int, default=STEPS)
    parser.add_argument("--image-size", type=int, default=16)
    parser.add_argument("--no-validation", action="store_true")
    # The tests' default: the plain CNN backbone (BatchNormalization included)
    # compiles in half the time of the paper's ResNeXt blocks (one process of
    # this run: 19 s against 47 s on TensorFlow, 24 s against 38 s on JAX,
    # --cpu-devices 2, alone on the 2-core machine), and a test starts five.
    # The blocks hold no state that data-parallel training treats apart.
    parser.add_argument("--backbone", choices=("plain", "paper"), default="plain")
    parser.add_argument(
        "--cpu-devices",
        type=int,
        default=0,
        help="one process, data-parallel over this many CPU devices (JAX, "
        "TensorFlow): the reference of several processes",
    )
    parser.add_argument(
        "--sgd",
        action="store_true",
        help="train with SGD (momentum 0.9, learning rate 0.05) instead of Nadam",
    )
    args = parser.parse_args(argv)
    if args.cpu_devices:
        split_cpu(args.cpu_devices)

    import keras

    import keras_parcaps as kp
    from keras_parcaps.training import saving

    count = kp.training.initialize_processes()
    keras.utils.set_random_seed(0)
    # As in the model-level tests (tests/conftest.py): native grouped
    # convolutions, which compile in seconds where XLA's per-group split
    # takes minutes, and the routing loops compiled on JAX only.
    from keras_parcaps.layers import group_conv2d
    from keras_parcaps.ops import routing_backend

    group_conv2d.default_implementation = lambda: "native"
    routing_backend.set_jit_compile(keras.backend.backend() == "jax")
    # Records the checkpoints and models this process writes into the run
    # folder (the other processes save into a scratch folder).
    args_out = args.out
    written, originals = [], {}
    for name in ("save_weights", "save_model"):
        originals[name] = getattr(saving, name)

        def record(model, path, *args, _original=originals[name], **kwargs):
            if Path(args_out).resolve() in Path(path).resolve().parents:
                written.append(Path(path).name)
            return _original(model, path, *args, **kwargs)

        setattr(saving, name, record)
    try:
        return _train(args, count, written)
    finally:
        for name, original in originals.items():
            setattr(saving, name, original)


def _train(args, count, written):
    import keras

    import keras_parcaps as kp
    from keras_parcaps.data import synthetic_cells
    from keras_parcaps.training import distribution_backend

    pause = args.pause
    if os.environ.get("PARCAPS_TEST_PIDS"):
        pids = Path(os.environ["PARCAPS_TEST_PIDS"])
        (pids / str(kp.training.process_index())).write_text(str(os.getpid()))

    class Timing(keras.callbacks.Callback):
        """Pauses before epoch 1 if asked; times the steps after the first."""

        ends = []

        def on_epoch_begin(self, epoch, logs=None):
            if epoch == 1 and pause:
                time.sleep(pause)

        def on_train_batch_end(self, batch, logs=None):
            self.ends.append(time.perf_counter())

    data = synthetic_cells(
        counts=[5, 4, 3],
        classes=["NGS", "LYT", "EOS"],
        image_size=args.image_size,
        seed=0,
    )
    train_idx = [0, 1, 2, 5, 6, 9, 10]
    val_idx = [3, 4, 7, 8, 11]

    def build(input_shape, num_classes):
        model = kp.models.build_parallel_dr(
            input_shape=input_shape,
            num_classes=num_classes,
            n_branches=2,
            capsule_layers=2,
            backbone=args.backbone,
        )
        if args.sgd:
            kp.models.compile_model(
                model,
                keras.optimizers.SGD(0.05, momentum=0.9),
                num_classes=num_classes,
            )
        return model

    report = kp.training.train_and_evaluate(
        build,
        data.subset(train_idx),
        data.subset(val_idx),
        Path(args.out),
        epochs=args.epochs,
        steps_per_epoch=args.steps,
        orientations=False,
        validate=not args.no_validation,
        distribute=bool(args.cpu_devices)
        or count > 1
        or distribution_backend.launcher_processes() > 1
        or "TORCHELASTIC_RUN_ID" in os.environ,
        images_per_class=IMAGES_PER_CLASS,
        recompile=not args.sgd,
        verbose=0,
        callbacks=[Timing()],
    )
    # Steps after the first epoch's first (which traces and compiles); the
    # steps of the later epochs only, so validation time is left out.
    ends = Timing.ends[args.steps :]
    spans = [b - a for a, b in zip(ends, ends[1:])]
    spans = [s for i, s in enumerate(spans) if (i + 1) % args.steps]
    print(
        json.dumps(
            {
                "index": distribution_backend.process_index(),
                "count": count,
                "devices": distribution_backend.describe(),
                "acc": report["acc"],
                "written": written,
                "step_s": float(sorted(spans)[len(spans) // 2]) if spans else None,
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
