import keras
import pytest

import keras_parcaps as kp
from tests.markers import builder_configs, not_on_backend
from tests.models.builder_checks import (
    check_pooled_backbone,
    check_trains_saves_loads,
    primary_caps_after_plain_backbone,
)

# Each capsule size and each layer count once (a diagonal, to stay fast),
# spread over the backends (see `builder_configs`).
CONFIGS = builder_configs([(9, 2), (16, 3), (25, 4)])
SMALL = (48, 48, 3)


def _check_em(model):
    assert isinstance(model.loss, kp.losses.SpreadLoss)
    # Hinton et al.'s schedule ramps the margin from 0.2.
    assert model.loss.margin == pytest.approx(0.2)


@pytest.mark.parametrize("capsule_size,capsule_layers", CONFIGS)
def test_build_em_trains_saves_loads(capsule_size, capsule_layers):
    model = kp.models.build_em(
        input_shape=SMALL,
        num_classes=3,
        capsule_size=capsule_size,
        capsule_layers=capsule_layers,
        n_mid_caps=2,
    )
    _check_em(model)
    assert model.get_layer("class_caps").output.shape[1:] == (3, capsule_size + 1)
    mid = [x for x in model.layers if isinstance(x, kp.layers.EMConvCaps)]
    assert len(mid) == capsule_layers - 2
    assert all(x.num_capsules == 2 for x in mid)
    blocks = [x for x in model.layers if isinstance(x, kp.layers.ResNeXtBlock)]
    # The stem's two, the branch block, and its duplicate with 2 layers.
    assert len(blocks) == 3 + (capsule_layers == 2)
    loaded = check_trains_saves_loads(model, 3)
    assert isinstance(loaded.loss, kp.losses.SpreadLoss)


@pytest.mark.parametrize("capsule_size,capsule_layers", CONFIGS)
def test_build_parallel_em_trains_saves_loads(capsule_size, capsule_layers):
    model = kp.models.build_parallel_em(
        input_shape=SMALL,
        num_classes=3,
        capsule_size=capsule_size,
        capsule_layers=capsule_layers,
        n_branches=2,
    )
    _check_em(model)
    branches = model.get_layer("branches")
    # One Mid-Cap type per branch, or 32 / 2 Primary-Caps per branch.
    caps_per_position = 2 if capsule_layers > 2 else 32
    assert branches.output.shape[-2:] == (caps_per_position, capsule_size + 1)
    check_trains_saves_loads(model, 3)


def test_spread_margin_schedule_drives_the_built_loss():
    model = kp.models.build_em(input_shape=SMALL, num_classes=3, capsule_layers=2)
    schedule = kp.callbacks.SpreadMarginSchedule(start=0.2, end=0.9, ramp_length=7)
    # That `fit` calls the schedule and its compiled step uses the new margin
    # is tested on a small model (tests/callbacks); here, that the schedule
    # finds the builder's loss, through the calls `fit` makes (a fit of this
    # network cost 30-66 s of tracing or compilation for nothing more).
    callbacks = keras.callbacks.CallbackList([schedule], model=model)
    callbacks.on_train_begin()
    for epoch in range(2):
        callbacks.on_epoch_begin(epoch)
    assert model.loss.margin == pytest.approx(0.3)


@pytest.mark.parametrize(
    "builder,kwargs",
    [
        (kp.models.build_em, dict(capsule_layers=3)),
        (kp.models.build_parallel_em, dict(capsule_layers=2, n_branches=2)),
    ],
)
@not_on_backend(
    "jax",
    "checking each EM network took 22-23 s there in the suite (its last "
    "backend); its layers are checked on JAX in tests/layers, and the plain "
    "backbone trains there in tests/models/test_dr.py",
)
def test_plain_backbone_replaces_the_stem_and_blocks(builder, kwargs):
    model = builder(input_shape=SMALL, num_classes=3, backbone="plain", **kwargs)
    after = ("branches",) if "n_branches" in kwargs else ("primary_caps", "mid_caps_1")
    primary = primary_caps_after_plain_backbone(model, (*after, "class_caps"))
    assert tuple(primary.input.shape[1:]) == (3, 3, 256)  # 48 / 16
    check_trains_saves_loads(model, 3)


@pytest.mark.parametrize(
    "builder,kwargs",
    [
        (kp.models.build_em, dict(capsule_layers=2)),
        (kp.models.build_parallel_em, dict(capsule_layers=3, n_branches=2)),
    ],
)
def test_pooled_backbone_keeps_the_papers_weights(builder, kwargs):
    check_pooled_backbone(builder, input_shape=(64, 64, 3), num_classes=3, **kwargs)


@pytest.mark.parametrize(
    "builder,kwargs,name",
    [
        (kp.models.build_parallel_em, dict(n_branches=0), "n_branches"),
        (
            kp.models.build_parallel_em,
            dict(capsule_layers=2, n_branches=33),
            "n_branches",
        ),
        (kp.models.build_em, dict(capsule_layers=1), "capsule_layers"),
        (kp.models.build_parallel_em, dict(capsule_layers=5), "capsule_layers"),
        (kp.models.build_em, dict(capsule_size=8), "capsule_size"),
        (kp.models.build_em, dict(n_mid_caps=0), "n_mid_caps"),
        (kp.models.build_em, dict(input_shape=(32, 32, 3)), "input_shape"),
        (
            kp.models.build_parallel_em,
            dict(input_shape=(24, 24, 3), capsule_layers=2),
            "input_shape",
        ),
        (kp.models.build_em, dict(backbone="resnet"), "backbone"),
        (kp.models.build_parallel_em, dict(backbone=""), "backbone"),
    ],
)
def test_bad_arguments_name_the_argument(builder, kwargs, name):
    with pytest.raises(ValueError, match=name):
        builder(**kwargs)
