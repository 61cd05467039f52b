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


def _rotation_error(size, downsample):
    """How far the stem's features of a rotated image are from the rotated
    features, with rotation-symmetric kernels (relative norm)."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((size, size, 3))
    model = keras.Model(inputs, stem(inputs, downsample))
    _symmetric_kernels(model)
    x = np.random.default_rng(0).uniform(size=(1, size, size, 3)).astype("float32")
    rotated = np.ascontiguousarray(np.rot90(x, 1, axes=(1, 2)))
    got = keras.ops.convert_to_numpy(model(rotated, training=False))
    want = np.rot90(
        keras.ops.convert_to_numpy(model(x, training=False)), 1, axes=(1, 2)
    )
    return np.linalg.norm(got - want) / np.linalg.norm(want)


@pytest.mark.parametrize(
    "downsample,size,equivariant",
    [
        ("stride", 65, True),
        ("stride", 64, False),
        ("pool", 64, True),
        ("pool", 65, False),
    ],
)
def test_stem_sees_a_rotated_image_on_the_same_grid(downsample, size, equivariant):
    # A stride-2 "same" convolution on an even size samples every other
    # position starting at one border; a 90-degree rotation moves that grid
    # by one pixel. At 65x65 every stride-2 layer of the stem sees an odd size
    # (65, 33, 17), its grid is symmetric, and with rotation-symmetric
    # kernels the features of a rotated image are the rotated features.
    # Pooling is the other way round: 2x2 windows tile 64, 32 and 16 and turn
    # into each other under a rotation; on 65 "same" pooling pads one border.
    error = _rotation_error(size, downsample)
    if equivariant:
        assert error < 1e-4
    else:
        assert error > 0.1


def test_pooled_stem_has_the_paper_stems_weights():
    shapes = {}
    for downsample in ("stride", "pool"):
        inputs = keras.Input((64, 64, 3))
        model = keras.Model(inputs, stem(inputs, downsample))
        assert tuple(model.output.shape) == (None, 8, 8, 256)
        shapes[downsample] = [tuple(w.shape) for w in model.weights]
    assert shapes["pool"] == shapes["stride"]


def test_stem_rejects_an_unknown_downsample():
    with pytest.raises(ValueError, match="downsample"):
        stem(keras.Input((64, 64, 3)), "avg")
