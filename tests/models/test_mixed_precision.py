"""Every builder under `mixed_float16` and `mixed_bfloat16`, at its smallest.

One training step gives a finite loss (float16 runs with Keras's automatic
loss scaling), the capsule layers keep their routing weights in float32 and
read them without the half-precision cast, and a `.keras` checkpoint taken
after the step reloads with the same outputs and optimizer state.

The full matrix (7 builders x 2 policies) takes about a minute on PyTorch
and 3 to 10 minutes on TensorFlow and JAX on a 2-core CPU (XLA compiles
every step), so PyTorch runs all of it and the other two backends four cases
that cover every capsule layer, `ParallelBranch`, the ResNeXt block and both
policies (JAX one of them, Sabour's network under float16);
`PARCAPS_MIXED_PRECISION=all` runs the full matrix on any backend.
"""

import os
import tempfile

import keras
import numpy as np
import pytest

import keras_parcaps as kp
from tests.backend_utils import eager_on_tensorflow

CLASSES = 3
# The smallest inputs and widths the builders accept.
BUILDERS = {
    "dr": (kp.models.build_dr, (16, 16, 3), dict(capsule_size=9, capsule_layers=2)),
    "parallel_dr": (
        kp.models.build_parallel_dr,
        (16, 16, 3),
        dict(capsule_size=9, capsule_layers=2, n_branches=2),
    ),
    "em": (kp.models.build_em, (32, 32, 3), dict(capsule_size=9, capsule_layers=2)),
    "parallel_em": (
        kp.models.build_parallel_em,
        (32, 32, 3),
        dict(capsule_size=9, capsule_layers=2, n_branches=2),
    ),
    "resnext50": (kp.models.build_resnext50, (32, 32, 3), {}),
    "sabour": (kp.models.build_sabour_capsnet, (25, 25, 1), dict(reconstruction=False)),
    "em_capsnet": (
        kp.models.build_em_capsnet,
        (17, 17, 1),
        dict(A=4, B=4, C=4, D=4, capsule_size=9),
    ),
}
CAPSULE_LAYERS = (kp.layers.DRCaps, kp.layers.EMConvCaps, kp.layers.EMClassCaps)


POLICIES = ("mixed_float16", "mixed_bfloat16")
FULL = (
    os.environ.get("PARCAPS_MIXED_PRECISION") == "all"
    or keras.backend.backend() == "torch"
)
if FULL:
    CASES = [(policy, name) for policy in POLICIES for name in BUILDERS]
else:
    # float16, the narrow-range policy with loss scaling: the DR and EM
    # capsule layers (the canonical networks) and a parallel EM network
    # (ParallelBranch, ResNeXt blocks); bfloat16: the paper's parallel DR.
    CASES = [
        ("mixed_float16", "sabour"),
        ("mixed_float16", "em_capsnet"),
        ("mixed_float16", "parallel_em"),
        ("mixed_bfloat16", "parallel_dr"),
    ]
    if keras.backend.backend() == "jax":
        # XLA compiles each training step for 30-80 s on 2 cores (measured:
        # EM CapsNet 80 s, parallel DR 60 s, against 3 s and 16 s eagerly on
        # TensorFlow), so JAX keeps one network; every case still runs on
        # PyTorch and TensorFlow, and tests/layers checks each capsule layer
        # under both policies on JAX.
        CASES = [("mixed_float16", "sabour")]


@pytest.fixture
def policy(request):
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(request.param)
    yield request.param
    keras.config.set_dtype_policy(previous)


def _capsule_layers(model):
    # `_flatten_layers` reaches the layers inside `ParallelBranch` models.
    return [
        layer
        for layer in model._flatten_layers(include_self=False, recursive=True)
        if isinstance(layer, CAPSULE_LAYERS)
    ]


def _check_routing_weights(model, policy):
    layers = _capsule_layers(model)
    for layer in layers:
        assert layer.dtype_policy.name == policy, layer.name
        for weight in layer.weights:
            assert weight.dtype == "float32", weight.path
            assert not weight._autocast, f"{weight.path} is cast to half"
    return len(layers)


@pytest.mark.optimized_xla  # on JAX, Sabour's CapsNet alone
@pytest.mark.parametrize("policy, name", CASES, indirect=["policy"])
def test_builder_mixed_precision(policy, name):
    build, input_shape, options = BUILDERS[name]
    model = build(input_shape=input_shape, num_classes=CLASSES, **options)
    capsule_layers = _check_routing_weights(model, policy)
    assert (capsule_layers > 0) == (name != "resnext50")
    if policy == "mixed_float16":
        assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
    x = np.random.default_rng(0).uniform(size=(CLASSES, *input_shape))
    x = x.astype("float32")
    y = keras.utils.to_categorical(np.arange(CLASSES), CLASSES)
    logs = eager_on_tensorflow(model).train_on_batch(x, y, return_dict=True)
    assert np.isfinite(logs["loss"]), logs
    _check_routing_weights(model, policy)
    scores = keras.ops.convert_to_numpy(model(x, training=False))
    assert np.all(np.isfinite(scores))

    # A checkpoint after a step: weights, optimizer state and loss scale.
    # Loss scaling follows the global policy at load time, as in Keras.
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "model.keras")
        model.save(path)
        loaded = keras.models.load_model(path)
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(loaded(x, training=False)), scores
    )
    assert _check_routing_weights(loaded, policy) == capsule_layers
    assert type(loaded.optimizer) is type(model.optimizer)
    for saved, restored in zip(
        model.optimizer.variables, loaded.optimizer.variables, strict=True
    ):
        np.testing.assert_array_equal(
            keras.ops.convert_to_numpy(restored), keras.ops.convert_to_numpy(saved)
        )
