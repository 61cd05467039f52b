"""Markers shared by the test modules."""

import keras
import pytest

# The backend that runs the tests of backend-neutral program logic: PyTorch
# starts a subprocess and trains a tiny model fastest on a CPU.
ONCE_BACKEND = "torch"


def once(reason: str):
    """Runs a test under `ONCE_BACKEND` only.

    For tests whose subject does not depend on the backend (the command
    line's run folders and refusals, KerasTuner's protocols, imports) and
    that cost a fresh interpreter or a search: `make test` runs every
    backend, so they still run once in every `make test`.

    Args:
        reason: Why the test's subject does not depend on the backend.
    """
    return pytest.mark.skipif(
        keras.backend.backend() != ONCE_BACKEND,
        reason=f"backend-neutral, run on {ONCE_BACKEND} only: {reason}",
    )
