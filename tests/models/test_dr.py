import pytest

import keras_parcaps as kp
from tests.models.builder_checks import check_trains_saves_loads

# Each capsule size and each layer count once (a diagonal, to stay fast).
CONFIGS = [(9, 2), (16, 3), (25, 4)]
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
    ],
)
def test_bad_arguments_name_the_argument(builder, kwargs, name):
    with pytest.raises(ValueError, match=name):
        builder(**kwargs)
