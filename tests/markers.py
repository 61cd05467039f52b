"""Markers shared by the test modules."""

import keras
import pytest

# The backend that runs the tests of backend-neutral program logic: PyTorch
# starts a subprocess and trains a tiny model fastest on a CPU.
ONCE_BACKEND = "torch"


def on_backend(backend: str, reason: str):
    """Runs a test under `backend` only.

    For the learning tests (a network trained for hundreds of steps on real
    or synthetic images): one backend, the cheapest for that network on a
    CPU, carries the claim, and tests/layers and tests/models check on every
    backend that the same layers compute the same function.

    Args:
        backend: The backend that runs the test.
        reason: Why that backend.
    """
    return pytest.mark.skipif(
        keras.backend.backend() != backend,
        reason=f"run on {backend} only: {reason}",
    )


def once(reason: str):
    """Runs a test under `ONCE_BACKEND` only.

    For tests whose subject does not depend on the backend (the command
    line's run folders and refusals, KerasTuner's protocols, imports) and
    that cost a fresh interpreter or a search: `make test` runs every
    backend, so they still run once in every `make test`.

    Args:
        reason: Why the test's subject does not depend on the backend.
    """
    return on_backend(ONCE_BACKEND, f"backend-neutral: {reason}")


def builder_configs(configs):
    """The (capsule size, capsule layers) cases of a builder test, spread out.

    Every case runs on PyTorch, where building and stepping a model eagerly
    takes seconds. On TensorFlow and JAX a new network costs 20-100 s of
    tracing or XLA compilation (JAX the most: its builder checks were 6 of
    the suite's 35 minutes), so the two share the cases: JAX runs the middle
    one, TensorFlow the others. Each case still runs on two backends, each
    backend runs every builder; the networks' graphs are the same on every
    backend, and every layer and routing formulation is checked on every
    backend in tests/layers and tests/ops.

    Args:
        configs: At least two `(capsule_size, capsule_layers)` tuples.
    """
    backend = keras.backend.backend()
    middle = len(configs) // 2

    def runs(i):
        if backend == "jax":
            return i == middle
        if backend == "tensorflow":
            return i != middle
        return True

    return [
        pytest.param(
            *config,
            marks=pytest.mark.skipif(
                not runs(i),
                reason=f"spread over the backends: {backend} "
                "runs other cases (tests/markers.builder_configs)",
            ),
        )
        for i, config in enumerate(configs)
    ]


def not_on_backend(backend: str, reason: str):
    """Skips a test under `backend`, which checks the same thing elsewhere.

    For a network's one-step check where one backend's compilation costs
    many times the others' (JAX's XLA compiling ResNeXt-50's training step:
    85 s against 15-35 s), when the network's layers are still checked on
    that backend in tests/layers.

    Args:
        backend: The backend that skips the test.
        reason: Why the test adds nothing there.
    """
    return pytest.mark.skipif(
        keras.backend.backend() == backend,
        reason=f"not on {backend}: {reason}",
    )
