import keras
import pytest

import keras_parcaps as kp
from tests.markers import not_on_backend
from tests.models.builder_checks import check_trains_saves_loads


def test_build_resnext50_architecture():
    model = kp.models.build_resnext50(input_shape=(32, 32, 3), num_classes=3)
    assert isinstance(model.loss, str) and "crossentropy" in model.loss
    blocks = [x for x in model.layers if isinstance(x, kp.layers.ResNeXtBlock)]
    assert [b.filters[2] for b in blocks] == [256] * 3 + [512] * 4 + [1024] * 6 + [
        2048
    ] * 3
    assert all(b.cardinality == 32 for b in blocks)
    # torchvision's resnext50_32x4d: 25,028,904 parameters, of which its
    # 1000-class head is 2048 x 1000 + 1000.
    trainable = sum(int(keras.ops.size(w)) for w in model.trainable_weights)
    assert trainable == 25_028_904 - 2_049_000 + 2048 * 3 + 3


# On JAX, XLA's compilation of this 23M-parameter network's training step
# took 85 s of the suite (TensorFlow 35 s, PyTorch 15 s); tests/layers checks
# `ResNeXtBlock`, every layer of it, on JAX too.
@not_on_backend("jax", "ResNeXtBlock is checked there in tests/layers")
def test_build_resnext50_trains_saves_loads():
    model = kp.models.build_resnext50(input_shape=(32, 32, 3), num_classes=3)
    check_trains_saves_loads(model, 3)


@pytest.mark.parametrize(
    "kwargs,name",
    [
        (dict(input_shape=(16, 16, 3)), "input_shape"),
        (dict(num_classes=0), "num_classes"),
    ],
)
def test_bad_arguments_name_the_argument(kwargs, name):
    with pytest.raises(ValueError, match=name):
        kp.models.build_resnext50(**kwargs)
