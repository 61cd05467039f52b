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
    # On TensorFlow the routing loops run as plain keras.ops in tests:
    # compiling them with XLA for every small shape and batch size a test
    # uses would multiply the suite's time (about 1 min per layer check).
    # On JAX it is the other way round: run eagerly, every op of the loop
    # is compiled on its own for each new shape (0.1-0.2 s each), and the
    # compiled loop made the DRCaps layer checks 17% faster (measured). The
    # two paths are tested against each other where the `compiled_routing`
    # fixture asks for the compiled one.
    routing_backend.set_jit_compile(keras.backend.backend() == "jax")
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


# Where `GroupConv2D`'s formulations are tested: the layers (and ops) choose
# their own, "split" under XLA on a CPU as a user's model does.
_OWN_GROUPED_CONVOLUTION = ("tests/layers/", "tests/ops/")


@pytest.fixture(autouse=True)
def _native_grouped_convolution(request, monkeypatch):
    """Runs `GroupConv2D(implementation="auto")` natively in model-level tests.

    Under XLA on a CPU, "auto" splits a grouped convolution into one
    convolution per group (`GroupConv2D`'s fast path for the paper's 50x50
    maps). The model-level tests run the paper's networks on grids of 1 to
    6 pixels, where XLA's native grouped convolution is fast too, and the
    hundreds of per-group convolutions of a split network make its
    compilation most of a test's time (measured: the first training step of
    `build_parallel_dr(input_shape=(32, 32, 3), n_branches=2)` on JAX, 22 s
    of CPU native against several minutes split). Both formulations, their
    agreement, the choice of "auto" and the split layer's training,
    saving and mixed precision are tested in tests/layers/. A test that
    trains for many steps, where the split network's faster steps repay its
    compilation (3x on TensorFlow for 40 steps, measured), marks itself
    `user_grouped_convolution` (see `_user_kernels`).
    """
    path = request.node.nodeid.replace("\\", "/")
    if path.startswith(_OWN_GROUPED_CONVOLUTION) or request.node.get_closest_marker(
        "user_grouped_convolution"
    ):
        return
    from keras_parcaps.layers import group_conv2d

    monkeypatch.setattr(group_conv2d, "default_implementation", lambda: "native")


def _torch_without_onednn():
    # torch 2.13's CPU build once corrupted its heap ("free(): invalid next
    # size", then abort) in the backward pass of the small grouped
    # convolutions of tests/layers/test_parallel_branch.py when other tests
    # ran before them in the process; with oneDNN (mkldnn) off the whole
    # file passed. Not reproduced since (2026-12-01: the whole PyTorch suite
    # and tests/layers twice with oneDNN on), but the tests check our
    # code's results, not oneDNN's kernels, so they run without it, except
    # the learning tests (`_user_kernels`).
    if keras.backend.backend() == "torch":
        import torch

        torch.backends.mkldnn.enabled = False


@pytest.fixture(autouse=True)
def _user_kernels(request):
    """oneDNN on PyTorch for the tests marked `user_grouped_convolution`.

    They train for hundreds of steps with the kernels a user's model runs
    on; oneDNN's convolutions halve their time (measured, one thread: the
    3-layer parallel DR network at 32x32, 0.37 s per step with oneDNN,
    0.76 s without; the four real-cell tests 539 s against 989 s in
    `make test`).
    """
    if keras.backend.backend() != "torch" or not request.node.get_closest_marker(
        "user_grouped_convolution"
    ):
        yield
        return
    import torch

    previous = torch.backends.mkldnn.enabled
    torch.backends.mkldnn.enabled = True
    try:
        yield
    finally:
        torch.backends.mkldnn.enabled = previous


@pytest.fixture(autouse=True)
def _optimized_xla(request):
    """XLA's optimizations on JAX for the tests marked `optimized_xla`.

    The tests compile without them (`_quick_jax_compilation`), except those
    whose programs run long enough to repay them: Sabour's CapsNet, whose
    9x9 convolutions made its fit-and-reload test take 49.9 CPU-seconds
    without them against 12.3-13.8 with (its mixed-precision step 24.5
    against 10.1-13.2; whole suites, 2026-12-03).
    """
    if keras.backend.backend() != "jax" or not request.node.get_closest_marker(
        "optimized_xla"
    ):
        yield
        return
    import jax

    jax.config.update("jax_disable_most_optimizations", False)
    try:
        yield
    finally:
        _quick_jax_compilation()


def pytest_configure(config):
    _torch_without_onednn()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    _fast_jax_random_compilation()
    _quick_jax_compilation()
    if keras.backend.backend() == "jax":
        _share_jax_compilations(config)


def _fast_jax_random_compilation():
    """Non-partitionable threefry, in this process and its subprocesses.

    Set in the environment under every backend: under TensorFlow the
    portability test loads the saved models in a JAX subprocess (183 s
    with JAX's default, 67 s without; measured alone on this 2-core machine).

    With JAX 0.10's default (`jax_threefry_partitionable=True`), XLA on a
    CPU took 0.1-85 s to compile one `jax.random.uniform` of a small weight
    shape (measured: (3, 3, 8, 12) 76-85 s, (3, 3, 8, 8) 7-10 s; 0.8 s each
    without it), and Keras draws every initial weight that way: building
    the tests' models was most of the JAX suite's time. Only the random
    streams change (docs/getting-started.md).
    """
    _jax_flag("JAX_THREEFRY_PARTITIONABLE", "jax_threefry_partitionable", "0")


def _quick_jax_compilation():
    """XLA without LLVM's optimizations, in this process and its subprocesses.

    The tests' programs are small and run a few times, so compiling them is
    most of the JAX suite's CPU time. `jax_disable_most_optimizations`
    (LLVM at -O0; XLA's own graph passes, fusions included, still run) cut
    the CPU time of the DR and EM layer checks by 30% (157 -> 109 s), of the
    DR builder, trainer and diagnose tests by 29% (175 -> 123 s) and of the
    two-process and portability tests, which train and start subprocesses,
    by 21% (214 -> 169 s); measured on this 2-core machine with one core
    busy elsewhere, 2026-12-03. Set in the environment under every backend,
    as above. Benchmarks and users keep JAX's default.
    """
    _jax_flag("JAX_DISABLE_MOST_OPTIMIZATIONS", "jax_disable_most_optimizations", "1")


def _jax_flag(variable, option, default):
    """JAX's boolean `option` from `$variable` (set to `default` if unset)."""
    os.environ.setdefault(variable, default)
    if keras.backend.backend() != "jax":
        return
    import jax

    jax.config.update(option, os.environ[variable].lower() in ("1", "true"))


def _share_jax_compilations(config):
    """JAX's persistent compilation cache for this run, unless one is set.

    Tests compile the same program again from new function objects (a
    model and its reloaded copy, the same network in several tests); with
    the cache the second compilation of a program that took at least 0.2 s
    is a read. The DR and EM layer checks took 5% less CPU time with 0.2 s
    than with JAX's default of 1 s (123-124 against 129-130 s, two runs
    each; 0.05 s was no better; caching every program cost 15% more). The
    subprocesses the tests start inherit the threshold. `make test` gives
    every process of a run one cache (ci/test_backends.py); otherwise it
    lives in a temporary folder removed at the end of the run, so every run
    still compiles everything once.
    """
    import jax

    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.2")
    jax.config.update(
        "jax_persistent_cache_min_compile_time_secs",
        float(os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"]),
    )
    if jax.config.jax_compilation_cache_dir:
        return
    folder = tempfile.mkdtemp(prefix="parcaps-jax-cache-")
    jax.config.update("jax_compilation_cache_dir", folder)
    config.add_cleanup(lambda: shutil.rmtree(folder, ignore_errors=True))
