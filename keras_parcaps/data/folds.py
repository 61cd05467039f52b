"""Stratified folds (scikit-learn) and the paper's small-data split."""

import numpy as np
from sklearn.model_selection import StratifiedKFold

from keras_parcaps._checks import check_positive_int


def stratified_folds(labels, n_folds: int = 5, seed: int = 0) -> np.ndarray:
    """Assigns every image to one of `n_folds` folds, stratified by class.

    The same assignment serves model selection (fold `k` validates, the
    others train) and the final cross-validation, as in the paper. A class
    with fewer images than folds simply leaves some folds without it.

    Args:
        labels: Integer labels.
        n_folds: Number of folds, at least 2. Default 5.
        seed: Shuffling seed.

    Returns:
        An `int64` array with the fold (`0 .. n_folds - 1`) of each image.

    Example:

        >>> labels = np.array([0] * 5 + [1] * 5)
        >>> folds = stratified_folds(labels, n_folds=5, seed=0)
        >>> folds.shape, folds.dtype
        ((10,), dtype('int64'))
        >>> [sorted(labels[folds == k].tolist()) for k in range(5)]
        [[0, 1], [0, 1], [0, 1], [0, 1], [0, 1]]
        >>> np.array_equal(folds, stratified_folds(labels, n_folds=5, seed=0))
        True
    """
    check_positive_int("n_folds", n_folds, minimum=2)
    labels = np.asarray(labels)
    folds = np.full(len(labels), -1, dtype=np.int64)
    # StratifiedKFold refuses classes smaller than n_folds; deal those out
    # one image per fold by hand and let scikit-learn split the rest.
    rng = np.random.default_rng(seed)
    counts = np.bincount(labels) if len(labels) else np.zeros(0, int)
    small = np.isin(labels, np.flatnonzero((counts > 0) & (counts < n_folds)))
    for label in np.unique(labels[small]):
        members = rng.permutation(np.flatnonzero(labels == label))
        folds[members] = rng.permutation(n_folds)[: len(members)]
    rest = np.flatnonzero(~small)
    if len(rest):
        splitter = StratifiedKFold(n_folds, shuffle=True, random_state=seed)
        for fold, (_, held) in enumerate(splitter.split(rest, labels[rest])):
            folds[rest[held]] = fold
    return folds


def fold_split(folds, fold: int):
    """`(train_indices, validation_indices)` for validation fold `fold`.

    Images with a negative fold (the small-data test set) are in neither.

    Args:
        folds: The fold of each image, from `stratified_folds` or
            `small_data_split`.
        fold: The validation fold.

    Returns:
        Two `int64` index arrays.

    Example:

        >>> train, val = fold_split([0, 1, 0, 1, -1], fold=0)
        >>> train.tolist(), val.tolist()
        ([1, 3], [0, 2])
    """
    folds = np.asarray(folds)
    n_folds = int(folds.max()) + 1
    if not 0 <= fold < n_folds:
        raise ValueError(f"`fold` must be in [0, {n_folds}). Received: fold={fold!r}")
    return (
        np.flatnonzero((folds >= 0) & (folds != fold)),
        np.flatnonzero(folds == fold),
    )


def small_data_split(
    labels, max_per_class: int, n_folds: int = 5, seed: int = 0
) -> np.ndarray:
    """The paper's small-data protocol: up to `x` images per class in folds.

    Per class, `max_per_class` randomly chosen images (all of them if the
    class is smaller) are spread over `n_folds` stratified folds; every
    other image goes to the test set, marked with fold `-1`.

    Args:
        labels: Integer labels.
        max_per_class: `x`, the number of images per class in the folds.
        n_folds: Number of folds. Default 5.
        seed: Sampling and shuffling seed.

    Returns:
        An `int64` array: the fold of each image, or -1 for the test set.

    Example:

        >>> labels = np.array([0] * 6 + [1] * 3)
        >>> folds = small_data_split(labels, max_per_class=2, n_folds=2)
        >>> [int(np.sum((labels == c) & (folds >= 0))) for c in (0, 1)]
        [2, 2]
        >>> np.bincount(folds[folds >= 0]).tolist(), int(np.sum(folds == -1))
        ([2, 2], 5)
    """
    check_positive_int("max_per_class", max_per_class)
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    chosen = np.concatenate(
        [
            rng.permutation(np.flatnonzero(labels == label))[:max_per_class]
            for label in np.unique(labels)
        ]
    )
    folds = np.full(len(labels), -1, dtype=np.int64)
    folds[chosen] = stratified_folds(labels[chosen], n_folds, seed)
    return folds
