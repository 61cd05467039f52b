import keras
import numpy as np
import pytest

from keras_parcaps.models.stem import stem


def _symmetric_kernels(model):
    """Makes every spatial kernel invariant to 90-degree rotations."""
    for weight in model.weights:
        shape = tuple(weight.shape)
        if len(shape) == 4 and shape[0] == shape[1] > 1:
            kernel = keras.ops.convert_to_numpy(weight)
            rotations = [np.rot90(kernel, r, axes=(0, 1)) for r in range(4)]
            weight.assign(sum(rotations) / 4)


@pytest.mark.parametrize("size,equivariant", [(65, True), (64, False)])
def test_stem_sees_a_rotated_image_on_the_same_grid_only_at_odd_sizes(
    size, equivariant
):
    # A stride-2 "same" convolution on an even size samples every other
    # position starting at one border; a 90-degree rotation moves that grid
    # by one pixel. At 65x65 every stride-2 layer of the stem sees an odd size
    # (65, 33, 17), its grid is symmetric, and with rotation-symmetric
    # kernels the features of a rotated image are the rotated features.
    keras.utils.set_random_seed(0)
    inputs = keras.Input((size, size, 3))
    model = keras.Model(inputs, stem(inputs))
    _symmetric_kernels(model)
    x = np.random.default_rng(0).uniform(size=(1, size, size, 3)).astype("float32")
    rotated = np.ascontiguousarray(np.rot90(x, 1, axes=(1, 2)))
    got = keras.ops.convert_to_numpy(model(rotated, training=False))
    want = np.rot90(
        keras.ops.convert_to_numpy(model(x, training=False)), 1, axes=(1, 2)
    )
    error = np.linalg.norm(got - want) / np.linalg.norm(want)
    if equivariant:
        assert error < 1e-4
    else:
        assert error > 0.1
