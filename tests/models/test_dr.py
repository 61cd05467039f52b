import keras
import numpy as np
import pytest

import keras_parcaps as kp
from tests.markers import builder_configs, on_backend
from tests.models.builder_checks import (
    check_pooled_backbone,
    check_trains_saves_loads,
    primary_caps_after_plain_backbone,
)

# Each capsule size and each layer count once (a diagonal, to stay fast),
# spread over the backends (see `builder_configs`).
CONFIGS = builder_configs([(9, 2), (16, 3), (25, 4)])
SMALL = (32, 32, 3)


@pytest.mark.parametrize("capsule_size,capsule_layers", CONFIGS)
def test_build_dr_trains_saves_loads(capsule_size, capsule_layers):
    model = kp.models.build_dr(
        input_shape=SMALL,
        num_classes=3,
        capsule_size=capsule_size,
        capsule_layers=capsule_layers,
        n_mid_caps=2,
    )
    assert isinstance(model.loss, kp.losses.MarginLoss)
    assert model.get_layer("class_caps").output.shape[1:] == (3, capsule_size)
    mid = [layer for layer in model.layers if layer.name.startswith("mid_caps")]
    assert len(mid) == capsule_layers - 2
    check_trains_saves_loads(model, 3)


@pytest.mark.parametrize("capsule_size,capsule_layers", CONFIGS)
def test_build_parallel_dr_trains_saves_loads(capsule_size, capsule_layers):
    model = kp.models.build_parallel_dr(
        input_shape=SMALL,
        num_classes=3,
        capsule_size=capsule_size,
        capsule_layers=capsule_layers,
        n_branches=2,
    )
    branches = model.get_layer("branches")
    assert len(branches.branches) == 2
    # 2 layers: the branches' Primary-Caps (2 per grid point, 2x2 grid) are
    # joined and their length divided among the branches.
    expected = (2, capsule_size) if capsule_layers > 2 else (2, 2, 4, 128)
    assert tuple(branches.output.shape[1:]) == expected
    check_trains_saves_loads(model, 3)


def _dr_caps(model):
    """`{name: layer}` of the model's DRCaps, the first branch's included."""
    layers = list(model.layers)
    if any(layer.name == "branches" for layer in layers):
        layers += model.get_layer("branches").branches[0].layers
    return {
        layer.name: layer for layer in layers if isinstance(layer, kp.layers.DRCaps)
    }


@pytest.mark.parametrize(
    "builder,capsule_layers,shared",
    [
        (kp.models.build_dr, 2, "class_caps"),
        (kp.models.build_dr, 3, "mid_caps_1"),
        (kp.models.build_parallel_dr, 2, "class_caps"),
        (kp.models.build_parallel_dr, 4, "mid_cap_1"),
    ],
)
def test_share_weights_shares_only_the_layer_after_the_primary_caps(
    builder, capsule_layers, shared
):
    kwargs = dict(input_shape=SMALL, num_classes=3, capsule_layers=capsule_layers)
    copies = 1
    if builder is kp.models.build_parallel_dr:
        kwargs["n_branches"] = 2
        copies = 1 if shared == "class_caps" else 2
    paper = builder(**kwargs)
    model = builder(share_weights=True, **kwargs)
    layers = _dr_caps(model)
    assert [name for name, layer in layers.items() if layer.share_weights] == [shared]
    assert not any(layer.share_weights for layer in _dr_caps(paper).values())
    # One W per Primary-Cap type instead of one per type and grid position
    # (a 2x2 grid at 32x32): the layer keeps 1 of every 4 matrices.
    layer = layers[shared]
    types, in_dim = layer.input.shape[-2:]
    removed = 3 * types * layer.num_capsules * in_dim * layer.capsule_dim
    assert paper.count_params() - model.count_params() == copies * removed


def test_share_weights_trains_saves_loads():
    model = kp.models.build_parallel_dr(
        input_shape=SMALL, num_classes=3, n_branches=2, share_weights=True
    )
    check_trains_saves_loads(model, 3)


@pytest.mark.parametrize(
    "builder,kwargs",
    [(kp.models.build_dr, {}), (kp.models.build_parallel_dr, dict(n_branches=2))],
)
def test_plain_backbone_replaces_the_stem_and_blocks(builder, kwargs):
    kwargs = dict(input_shape=SMALL, num_classes=3, capsule_layers=3, **kwargs)
    paper = builder(**kwargs)
    model = builder(backbone="plain", **kwargs)
    after = ("branches",) if "n_branches" in kwargs else ("primary_caps", "mid_caps_1")
    primary = primary_caps_after_plain_backbone(model, (*after, "class_caps"))
    # The Primary-Caps see the paper's grid, and the capsule layers are the
    # paper's: the 1x1 Primary-Caps convolution reads 256 channels, not 512.
    assert tuple(primary.input.shape[1:]) == (2, 2, 256)
    assert {name: layer.count_params() for name, layer in _dr_caps(model).items()} == {
        name: layer.count_params() for name, layer in _dr_caps(paper).items()
    }


def test_plain_backbone_trains_saves_loads():
    model = kp.models.build_parallel_dr(
        input_shape=SMALL, num_classes=3, n_branches=2, backbone="plain"
    )
    check_trains_saves_loads(model, 3)


@pytest.mark.parametrize(
    "builder,kwargs",
    [(kp.models.build_dr, {}), (kp.models.build_parallel_dr, dict(n_branches=2))],
)
def test_pooled_backbone_keeps_the_papers_weights(builder, kwargs):
    check_pooled_backbone(builder, input_shape=SMALL, num_classes=3, **kwargs)


def test_pooled_backbone_trains_saves_loads():
    model = kp.models.build_parallel_dr(
        input_shape=SMALL, num_classes=3, n_branches=2, backbone="pooled"
    )
    check_trains_saves_loads(model, 3)


# Initialisation is backend-independent; a collapse shows on any backend.
# PyTorch runs these 40 steps fastest here (8 and 6 s against 23 and 25 s on
# TensorFlow, measured side by side).
@pytest.mark.user_grouped_convolution
@on_backend("torch", "an initialisation check, fastest there")
@pytest.mark.parametrize(
    "builder,kwargs",
    [(kp.models.build_dr, {}), (kp.models.build_parallel_dr, dict(n_branches=2))],
)
def test_three_layer_networks_learn(builder, kwargs):
    # With routed sums near 1 at initialisation, 6 Class-Caps over 2 Mid-Caps
    # routed one-hot, saturated, and predicted one class whatever the image
    # (loss flat at 1.2).
    keras.utils.set_random_seed(0)
    data = kp.data.synthetic_cells(counts=8, image_size=32, seed=0)
    model = builder(
        input_shape=(32, 32, 3),
        num_classes=data.num_classes,
        capsule_layers=3,
        **kwargs,
    )
    batches = kp.data.OnePerClassBatches(data, steps_per_epoch=20, augment=False)
    losses = model.fit(batches, epochs=2, verbose=0).history["loss"]
    assert losses[1] < 0.5 * losses[0]
    scores = model(kp.data.to_model_input(data.images()), training=True)
    predictions = np.argmax(keras.ops.convert_to_numpy(scores), axis=1)
    assert np.mean(predictions == data.labels) >= 0.8
    assert len(np.unique(predictions)) == data.num_classes


@pytest.mark.parametrize(
    "builder,kwargs,name",
    [
        (kp.models.build_parallel_dr, dict(n_branches=0), "n_branches"),
        (kp.models.build_parallel_dr, dict(n_branches=-2), "n_branches"),
        (kp.models.build_dr, dict(capsule_layers=5), "capsule_layers"),
        (kp.models.build_parallel_dr, dict(capsule_layers=1), "capsule_layers"),
        (kp.models.build_dr, dict(capsule_size=12), "capsule_size"),
        (kp.models.build_dr, dict(n_mid_caps=0), "n_mid_caps"),
        (kp.models.build_dr, dict(input_shape=(8, 8, 3)), "input_shape"),
        (kp.models.build_parallel_dr, dict(input_shape=(400, 15, 3)), "input_shape"),
        (kp.models.build_dr, dict(input_shape=(64, 64)), "input_shape"),
        (kp.models.build_dr, dict(num_classes=0), "num_classes"),
        (kp.models.build_dr, dict(backbone="vgg"), "backbone"),
        (kp.models.build_parallel_dr, dict(backbone=None), "backbone"),
    ],
)
def test_bad_arguments_name_the_argument(builder, kwargs, name):
    with pytest.raises(ValueError, match=name):
        builder(**kwargs)


@pytest.mark.parametrize("builder", [kp.models.build_dr, kp.models.build_parallel_dr])
def test_inputs_centered_and_fast_batch_norm_averages(builder):
    # What keeps `predict` right after plain `fit` (docs/concepts.md).
    model = builder(input_shape=(16, 16, 3), num_classes=3, capsule_layers=3)
    assert isinstance(model.layers[1], kp.layers.ImageCentering)
    layers = kp.training.batch_norm_layers(model)
    assert len(layers) >= 13
    assert {layer.momentum for layer in layers} == {0.9}
