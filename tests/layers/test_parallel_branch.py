import os

import keras
import numpy as np
import pytest

import keras_parcaps as kp
from keras_parcaps.layers.parallel_branch import ParallelBranch
from keras_parcaps.ops.capsule_ops import squash
from tests.layer_checks import run_layer_checks


def _np_squash(s):
    squared = np.sum(s**2, axis=-1, keepdims=True)
    return squared / (1 + squared) / np.sqrt(squared + 1e-7) * s


def capsule_branch(input_shape=(3, 3, 4)):
    inputs = keras.Input(input_shape)
    caps = kp.layers.PrimaryCaps(2, 4, name="primary")(inputs)
    caps = kp.layers.DRCaps(1, 5, name="mid")(caps)
    return keras.Model(inputs, caps, name="capsule_branch")


def test_dense_copies_match_numpy(rng):
    x = rng.normal(size=(3, 2, 4)).astype("float32")
    layer = ParallelBranch(keras.layers.Dense(3), n_branches=4, axis=-1)
    out = keras.ops.convert_to_numpy(layer(x))
    expected = np.concatenate(
        [
            x @ keras.ops.convert_to_numpy(b.kernel)
            + keras.ops.convert_to_numpy(b.bias)
            for b in layer.branches
        ],
        axis=-1,
    )
    np.testing.assert_allclose(out, expected, atol=1e-5)
    assert out.shape == (3, 2, 12)


def test_capsule_branches_match_numpy(rng):
    x = rng.normal(size=(2, 3, 3, 4)).astype("float32")
    layer = ParallelBranch(capsule_branch(), n_branches=3)
    out = keras.ops.convert_to_numpy(layer(x))
    assert out.shape == (2, 3, 5)
    for i, branch in enumerate(layer.branches):
        conv = branch.get_layer("primary").pose_conv
        kernel = keras.ops.convert_to_numpy(conv.kernel)[0, 0]
        bias = keras.ops.convert_to_numpy(conv.bias)
        primary = _np_squash((x @ kernel + bias).reshape(2, 18, 4))
        weights = keras.ops.convert_to_numpy(branch.get_layer("mid").kernel)
        mid = _np_squash(np.einsum("bik,iko->bo", primary, weights[:, :, 0]))
        np.testing.assert_allclose(out[:, i], mid, atol=1e-5)


def test_copies_are_independent():
    layer = ParallelBranch(capsule_branch(), n_branches=3)
    layer.build((None, 3, 3, 4))
    assert len(layer.trainable_weights) == 3 * 3
    kernels = [
        keras.ops.convert_to_numpy(b.get_layer("mid").kernel) for b in layer.branches
    ]
    assert not np.allclose(kernels[0], kernels[1])
    assert {b.name for b in layer.branches} == {"branch_0", "branch_1", "branch_2"}


def test_copies_have_distinct_variable_paths():
    # A functional branch names its layers alike in every copy; the copies'
    # variables must still have distinct paths, or Keras's torch backend
    # (which registers variables by path) hides all copies but one from
    # `model.parameters()`, and torch DistributedDataParallel silently does
    # not average their gradients.
    inputs = keras.Input((3, 3, 4))
    outputs = ParallelBranch(capsule_branch(), n_branches=3, name="branches")(inputs)
    model = keras.Model(inputs, outputs)
    paths = [v.path for v in model.variables]
    assert len(set(paths)) == len(paths) == 3 * 3
    assert {p.split("/")[1] for p in paths} == {"branch_0", "branch_1", "branch_2"}
    if keras.backend.backend() == "torch":
        parameters = {id(p) for p in model.parameters()}
        assert parameters == {id(v.value) for v in model.variables}


def test_single_branch_is_the_branch(rng):
    x = rng.normal(size=(2, 3, 3, 4)).astype("float32")
    layer = ParallelBranch(capsule_branch(), n_branches=1)
    out = keras.ops.convert_to_numpy(layer(x))
    branch = keras.ops.convert_to_numpy(layer.branches[0](x))
    np.testing.assert_allclose(out, branch)


def test_layer_checks_with_model_branch():
    run_layer_checks(
        ParallelBranch,
        dict(branch=capsule_branch(), n_branches=2),
        input_shape=(None, 3, 3, 4),
        expected_output_shape=(None, 2, 5),
        # per copy: the Primary-Caps convolution's kernel and bias, the kernel
        # of the Mid-Cap
        expected_num_trainable_weights=6,
        expected_num_non_trainable_weights=0,
        # A wrapper keeps its branch's own dtype policy, as Keras's wrappers
        # do; tests/models/test_mixed_precision.py runs ParallelBranch under
        # a global mixed policy.
        mixed_precision=False,
    )


def test_layer_checks_with_grid_capsules():
    # The 2-capsule-layer layout: Primary-Caps grids joined on the capsule axis.
    run_layer_checks(
        ParallelBranch,
        dict(branch=kp.layers.PrimaryCaps(2, 3), n_branches=3),
        input_shape=(None, 2, 2, 4),
        expected_output_shape=(None, 2, 2, 6, 3),
        expected_num_trainable_weights=6,  # kernel and bias per copy
        expected_num_non_trainable_weights=0,
        mixed_precision=False,  # the branch's own policy, as above
    )


def test_batch_norm_statistics_of_every_copy_train(rng, tmp_path):
    x = rng.normal(size=(4, 6, 6, 4)).astype("float32") + 3.0
    inputs = keras.Input((6, 6, 4))
    block = kp.layers.ResNeXtBlock([4, 4, 8], cardinality=2, strides=2)
    outputs = ParallelBranch(block, n_branches=2, axis=-1)(inputs)
    model = keras.Model(inputs, outputs)
    model.compile(optimizer="sgd", loss="mse")
    model.fit(x, np.zeros((4, 3, 3, 16), "float32"), epochs=1, verbose=0)
    layer = model.layers[-1]
    for branch in layer.branches:
        mean = keras.ops.convert_to_numpy(branch.reduce_norm.moving_mean)
        assert np.abs(mean).max() > 0
    path = os.path.join(tmp_path, "model.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    np.testing.assert_allclose(
        loaded.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-5
    )


def test_squash_used_by_test_matches_library(rng):
    s = rng.normal(size=(3, 5)).astype("float32")
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(squash(s)), _np_squash(s), atol=1e-6
    )


@pytest.mark.parametrize("n_branches", [0, -1, 2.0, True])
def test_bad_n_branches(n_branches):
    with pytest.raises(ValueError, match="n_branches"):
        ParallelBranch(keras.layers.Dense(2), n_branches=n_branches)


def test_bad_branch():
    with pytest.raises(ValueError, match="branch"):
        ParallelBranch(lambda x: x, n_branches=2)
