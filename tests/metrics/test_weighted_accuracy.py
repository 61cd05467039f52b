import keras
import numpy as np
import pytest
from sklearn.metrics import balanced_accuracy_score

from keras_parcaps.metrics import WeightedAccuracy


def _numpy_wacc(y_true, y_pred, weights=None):
    weights = np.ones(len(y_true)) if weights is None else weights
    recalls = []
    for c in np.unique(y_true):
        member = y_true == c
        recalls.append(
            np.sum(weights[member] * (y_pred[member] == c)) / np.sum(weights[member])
        )
    return np.mean(recalls)


def test_matches_sklearn_over_batches(rng):
    y_true = rng.integers(0, 4, 50)
    scores = rng.random((50, 4)).astype("float32")
    metric = WeightedAccuracy(num_classes=4)
    for start in range(0, 50, 16):
        part = slice(start, start + 16)
        metric.update_state(np.eye(4)[y_true[part]], scores[part])
    expected = balanced_accuracy_score(y_true, scores.argmax(1))
    assert np.isclose(float(metric.result()), expected, atol=1e-6)
    assert np.isclose(expected, _numpy_wacc(y_true, scores.argmax(1)))
    metric.reset_state()
    assert float(metric.result()) == 0.0


def test_sparse_weights_and_absent_classes(rng):
    y_true = np.array([0, 0, 0, 2, 2])
    scores = np.eye(3)[[0, 2, 0, 2, 0]].astype("float32")
    weights = np.array([1.0, 2.0, 1.0, 1.0, 3.0])
    metric = WeightedAccuracy(num_classes=3, sparse=True)
    metric.update_state(y_true, scores, sample_weight=weights)
    # Class 1 never occurs: it is left out of the mean.
    expected = _numpy_wacc(y_true, scores.argmax(1), weights)
    assert np.isclose(float(metric.result()), expected)
    assert np.isclose(expected, (2 / 4 + 1 / 4) / 2)


def test_in_compile_and_config():
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    metric = WeightedAccuracy(2, name="wacc")
    model.compile(loss="mse", metrics=[metric])
    x = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 1]], "float32")
    y = np.eye(2)[[0, 1, 1, 1]].astype("float32")
    logs = model.evaluate(x, y, verbose=0, return_dict=True)
    predicted = model.predict(x, verbose=0).argmax(1)
    expected = balanced_accuracy_score(y.argmax(1), predicted)
    assert np.isclose(logs["wacc"], expected, atol=1e-6)
    clone = WeightedAccuracy.from_config(metric.get_config())
    assert clone.num_classes == 2 and clone.name == "wacc"
    with pytest.raises(ValueError, match="num_classes"):
        WeightedAccuracy(1)
