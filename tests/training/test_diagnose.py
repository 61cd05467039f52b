"""`kp.training.diagnose`: what it measures, checked against numpy."""

import keras
import numpy as np
import pytest

import keras_parcaps as kp
from keras_parcaps.data import ImageSet, synthetic_cells
from keras_parcaps.training import batch_norm_layers, diagnose, format_diagnosis


def _colour_data(n=6):
    # Class c is an image of colour c: easy to classify, easy to compute on.
    images = np.zeros((3 * n, 4, 4, 3), np.uint8)
    labels = np.repeat(np.arange(3), n)
    for i, label in enumerate(labels):
        images[i, ..., label] = 200 + i
    return ImageSet(None, labels, ["R", "G", "B"], images=images)


def _dense_model():
    # Named, so that the gradient's layer path does not depend on test order.
    model = keras.Sequential(
        [
            keras.Input((4, 4, 3)),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(3, activation="softmax", name="dense"),
        ],
        name="colours",
    )
    model.compile(optimizer="adam", loss="categorical_crossentropy")
    return model


def test_gradient_norms_match_numpy():
    data = _colour_data()
    model = _dense_model()
    report = diagnose(model, data, num_images=9, num_batches=1)
    # The first balanced batch, by hand: softmax cross-entropy's gradient
    # with respect to the kernel is x^T (p - y) / n, and to the bias the mean
    # of p - y.
    x, y = kp.data.OnePerClassBatches(data, 1, augment=False, seed=0)[0]
    features = x.mean(axis=(1, 2))
    kernel, bias = (keras.ops.convert_to_numpy(w) for w in model.weights)
    logits = features @ kernel + bias
    p = np.exp(logits - logits.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    grad_kernel = features.T @ (p - y) / len(x)
    grad_bias = (p - y).mean(0)
    expected = np.sqrt(np.sum(grad_kernel**2) + np.sum(grad_bias**2))
    got = report["gradients"]["colours/dense"]["gradient"]
    np.testing.assert_allclose(got, expected, rtol=1e-4)


def test_collapse_is_reported():
    data = _colour_data()
    model = keras.Sequential(
        [
            keras.Input((4, 4, 3)),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(
                3,
                activation="softmax",
                kernel_initializer="zeros",
                bias_initializer=keras.initializers.Constant([0.0, 5.0, 0.0]),
            ),
        ]
    )
    model.compile(optimizer="adam", loss="categorical_crossentropy")
    report = diagnose(model, data, num_images=9, num_batches=2)
    assert report["classes_predicted"] == ["G"]
    assert report["accuracy_inference"] == pytest.approx(1 / 3)
    assert any("collapsed: every image is called G" in w for w in report["warnings"])
    assert format_diagnosis(report).startswith("WARNING: collapsed")


def test_wrong_moving_statistics_are_found_and_left_in_place():
    data = _colour_data()
    inputs = keras.Input((4, 4, 3))
    x = keras.layers.GlobalAveragePooling2D()(inputs)
    x = keras.layers.BatchNormalization(name="norm")(x)
    model = keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(x))
    model.compile(optimizer="adam", loss="categorical_crossentropy")
    norm = model.get_layer("norm")
    norm.moving_mean.assign(np.full(3, 0.5, "float32"))
    norm.moving_variance.assign(np.full(3, 4.0, "float32"))
    report = diagnose(model, data, num_images=9, num_batches=3)
    (row,) = report["batch_norm"]["layers"]
    # The exact statistics are those of the balanced batches: every image
    # once (3 batches of one per class, 6 distinct images per class cycled).
    batches = kp.data.OnePerClassBatches(data, 3, augment=False, seed=0)
    x = np.concatenate([batches[i][0] for i in range(3)]).mean(axis=(1, 2))
    expected_var = np.median(np.abs(np.log(4.0 / x.var(0))))
    expected_mean = np.median(np.abs(0.5 - x.mean(0)) / x.std(0))
    assert row["variance_gap"] == pytest.approx(expected_var, rel=1e-3)
    assert row["mean_gap"] == pytest.approx(expected_mean, rel=1e-3)
    # Nothing was left changed.
    np.testing.assert_allclose(keras.ops.convert_to_numpy(norm.moving_mean), 0.5)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(norm.moving_variance), 4.0)


def test_capsule_statistics_of_a_parallel_network():
    data = synthetic_cells(counts=3, classes=["LYT", "EOS", "BAS"], image_size=16)
    model = kp.models.build_parallel_dr(
        input_shape=(16, 16, 3), num_classes=3, n_branches=2
    )
    weights = [keras.ops.convert_to_numpy(w).copy() for w in model.weights]
    report = diagnose(model, data, num_images=6, num_batches=2)
    rows = {row["layer"]: row for row in report["capsules"]}
    assert set(rows) == {
        "branches/branch_0/mid_cap_1",
        "branches/branch_1/mid_cap_1",
        "class_caps",
    }
    class_caps = rows["class_caps"]
    assert 0.0 <= class_caps["coupling_entropy"] <= 1.0
    assert (
        0.0 <= class_caps["output_length_min"] <= class_caps["output_length_max"] < 1.0
    )
    # A single Mid-Cap per branch has nothing to route.
    assert rows["branches/branch_0/mid_cap_1"]["coupling_entropy"] is None
    for before, after in zip(weights, model.weights, strict=True):
        np.testing.assert_array_equal(before, keras.ops.convert_to_numpy(after))
    assert len(batch_norm_layers(model)) == 17


def test_class_count_mismatch_is_an_error():
    with pytest.raises(ValueError, match="outputs 3 class scores.*2 classes"):
        diagnose(
            _dense_model(),
            synthetic_cells(counts=2, classes=["LYT", "EOS"], image_size=4),
        )
