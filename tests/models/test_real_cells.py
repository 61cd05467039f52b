"""The paper's networks learn real leukocytes with plain `fit` and `predict`.

Real PBC cells (pbc_matek_dev from the shared data, 10 classes, 54% of them
NGS), fold 0 of 5 held out, trained exactly as a Keras user would: the model
as its builder returns it, `model.fit` on `kp.data.OnePerClassBatches`, then
`model.predict`. No recalibration, no trainer. Before the builders centered
their inputs, used BatchNormalization momentum 0.9 and kept a moving average
of the weights, `predict` after a few hundred iterations called nearly every
image one or two classes (Acc 0.05-0.54 with 1-7 classes predicted,
measured; see docs/concepts.md).

Two images per class per batch (20 images): with one (10 images), the
3-layer parallel DR network at 32x32 stayed near the majority class for the
first 600 iterations (held-out Acc 0.51, 0.53, 0.52 after 300 for seeds
0-2), with two it was above it (0.61, 0.69, 0.60; measured on PyTorch; see
docs/concepts.md, "Batches").

PyTorch only: the networks are the same on every backend (their layers are
checked against each other in tests/layers and tests/ops), and PyTorch ran
these cases in a third of TensorFlow's time (DR 38 s against 109, parallel
DR 86 s against 230; its routing, grouped convolutions and oneDNN kernels
as for a user: `user_grouped_convolution`, tests/conftest.py).

`build_parallel_em` is here with 2 capsule layers on the plain backbone
(`backbone="plain"`, docs/concepts.md, "The stem, not the capsules"): 0.785,
0.729 and 0.833 for weight seeds 0-2 in 71-81 s each. On the paper's stem
the EM networks do not get above the majority class in this budget: the
same 2-layer network 0.514 and 0.429 (seeds 0, 1); the 3-layer one at
48x48 (the strides of its Mid-Caps need 33) 0.565 (TensorFlow) and 0.558
(PyTorch), 0.319 with another seed, 0.366 with two images per class, and
0.498 on the plain backbone; 6-13 minutes per run.

The plain-backbone DR network is here too: the paper's capsule layers on a
plain CNN (docs/concepts.md, "The stem, not the capsules"); 0.779 in its
first run here, against 0.662 for the paper's network.
"""

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
from tests.data.shared_data import shared_data
from tests.markers import on_backend

pytestmark = [
    pytest.mark.slow,
    pytest.mark.user_grouped_convolution,
    on_backend("torch", "fastest there (see module docstring)"),
]

SIZE = 32
ITERATIONS = 300
STEPS_PER_EPOCH = 100  # iterations are counted in epochs of this many


@pytest.fixture(scope="module")
def cells():
    data = load_class_folders(shared_data("pbc_matek_dev"), image_size=SIZE)
    data = data.preload()
    train_idx, test_idx = fold_split(stratified_folds(data.labels, 5, seed=0), 0)
    return data.subset(train_idx), data.subset(test_idx)


@pytest.mark.parametrize(
    "builder, options, iterations",
    [
        ("build_parallel_dr", {"n_branches": 4, "capsule_layers": 3}, ITERATIONS),
        ("build_dr", {"capsule_layers": 3}, ITERATIONS),
        # The plain-backbone parallel DR network learns fastest, so 200
        # iterations: held-out Acc 0.72, 0.80, 0.78 after 100, 200, 300
        # (exact statistics, 2026-12-03), where the paper's parallel DR
        # network read 0.52, 0.59, 0.63, DR 0.48, 0.59, 0.64 and the parallel
        # EM network below 0.56, 0.76, 0.67 (majority class 0.54).
        (
            "build_parallel_dr",
            {"n_branches": 4, "capsule_layers": 3, "backbone": "plain"},
            200,
        ),
        (
            "build_parallel_em",
            {"n_branches": 4, "capsule_layers": 2, "backbone": "plain"},
            ITERATIONS,
        ),
    ],
)
def test_plain_fit_then_predict_learns_real_cells(cells, builder, options, iterations):
    train, test = cells
    model = getattr(kp.models, builder)(
        input_shape=(SIZE, SIZE, 3), num_classes=train.num_classes, **options
    )
    batches = OnePerClassBatches(
        train, steps_per_epoch=STEPS_PER_EPOCH, images_per_class=2
    )
    model.fit(batches, epochs=iterations // STEPS_PER_EPOCH, verbose=0)
    predicted = model.predict(to_model_input(test.images()), verbose=0).argmax(-1)
    accuracy = float(np.mean(predicted == test.labels))
    majority = np.bincount(test.labels).max() / len(test)
    classes = len(np.unique(predicted))
    print(f"{builder}: Acc {accuracy:.3f} (majority {majority:.3f}), {classes} classes")
    assert classes >= 5, f"{builder}: only {classes} classes predicted"
    assert accuracy > majority, f"{builder}: Acc {accuracy:.3f} <= {majority:.3f}"
