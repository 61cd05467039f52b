"""The paper's DR networks learn real leukocytes with plain `fit` and `predict`.

Real PBC cells (../shared/data/pbc_matek_dev, 10 classes, 55% of them NGS),
fold 0 of 5 held out, trained exactly as a Keras user would: the model as
its builder returns it, `model.fit` on `kp.data.OnePerClassBatches`, then
`model.predict`. No recalibration, no trainer. Before the builders centered
their inputs and used BatchNormalization momentum 0.9, `predict` after a
few hundred iterations called nearly every image one or two classes (Acc
0.05-0.54 with 1-7 classes predicted, measured; see docs/concepts.md).

TensorFlow only: the networks and the fix are the same on every backend
(the layers are checked against each other elsewhere), and TensorFlow
compiles these networks in seconds where XLA on CPU takes minutes.
"""

import keras
import numpy as np
import pytest

import keras_parcaps as kp
from keras_parcaps.data import (
    OnePerClassBatches,
    fold_split,
    load_class_folders,
    stratified_folds,
    to_model_input,
)
from tests.data.shared_data import shared_data  # noqa: I001

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        keras.backend.backend() != "tensorflow",
        reason="trained on TensorFlow only (see module docstring)",
    ),
]

SIZE = 32
ITERATIONS = 300


@pytest.fixture(scope="module")
def cells():
    data = load_class_folders(shared_data("pbc_matek_dev"), image_size=SIZE)
    data = data.preload()
    train_idx, test_idx = fold_split(stratified_folds(data.labels, 5, seed=0), 0)
    return data.subset(train_idx), data.subset(test_idx)


@pytest.mark.parametrize(
    "builder, options",
    [
        ("build_parallel_dr", {"n_branches": 4, "capsule_layers": 3}),
        ("build_dr", {"capsule_layers": 3}),
    ],
)
def test_plain_fit_then_predict_learns_real_cells(cells, builder, options):
    train, test = cells
    keras.utils.set_random_seed(0)
    model = getattr(kp.models, builder)(
        input_shape=(SIZE, SIZE, 3), num_classes=train.num_classes, **options
    )
    model.fit(
        OnePerClassBatches(train, steps_per_epoch=ITERATIONS // 3), epochs=3, verbose=0
    )
    predicted = model.predict(to_model_input(test.images()), verbose=0).argmax(-1)
    accuracy = float(np.mean(predicted == test.labels))
    majority = np.bincount(test.labels).max() / len(test)
    classes = len(np.unique(predicted))
    assert classes >= 5, f"{builder}: only {classes} classes predicted"
    assert accuracy > majority, f"{builder}: Acc {accuracy:.3f} <= {majority:.3f}"
