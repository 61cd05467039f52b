"""Models that must load on every backend with equal outputs.

Each case is `name -> fn() -> (model, inputs)`. `tests/test_portability.py`
saves every case, its inputs and its outputs on the current backend and loads
them in a subprocess on the next backend of the cycle TensorFlow -> JAX ->
PyTorch -> TensorFlow, so one `make test` saves and loads on every backend.
Add a case here for every new layer or builder.

Run as a script to load saved cases: `python -m tests.portability_cases DIR`.
"""

import json
import os
import sys

import keras
import numpy as np

import keras_parcaps as kp


def _inputs(shape, seed=0):
    return np.random.default_rng(seed).normal(size=shape).astype("float32")


def _functional(layers, input_shape):
    inputs = keras.Input(input_shape)
    outputs = inputs
    for layer in layers:
        outputs = layer(outputs)
    return keras.Model(inputs, outputs)


def dr_stack():
    model = _functional(
        [
            kp.layers.PrimaryCaps(4, 8, kernel_size=3, strides=2),
            kp.layers.DRCaps(3, 6, share_weights=True),
            kp.layers.DRCaps(2, 4),
            kp.layers.CapsuleLength(),
        ],
        (9, 9, 5),
    )
    return model, _inputs((3, 9, 9, 5))


def dr_single_mid_cap():
    model = _functional(
        [kp.layers.PrimaryCaps(2, 8, kernel_size=1), kp.layers.DRCaps(1, 4)],
        (4, 4, 3),
    )
    return model, _inputs((2, 4, 4, 3))


def sabour_capsnet():
    return kp.models.build_sabour_capsnet(), _inputs((2, 28, 28, 1))


def resnext_block():
    # GroupConv2D runs natively on PyTorch and group by group under XLA.
    model = _functional(
        [kp.layers.ResNeXtBlock([4, 4, 8], cardinality=2, strides=2)], (5, 5, 3)
    )
    return model, _inputs((2, 5, 5, 3))


def parallel_branch():
    branch_in = keras.Input((3, 3, 4))
    caps = kp.layers.PrimaryCaps(2, 4)(branch_in)
    branch = keras.Model(branch_in, kp.layers.DRCaps(1, 5)(caps))
    model = _functional([kp.layers.ParallelBranch(branch, n_branches=3)], (3, 3, 4))
    return model, _inputs((2, 3, 3, 4))


def parallel_dr_small():
    model = kp.models.build_parallel_dr(
        input_shape=(16, 16, 3), num_classes=3, n_branches=2
    )
    return model, _inputs((2, 16, 16, 3))


def em_stack():
    model = _functional(
        [
            kp.layers.PrimaryCaps(3, 9, kind="matrix", kernel_size=2),
            kp.layers.EMConvCaps(2, kernel_size=3, strides=2, padding="same"),
            kp.layers.EMConvCaps(1, kernel_size=2, routing_iterations=2),
            kp.layers.EMClassCaps(3, coordinate_addition=True),
        ],
        (6, 6, 2),
    )
    return model, _inputs((2, 6, 6, 2))


def em_capsnet_small():
    model = kp.models.build_em_capsnet(
        input_shape=(17, 17, 1), num_classes=3, A=4, B=2, C=2, D=2
    )
    return model, _inputs((2, 17, 17, 1))


CASES = {
    "dr_stack": dr_stack,
    "dr_single_mid_cap": dr_single_mid_cap,
    "sabour_capsnet": sabour_capsnet,
    "resnext_block": resnext_block,
    "parallel_branch": parallel_branch,
    "parallel_dr_small": parallel_dr_small,
    "em_stack": em_stack,
    "em_capsnet_small": em_capsnet_small,
}


def _predict(model, inputs, compiled=False):
    if compiled:
        return np.asarray(model.predict(inputs, batch_size=len(inputs), verbose=0))
    # A direct call: `predict` would compile each model for one batch.
    return np.asarray(keras.ops.convert_to_numpy(model(inputs, training=False)))


def save_all(directory):
    """Saves every case, its inputs and its outputs under `directory`."""
    keras.utils.set_random_seed(0)
    for name, make in CASES.items():
        model, inputs = make()
        model.save(os.path.join(directory, f"{name}.keras"))
        np.save(os.path.join(directory, f"{name}_inputs.npy"), inputs)
        np.save(os.path.join(directory, f"{name}.npy"), _predict(model, inputs))


def load_all(directory, compiled=False):
    """Loads every saved case; returns `name -> max abs output difference`.

    With `compiled`, the outputs come from `predict` (the backend's compiled
    function) instead of a direct call.
    """
    errors = {}
    for name in CASES:
        inputs = np.load(os.path.join(directory, f"{name}_inputs.npy"))
        model = keras.models.load_model(os.path.join(directory, f"{name}.keras"))
        expected = np.load(os.path.join(directory, f"{name}.npy"))
        outputs = _predict(model, inputs, compiled)
        errors[name] = float(np.max(np.abs(outputs - expected)))
    return errors


if __name__ == "__main__":
    from keras_parcaps.ops import routing_backend

    # The plain routing loop: one XLA compilation of it per case would cost
    # more than the check (the compiled path is tested in tests/ops/).
    routing_backend.set_jit_compile(False)
    # On JAX in this fresh process, every op of a direct call compiles on its
    # own; one compiled `predict` per model costs less (the eight cases: 36 s
    # against 62 s, 49 against 67 CPU-seconds, measured alone on the 2-core
    # machine). In the test's own process, saving, the ops' compilations are
    # mostly cached by earlier tests, and the direct call was faster there.
    print(json.dumps(load_all(sys.argv[1], compiled=keras.backend.backend() == "jax")))
