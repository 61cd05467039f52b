"""WAcc: the class-weighted accuracy of the paper, i.e. balanced accuracy."""

import keras
from keras import ops

from keras_parcaps._checks import check_positive_int


@keras.saving.register_keras_serializable(package="keras_parcaps")
class WeightedAccuracy(keras.metrics.Metric):
    """Mean per-class sensitivity (balanced accuracy), accumulated over batches.

    The paper's WAcc: the recall `TP_i / (TP_i + FN_i)` of each class `i`,
    averaged over the classes seen so far with equal weight, so a rare class
    counts as much as a common one. It equals scikit-learn's
    `balanced_accuracy_score` over all the batches of an epoch. Classes with
    no true sample yet are left out of the mean.

    Args:
        num_classes: Number of classes, at least 2.
        sparse: Whether `y_true` holds integer labels instead of one-hot
            rows. Default `False`.
        name: Metric name. Default `"wacc"`.
        dtype: Dtype of the result.

    Call arguments (`update_state`):
        y_true: One-hot `(batch, classes)` or, with `sparse=True`, integer
            labels `(batch,)`.
        y_pred: Class scores `(batch, classes)`; the arg-max is the class.
        sample_weight: Optional per-sample weights.

    Example:

        >>> metric = WeightedAccuracy(num_classes=2, sparse=True)
        >>> metric.update_state([0, 0, 0, 1], [[1, 0], [1, 0], [1, 0], [1, 0]])
        >>> float(metric.result())
        0.5

    Reference:
        - [Vigueras-Guillen et al., 2021](https://arxiv.org/abs/2108.02644)
    """

    def __init__(self, num_classes: int, sparse: bool = False, name="wacc", dtype=None):
        super().__init__(name=name, dtype=dtype)
        check_positive_int("num_classes", num_classes, minimum=2)
        self.num_classes = num_classes
        self.sparse = bool(sparse)
        self.true_counts = self.add_variable(
            shape=(num_classes,), initializer="zeros", name="true_counts"
        )
        self.hit_counts = self.add_variable(
            shape=(num_classes,), initializer="zeros", name="hit_counts"
        )

    def update_state(self, y_true, y_pred, sample_weight=None):
        y_pred = ops.convert_to_tensor(y_pred)
        y_true = ops.convert_to_tensor(y_true)
        if self.sparse or len(y_true.shape) < len(y_pred.shape):
            labels = ops.cast(ops.reshape(y_true, (-1,)), "int32")
        else:
            labels = ops.cast(ops.argmax(y_true, axis=-1), "int32")
        predicted = ops.cast(ops.argmax(y_pred, axis=-1), "int32")
        truth = ops.one_hot(labels, self.num_classes, dtype=self.dtype)
        hits = truth * ops.cast(ops.expand_dims(labels == predicted, -1), self.dtype)
        if sample_weight is not None:
            weight = ops.reshape(ops.cast(sample_weight, self.dtype), (-1, 1))
            truth, hits = truth * weight, hits * weight
        self.true_counts.assign_add(ops.sum(truth, axis=0))
        self.hit_counts.assign_add(ops.sum(hits, axis=0))

    def result(self):
        seen = ops.cast(self.true_counts > 0, self.dtype)
        recall = ops.divide_no_nan(self.hit_counts, self.true_counts)
        return ops.divide_no_nan(ops.sum(recall * seen), ops.sum(seen))

    def reset_state(self):
        for variable in self.variables:
            variable.assign(ops.zeros(variable.shape, dtype=variable.dtype))

    def get_config(self):
        return {
            **super().get_config(),
            "num_classes": self.num_classes,
            "sparse": self.sparse,
        }
