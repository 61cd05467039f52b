import os
import shutil
import tempfile

import keras
import numpy as np
import pytest

from keras_parcaps.ops import routing_backend


def pytest_report_header(config):
    return f"keras {keras.__version__}, backend: {keras.backend.backend()}"


@pytest.fixture(autouse=True)
def _seed():
    keras.utils.set_random_seed(0)
    np.random.seed(0)
    # The routing loops run as plain keras.ops in tests: compiling them with
    # XLA for every small shape and batch size a test uses would multiply
    # the suite's time (about 1 min per layer check on TensorFlow). The
    # compiled path is tested against this one where the `compiled_routing`
    # fixture asks for it.
    routing_backend.set_jit_compile(False)
    yield
    keras.config.set_dtype_policy("float32")


@pytest.fixture
def compiled_routing():
    """Routing compiled by the backend's JIT, as outside tests."""
    routing_backend.set_jit_compile(True)
    yield
    routing_backend.set_jit_compile(False)


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def _torch_without_onednn():
    # torch 2.13's CPU build corrupts its heap ("free(): invalid next size",
    # then abort) in the backward pass of the small grouped convolutions of
    # tests/layers/test_parallel_branch.py when other tests ran before them
    # in the process; with oneDNN (mkldnn) off the whole file passes. The
    # tests check our code's results, not oneDNN's kernels, so they run
    # without it; the crash is reported in the issue tracker.
    if keras.backend.backend() == "torch":
        import torch

        torch.backends.mkldnn.enabled = False


def pytest_configure(config):
    _torch_without_onednn()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if keras.backend.backend() == "jax":
        _fast_jax_random_compilation()
        _share_jax_compilations(config)


def _fast_jax_random_compilation():
    """Non-partitionable threefry, in this process and its subprocesses.

    With JAX 0.10's default (`jax_threefry_partitionable=True`), XLA on a
    CPU took 0.1-85 s to compile one `jax.random.uniform` of a small weight
    shape (measured: (3, 3, 8, 12) 76-85 s, (3, 3, 8, 8) 7-10 s; 0.8 s each
    without it), and Keras draws every initial weight that way: building
    the tests' models was most of the JAX suite's time. Only the random
    streams change (docs/troubleshooting.md).
    """
    import jax

    os.environ.setdefault("JAX_THREEFRY_PARTITIONABLE", "0")
    jax.config.update(
        "jax_threefry_partitionable",
        os.environ["JAX_THREEFRY_PARTITIONABLE"].lower() in ("1", "true"),
    )


def _share_jax_compilations(config):
    """JAX's persistent compilation cache for this run, unless one is set.

    Tests compile the same program again from new function objects (a
    model and its reloaded copy, the same network in several tests); with
    the cache the second compilation of a program that took at least a
    second (JAX's default threshold) is a read. Caching every small program
    too cost more than it saved (measured: +15% CPU on the layer tests). The
    cache lives in a temporary folder removed at the end of the run, so
    every run still compiles everything once.
    """
    import jax

    if jax.config.jax_compilation_cache_dir:
        return
    folder = tempfile.mkdtemp(prefix="parcaps-jax-cache-")
    jax.config.update("jax_compilation_cache_dir", folder)
    config.add_cleanup(lambda: shutil.rmtree(folder, ignore_errors=True))
