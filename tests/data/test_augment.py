import numpy as np
import pytest
from scipy import ndimage

from keras_parcaps.data import augment_images, dihedral_orientations


def test_seeded_and_shape(rng):
    images = rng.integers(0, 256, (5, 12, 12, 3), dtype=np.uint8)
    a = augment_images(images, rng=7)
    b = augment_images(images, rng=7)
    c = augment_images(images, rng=8)
    assert a.shape == images.shape and a.dtype == np.uint8
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


def test_flips_only_gives_flipped_copies(rng):
    images = rng.integers(0, 256, (40, 5, 5, 3), dtype=np.uint8)
    out = augment_images(images, rng=0, max_rotation=0)
    kinds = []
    for image, result in zip(images, out, strict=True):
        variants = [image, image[::-1], image[:, ::-1], image[::-1, ::-1]]
        matches = [k for k, v in enumerate(variants) if np.array_equal(v, result)]
        assert matches
        kinds.append(matches[0])
    assert set(kinds) == {0, 1, 2, 3}  # all four occur in 40 draws


def test_no_augmentation_is_identity(rng):
    images = rng.random((3, 6, 6, 2)).astype(np.float32)
    out = augment_images(
        images, 0, flip_up_down=False, flip_left_right=False, max_rotation=0
    )
    assert np.array_equal(out, images)


def test_rotation_matches_scipy(rng):
    images = rng.random((1, 16, 16, 3)).astype(np.float32)
    out = augment_images(images, 5, flip_up_down=False, flip_left_right=False)
    # With the flips disabled the only draw is the angle.
    angle = np.random.default_rng(5).uniform(0, 180)
    expected = ndimage.rotate(
        images[0], angle, axes=(1, 0), reshape=False, order=1, mode="reflect"
    )
    assert np.allclose(out[0], expected)
    # A negligible angle leaves the image as it was.
    square = np.zeros((1, 7, 7, 1), np.float32)
    square[0, 1, 3] = 1.0
    turned = augment_images(square, 0, False, False, max_rotation=1e-9)
    assert np.allclose(turned, square, atol=1e-6)


def test_dihedral_orientations(rng):
    images = rng.random((2, 4, 4, 1))
    views = dihedral_orientations(images)
    assert len(views) == 8
    assert np.array_equal(views[0], images)
    assert np.array_equal(views[1][0, ..., 0], np.rot90(images[0, ..., 0]))
    assert np.array_equal(views[4][0, ..., 0], images[0, :, ::-1, 0])
    flat = {v.tobytes() for v in views}
    assert len(flat) == 8  # an asymmetric image has 8 distinct orientations
    with pytest.raises(ValueError, match="side, side"):
        dihedral_orientations(np.zeros((1, 4, 5, 1)))
