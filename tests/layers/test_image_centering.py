import numpy as np
import pytest
from keras import ops

from keras_parcaps.layers import ImageCentering
from tests.layer_checks import run_layer_checks


def test_layer_checks():
    # No weights: the fit step only checks a finite loss.
    run_layer_checks(ImageCentering, {}, (None, 6, 5, 3), (None, 6, 5, 3))


def test_subtracts_each_images_channel_means(rng):
    images = rng.uniform(size=(4, 7, 5, 3)).astype("float32")
    got = ops.convert_to_numpy(ImageCentering()(images))
    # By hand: image 0, channel 1, pixel (2, 3).
    expected = images[0, 2, 3, 1] - images[0, :, :, 1].mean()
    np.testing.assert_allclose(got[0, 2, 3, 1], expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(
        got, images - images.mean(axis=(1, 2), keepdims=True), atol=1e-6
    )
    np.testing.assert_allclose(got.mean(axis=(1, 2)), 0.0, atol=1e-6)


def test_independent_of_batch():
    # Training and inference, one image or many: the same answer.
    images = np.random.default_rng(1).uniform(size=(3, 4, 4, 3)).astype("float32")
    layer = ImageCentering()
    whole = ops.convert_to_numpy(layer(images, training=True))
    single = ops.convert_to_numpy(layer(images[1:2], training=False))
    np.testing.assert_allclose(whole[1:2], single, atol=1e-6)


def test_rejects_non_images():
    with pytest.raises(ValueError, match="input_shape"):
        ImageCentering()(np.zeros((2, 3), "float32"))
