import numpy as np
import pytest

from keras_parcaps.data import fold_split, small_data_split, stratified_folds


def _labels():
    return np.repeat(np.arange(5), [103, 40, 11, 5, 3])


def test_stratified_disjoint_and_complete():
    labels = _labels()
    folds = stratified_folds(labels, 5, seed=1)
    assert folds.min() == 0 and folds.max() == 4
    per_fold = np.array(
        [np.bincount(labels[folds == k], minlength=5) for k in range(5)]
    )
    assert np.array_equal(per_fold.sum(0), np.bincount(labels))
    assert (per_fold.max(0) - per_fold.min(0) <= 1).all()  # stratified
    assert per_fold[:, 4].tolist().count(1) == 3  # 3 images: 3 folds get one
    for k in range(5):
        train, val = fold_split(folds, k)
        assert not set(train) & set(val)
        assert len(train) + len(val) == len(labels)
    assert np.array_equal(folds, stratified_folds(labels, 5, seed=1))
    assert not np.array_equal(folds, stratified_folds(labels, 5, seed=2))


def test_fold_split_bounds():
    with pytest.raises(ValueError, match="fold"):
        fold_split(np.array([0, 1, 2]), 3)
    with pytest.raises(ValueError, match="n_folds"):
        stratified_folds([0, 1], 1)


def test_small_data_split():
    labels = _labels()
    folds = small_data_split(labels, 10, n_folds=5, seed=0)
    pooled = np.bincount(labels[folds >= 0], minlength=5)
    assert pooled.tolist() == [10, 10, 10, 5, 3]
    test = np.bincount(labels[folds < 0], minlength=5)
    assert test.tolist() == [93, 30, 1, 0, 0]
    for k in range(5):
        assert np.bincount(labels[folds == k], minlength=5)[0] == 2
        train, val = fold_split(folds, k)
        assert not np.isin(np.flatnonzero(folds < 0), np.r_[train, val]).any()
