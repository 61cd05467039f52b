import numpy as np
import pytest

from keras_parcaps.data import SYNTHETIC_CODES, draw_cell, synthetic_cells


def test_counts_shape_and_seed():
    data = synthetic_cells(counts=3, image_size=24, seed=4)
    assert data.class_names == list(SYNTHETIC_CODES)
    assert data.class_counts().tolist() == [3] * len(SYNTHETIC_CODES)
    images = data.images()
    assert images.shape == (3 * len(SYNTHETIC_CODES), 24, 24, 3)
    assert images.dtype == np.uint8
    again = synthetic_cells(counts=3, image_size=24, seed=4).images()
    assert np.array_equal(images, again)
    assert not np.array_equal(images, synthetic_cells(3, 24, seed=5).images())


def test_default_counts_are_unbalanced():
    data = synthetic_cells(image_size=16)
    counts = data.class_counts()
    assert counts.sum() == 660 and counts.max() / counts.min() == 6


def test_classes_differ_in_colour():
    # Eosinophils have orange cytoplasm, lymphocytes blue: the mean red minus
    # blue of the central region tells them apart in every sample.
    rng = np.random.default_rng(0)
    for _ in range(5):
        eos = draw_cell("EOS", 48, rng).astype(float)[16:32, 16:32]
        lyt = draw_cell("LYT", 48, rng).astype(float)[16:32, 16:32]
        eos_rb = (eos[..., 0] - eos[..., 2]).mean()
        lyt_rb = (lyt[..., 0] - lyt[..., 2]).mean()
        assert eos_rb > lyt_rb + 20


def test_bad_arguments():
    with pytest.raises(ValueError, match="Valid codes: NGS"):
        synthetic_cells(classes=["XYZ"])
    with pytest.raises(ValueError, match="counts"):
        synthetic_cells(counts=[1, 2])
    with pytest.raises(ValueError, match="Valid codes"):
        draw_cell("XYZ")
