"""`explain_capsules` on tiny parallel DR / EM networks and Sabour's CapsNet."""

import keras
import numpy as np
import pytest
from keras import ops
from PIL import Image

from keras_parcaps.explain import explain_capsules, pose_perturbation
from keras_parcaps.explain.explanation_panel import plot_explanation
from keras_parcaps.explain.explanation_summary import plot_explanation_summary
from keras_parcaps.explain.pose_perturbation_grid import plot_pose_perturbation
from tests.explain.test_routing_traces import numpy_procedure_1_trace
from tests.explain.tiny_models import tiny_parallel_dr, tiny_parallel_em, tiny_sabour


@pytest.fixture
def images(rng):
    return rng.uniform(size=(4, 16, 16, 3)).astype("float32")


def _intermediate(model, name, images):
    probe = keras.Model(model.inputs[0], model.get_layer(name).input)
    return ops.convert_to_numpy(probe(images))


@pytest.mark.parametrize("capsule_layers", [2, 3])
def test_parallel_dr_coupling_is_procedure_1_and_outputs_unchanged(
    images, capsule_layers
):
    model = tiny_parallel_dr(capsule_layers=capsule_layers)
    before = ops.convert_to_numpy(model(images))
    weights = [ops.convert_to_numpy(w) for w in model.weights]
    explanation = explain_capsules(
        model, images, labels=[0, 1, 2, 0], class_names=["a", "b", "c"]
    )
    after = ops.convert_to_numpy(model(images))
    np.testing.assert_array_equal(before, after)
    for w, saved in zip(model.weights, weights, strict=True):
        np.testing.assert_array_equal(ops.convert_to_numpy(w), saved)
    np.testing.assert_allclose(explanation.scores, before, atol=1e-6)
    assert explanation.predictions.tolist() == before.argmax(-1).tolist()

    # The class layer's coupling, per iteration, against numpy Procedure 1 on
    # the same input and weights.
    layer = model.get_layer("class_caps")
    u = _intermediate(model, "class_caps", images)
    c_ref, a_ref, _ = numpy_procedure_1_trace(
        u, ops.convert_to_numpy(layer.kernel), False, layer.routing_iterations
    )
    trace = explanation.class_routing
    assert trace["name"] == "class_caps"
    np.testing.assert_allclose(trace["coupling"], c_ref, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(trace["agreement"], a_ref, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(trace["coupling"].sum(-1), 1.0, atol=1e-5)
    for entry in explanation.routing:
        assert entry["reproduction_error"] < 1e-5, entry["name"]
    names = [entry["name"] for entry in explanation.routing]
    if capsule_layers == 3:
        assert names == [f"branches/branch_{b}/mid_cap" for b in range(3)] + [
            "class_caps"
        ]
        # One Mid-Cap per branch: no routing, the coupling is 1.
        np.testing.assert_array_equal(explanation.routing[0]["coupling"], 1.0)
    else:
        assert names == ["class_caps"]

    branches = explanation.branches
    assert branches["share"].shape == (4, 3, 3)
    np.testing.assert_allclose(branches["share"].sum(1), 1.0, atol=1e-5)
    # Per branch: the mean coupling of its capsules, the sum of their parts.
    per_branch = u.reshape(4, -1, 3, 2, u.shape[-1]) if capsule_layers == 2 else None
    if capsule_layers == 3:
        np.testing.assert_allclose(
            branches["coupling"], trace["coupling"][-1], atol=1e-6
        )
        np.testing.assert_allclose(
            branches["length"], np.linalg.norm(u, axis=-1), rtol=1e-5
        )
    else:
        lengths = np.linalg.norm(per_branch, axis=-1).mean(axis=(1, 3))
        np.testing.assert_allclose(branches["length"], lengths, rtol=1e-5)
    record = explanation.to_dict()
    assert record["summary"]["n"] == 4 and 0 <= record["summary"]["agr"] <= 1
    assert record["images"][1]["label"] == "b"
    assert len(record["images"][0]["branches"]) == 3


def _zero(layer):
    for weight in layer.weights:
        weight.assign(np.zeros(weight.shape, "float32"))


@pytest.mark.parametrize("capsule_layers", [2, 3])
def test_zeroed_branch_contributes_nothing(images, capsule_layers):
    model = tiny_parallel_dr(capsule_layers=capsule_layers)
    branch = model.get_layer("branches").branches[1]
    # Branch 1's last capsule layer outputs zero capsules: squash(0) = 0.
    last = branch.layers[-1]
    _zero(last)
    explanation = explain_capsules(model, images, orientations=False)
    b = explanation.branches
    np.testing.assert_allclose(b["length"][:, 1], 0.0, atol=1e-6)
    np.testing.assert_allclose(b["contribution"][:, 1], 0.0, atol=1e-7)
    np.testing.assert_allclose(b["share"][:, 1], 0.0, atol=1e-6)
    np.testing.assert_allclose(b["scores"][:, 1], 0.0, atol=1e-5)
    assert np.all(np.abs(b["share"][:, [0, 2]]).sum(1) > 0.1)
    np.testing.assert_allclose(b["share"].sum(1), 1.0, atol=1e-5)


def test_branch_alone_is_the_network_with_other_branches_zeroed(images):
    model = tiny_parallel_dr()
    explanation = explain_capsules(model, images, orientations=False)
    alone = explanation.branches["scores"][:, 0]
    for k in (1, 2):
        _zero(model.get_layer("branches").branches[k].layers[-1])
    probe = keras.Model(model.inputs[0], model.get_layer("class_caps").output)
    capsules = ops.convert_to_numpy(probe(images))
    np.testing.assert_allclose(
        alone, np.linalg.norm(capsules, axis=-1), rtol=1e-4, atol=1e-6
    )
    assert alone.max() > 1e-5


def test_parallel_em(images):
    model = tiny_parallel_em()
    before = ops.convert_to_numpy(model(images))
    explanation = explain_capsules(model, images)
    np.testing.assert_array_equal(before, ops.convert_to_numpy(model(images)))
    np.testing.assert_allclose(explanation.scores, before, atol=1e-6)
    for entry in explanation.routing:
        assert entry["kind"] == "em"
        assert entry["reproduction_error"] < 1e-4, entry["name"]
    trace = explanation.class_routing
    np.testing.assert_allclose(trace["coupling"].sum(-1), 1.0, atol=1e-5)
    b = explanation.branches
    np.testing.assert_allclose(b["share"].sum(1), 1.0, atol=1e-5)
    # The branch "length" of matrix capsules is their mean activation.
    u = _intermediate(model, "class_caps", images)
    np.testing.assert_allclose(b["length"], u[..., -1].mean(axis=(1, 2)), rtol=1e-5)


def test_sabour_pose_perturbation(rng):
    model = tiny_sabour()
    images = rng.uniform(size=(2, 28, 28, 1)).astype("float32")
    explanation = explain_capsules(model, images, orientations=False)
    assert explanation.routing[0]["coupling"].shape == (3, 2, 1152, 3)
    assert explanation.routing[0]["reproduction_error"] < 1e-5
    grid = explanation.pose_perturbation
    assert grid.shape == (2, 16, 11, 28, 28, 1)
    # The middle column adds 0: the plain reconstruction of the winner.
    plain = ops.convert_to_numpy(model.reconstruct(images))
    np.testing.assert_allclose(
        grid[:, :, 5], np.repeat(plain[:, None], 16, 1), atol=1e-5
    )
    other = pose_perturbation(model, images, values=[0.0, 5.0], labels=[1, 1])
    assert other.shape == (2, 16, 2, 28, 28, 1)
    assert np.abs(other[:, :, 1] - other[:, :, 0]).max() > 0


def _png(path):
    image = np.asarray(Image.open(path).convert("L"), "float32")
    assert image.shape[0] > 300 and image.shape[1] > 300
    assert image.std() > 10  # not blank


def test_pictures_render(tmp_path, images, rng):
    explanation = explain_capsules(tiny_parallel_dr(), images, labels=[0, 1, 2, 0])
    _png(plot_explanation(explanation, 1, tmp_path / "panel.png"))
    _png(plot_explanation_summary(explanation, tmp_path / "summary.png"))
    em = explain_capsules(tiny_parallel_em(), images, orientations=False)
    _png(plot_explanation(em, 0, tmp_path / "em.png"))
    _png(plot_explanation_summary(em, tmp_path / "em_summary.png"))
    sabour = explain_capsules(
        tiny_sabour(), rng.uniform(size=(1, 28, 28, 1)), orientations=False
    )
    _png(plot_explanation(sabour, 0, tmp_path / "sabour.png"))
    _png(plot_pose_perturbation(sabour, 0, tmp_path / "pose.png"))
    with pytest.raises(ValueError, match="no pose perturbation"):
        plot_pose_perturbation(explanation, 0, tmp_path / "none.png")


def test_bad_inputs(images):
    with pytest.raises(ValueError, match="must be a batch"):
        explain_capsules(tiny_parallel_dr(), images[0])
    with pytest.raises(ValueError, match="name the model's 3 classes"):
        explain_capsules(
            tiny_parallel_dr(), images, class_names=["a"], orientations=False
        )
    plain = keras.Sequential(
        [keras.Input((16, 16, 3)), keras.layers.Flatten(), keras.layers.Dense(3)]
    )
    with pytest.raises(ValueError, match="no routing layer"):
        explain_capsules(plain, images, orientations=False)
