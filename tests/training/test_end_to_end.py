"""End to end on real cells: a short parallel DR-CapsNet run on BCCD crops.

Runs on PyTorch only, the cheapest backend for it here (2026-12-01, one
thread, another job on the second core, then at 64x64): 91 s with oneDNN,
which a user's model runs on (tests/conftest.py, `_user_kernels`), 130 s
without it, against 174-207 s on TensorFlow. The other backends are covered
by the fast tests of the same code.
"""

import numpy as np
import pytest

from keras_parcaps.data import fold_split, load_class_folders, stratified_folds
from keras_parcaps.training import get_builder, train_and_evaluate
from tests.data.shared_data import shared_data
from tests.markers import on_backend

# A 2-layer parallel DR-CapsNet with 4 branches (the demo's network with
# `--capsule-layers 2`), trained with ordinary shuffled batches: the test set
# keeps the natural class balance, and so does the training here. At 32x32
# it took 69-92 s in two whole-suite runs (2026-12-03), at 64x64 173 s
# (session 17's); held-out Acc 0.686, 0.657 and 0.700 for seeds 0-2 against
# the majority class's 0.586 (70 images).
SIZE, EPOCHS, STEPS, BATCH = 32, 4, 30, 16

pytestmark = [
    pytest.mark.slow,
    # 120 training steps: split grouped convolutions, as the user's model.
    pytest.mark.user_grouped_convolution,
    on_backend("torch", "real-data training, fastest there (module docstring)"),
]


def test_parallel_dr_beats_majority_on_bccd(tmp_path):
    data = load_class_folders(shared_data("bccd_wbc"), image_size=SIZE)
    folds = stratified_folds(data.labels, 5, seed=0)
    train_idx, test_idx = fold_split(folds, 0)
    test = data.subset(test_idx)
    majority = np.bincount(test.labels).max() / len(test)
    builder = get_builder("parallel_dr", n_branches=4, capsule_layers=2)
    report = train_and_evaluate(
        builder,
        data.subset(train_idx),
        test,
        tmp_path,
        epochs=EPOCHS,
        steps_per_epoch=STEPS,
        batch_size=BATCH,
        validate=False,
        orientations=False,
        verbose=0,
    )
    assert report["acc"] > majority, (report["acc"], majority)
    assert (tmp_path / "report.json").is_file()
