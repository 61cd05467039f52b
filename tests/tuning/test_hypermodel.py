import itertools
import os
import subprocess
import sys

import keras
import numpy as np
import pytest

keras_tuner = pytest.importorskip("keras_tuner")

import keras_parcaps as kp  # noqa: E402
from keras_parcaps.tuning.hypermodel import (  # noqa: E402
    CAPSULE_LAYERS,
    CAPSULE_SIZES,
    KINDS,
    PAPER_DEFAULTS,
    ParallelCapsHyperModel,
    objective,
)
from tests.backend_utils import eager_on_tensorflow  # noqa: E402
from tests.markers import once  # noqa: E402

BACKEND = keras.backend.backend()
# The smallest images the builders take: DR strides 16 times, EM needs a 3x3
# window of Mid-Caps after 16 (33 covers 2 capsule layers as well).
IMAGE = {"dr": (16, 16, 3), "em": (33, 33, 3)}
COMBOS = list(itertools.product(KINDS, CAPSULE_SIZES, CAPSULE_LAYERS))
# Every capsule size x layer count x kind of the default space trains on
# PyTorch (about 2 minutes on 2 shared cores). On TensorFlow and JAX every
# new model costs seconds of tracing or tens of seconds of XLA compilation on
# these cores, so TensorFlow runs the smallest, middle and largest capsule
# sizes across the layer counts and both kinds, and JAX the smallest (JAX
# compiled the three in 12-18 CPU-seconds each, TensorFlow traced each in 3;
# measured in `make test`, 2026-12-03); the search test there trains 3 more
# DR set-ups, and tests/models trains every builder on JAX.
SUBSET = {
    "tensorflow": [("dr", 9, 2), ("dr", 25, 4), ("em", 16, 3)],
    "jax": [("dr", 9, 2)],
}


def _hypermodel(kind, **space):
    return ParallelCapsHyperModel(kind, IMAGE[kind], num_classes=3, **space)


@pytest.mark.parametrize(
    "kind,size,layers",
    SUBSET.get(BACKEND, COMBOS),
    ids=lambda v: str(v),
)
def test_every_default_combination_builds_and_trains_one_step(kind, size, layers):
    default = _hypermodel(kind)
    assert size in default.capsule_sizes and layers in default.capsule_layers
    hypermodel = _hypermodel(
        kind,
        branches=(2, 2),
        capsule_sizes=[size],
        capsule_layers=[layers],
        routing_iterations=(1, 1),
    )
    hp = keras_tuner.HyperParameters()
    model = hypermodel.build(hp)
    assert hp.values == {
        "kind": kind,
        "parallel": True,
        "branches": 2,
        "capsule_size": size,
        "capsule_layers": layers,
        "routing_iterations": 1,
        "backbone": "paper",
    }
    assert model.name.startswith(f"parallel_{kind}_capsnet_{layers}l_2b")
    assert tuple(model.output.shape) == (None, 3)
    x = np.random.default_rng(0).random((3, *IMAGE[kind]), dtype=np.float32)
    y = np.eye(3, dtype=np.float32)
    before = [keras.ops.convert_to_numpy(w).copy() for w in model.trainable_weights]
    logs = eager_on_tensorflow(model).train_on_batch(x, y, return_dict=True)
    assert set(logs) == {"loss", "acc", "wacc"}
    assert np.isfinite(logs["loss"])
    after = [keras.ops.convert_to_numpy(w) for w in model.trainable_weights]
    assert any(not np.allclose(a, b) for a, b in zip(before, after, strict=True))


@pytest.mark.parametrize("kind", KINDS)
def test_one_branch_is_the_non_parallel_network(kind):
    hypermodel = _hypermodel(
        kind, branches=(1, 1), capsule_layers=[3], routing_iterations=(1, 1)
    )
    hp = keras_tuner.HyperParameters()
    name, kwargs = hypermodel.builder_call(hp)
    assert name == f"build_{kind}" and kwargs["n_mid_caps"] == 1
    model = hypermodel.build(hp)
    assert model.name == f"{kind}_capsnet_3l"
    # parallel=False: N counts the Mid-Caps of the non-parallel network.
    serial = _hypermodel(kind, branches=(3, 3), parallel=False)
    name, kwargs = serial.builder_call(keras_tuner.HyperParameters())
    assert name == f"build_{kind}" and kwargs["n_mid_caps"] == 3


@pytest.mark.parametrize("kind", KINDS)
def test_default_space_holds_the_papers_values(kind):
    hypermodel = ParallelCapsHyperModel(kind)
    hp = keras_tuner.HyperParameters()
    name, kwargs = hypermodel.builder_call(hp)
    paper = PAPER_DEFAULTS[kind]
    assert name == f"build_parallel_{kind}"
    assert kwargs == {
        "input_shape": (400, 400, 3),
        "num_classes": 15,
        "capsule_size": 16,
        "capsule_layers": 3,
        "routing_iterations": 3,
        "backbone": "paper",
        "learning_rate": 1e-3,
        "n_branches": paper["branches"],
    }
    space = {p.name: p for p in hp.space}
    assert (space["branches"].min_value, space["branches"].max_value) == (1, 16)
    assert list(space["capsule_size"].values) == [9, 16, 25]
    assert list(space["capsule_layers"].values) == [2, 3, 4]
    assert (
        space["routing_iterations"].min_value,
        space["routing_iterations"].max_value,
    ) == (1, 3)
    assert list(space["backbone"].values) == ["paper"]
    assert objective().name == "val_wacc" and objective().direction == "max"


@pytest.mark.parametrize(
    "backbones,default", [("plain", "plain"), (["plain", "paper"], "paper")]
)
def test_backbones_join_the_space(backbones, default):
    hypermodel = _hypermodel("em", backbones=backbones, branches=(2, 2))
    hp = keras_tuner.HyperParameters()
    _, kwargs = hypermodel.builder_call(hp)
    assert kwargs["backbone"] == default
    assert sorted(hp.space[-1].values) == sorted(np.atleast_1d(backbones).tolist())
    hp.values["backbone"] = "plain"
    model = hypermodel.build(hp)
    assert not any(isinstance(layer, kp.layers.ResNeXtBlock) for layer in model.layers)


def test_defaults_move_into_a_narrower_range():
    hypermodel = ParallelCapsHyperModel(
        "dr",
        branches=(2, 9, 3),
        capsule_sizes=[25, 9],
        capsule_layers=[4],
        routing_iterations=(1, 2),
    )
    hp = keras_tuner.HyperParameters()
    hypermodel.declare_hyperparameters(hp)
    # 12 branches is out of 2, 5, 8: the largest; 16 -> nearest of 9, 25.
    assert hp.values["branches"] == 8
    assert hp.values["capsule_size"] == 9
    assert hp.values["capsule_layers"] == 4
    assert hp.values["routing_iterations"] == 2


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"kind": "cnn"}, "`kind` must be one of"),
        ({"branches": (5, 2)}, "inverted range"),
        ({"branches": (0, 4)}, "`branches` must be an integer >= 1"),
        ({"branches": ()}, "`branches` must be a range"),
        ({"branches": 4}, "`branches` must be a range"),
        ({"branches": (1, 4, 0)}, "`branches step` must be"),
        ({"routing_iterations": (3, 1)}, "inverted range"),
        ({"capsule_sizes": []}, "`capsule_sizes` must be a non-empty"),
        ({"capsule_sizes": [16, 36]}, "`capsule_sizes` must be one of"),
        ({"capsule_layers": ()}, "`capsule_layers` must be a non-empty"),
        ({"capsule_layers": [1]}, "`capsule_layers` must be one of"),
        ({"backbones": ["vgg"]}, "`backbones` must be one of"),
        ({"backbones": []}, "`backbones` must be a non-empty"),
        ({"kind": "em", "branches": (1, 40)}, "must stay <= 32"),
        ({"num_classes": 1}, "`num_classes` must be an integer >= 2"),
        ({"input_shape": (64, 64)}, "`input_shape` must be"),
        ({"learning_rate": 0.0}, "`learning_rate` must be a positive"),
        ({"jit_compile": "xla"}, "`jit_compile` must be one of"),
    ],
    ids=lambda v: str(v) if isinstance(v, dict) else "",
)
def test_bad_input_raises_clear_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ParallelCapsHyperModel(**kwargs)


@once("what `import keras_parcaps` imports, in a fresh interpreter")
def test_keras_tuner_is_imported_lazily_with_a_clear_error():
    # A None entry in sys.modules makes `import keras_tuner` fail as if the
    # package were absent: `import keras_parcaps` must still work (so it
    # does not import KerasTuner eagerly), and kp.tuning says how to get it.
    code = (
        "import sys\n"
        "sys.modules['keras_tuner'] = None\n"
        "import keras_parcaps as kp\n"
        "try:\n"
        "    kp.tuning.ParallelCapsHyperModel\n"
        "except ImportError as error:\n"
        "    print('ERROR', error)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={**os.environ, "KERAS_BACKEND": "torch"},
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "ERROR" in result.stdout
    assert "pip install keras-parcaps[tuner]" in result.stdout
    assert kp.tuning.ParallelCapsHyperModel is ParallelCapsHyperModel
