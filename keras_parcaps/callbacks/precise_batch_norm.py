"""`PreciseBatchNorm`: exact BatchNormalization statistics when `fit` ends."""

import itertools
import math

import keras
import numpy as np

from keras_parcaps._checks import check_positive_int

# Values of input batches concatenated into one forward pass: 16 batches of
# twenty 64x64 images, a single batch of fifteen 400x400 images.
_PASS_VALUES = 2**22


def batch_norm_layers(model) -> list:
    """Every `BatchNormalization` layer of `model`, nested ones included.

    Walks sub-models and the layers that layers hold as attributes (such
    as the branch copies of `ParallelBranch` and the normalizations of
    `ResNeXtBlock`), which `model.layers` does not list.

    Args:
        model: A Keras model or layer.

    Returns:
        The layers, each once, in a stable order.

    Example:

        >>> import keras_parcaps as kp
        >>> model = kp.models.build_parallel_dr(
        ...     input_shape=(16, 16, 3), num_classes=2, n_branches=2)
        >>> # The stem's 1 + 2 blocks x 4, and a block of 4 in each branch.
        >>> len(batch_norm_layers(model))
        17
    """
    found, seen, stack = [], set(), [model]
    while stack:
        layer = stack.pop()
        if id(layer) in seen:
            continue
        seen.add(id(layer))
        if isinstance(layer, keras.layers.BatchNormalization):
            found.append(layer)
        children = []
        for value in vars(layer).values():
            values = value if isinstance(value, (list, tuple)) else [value]
            children += [v for v in values if isinstance(v, keras.layers.Layer)]
        stack.extend(reversed(children))
    return found


def recalibrate_batch_norm(model, batches, num_batches: int = 32, group=None) -> int:
    """Sets every BatchNormalization's moving statistics to precise averages.

    A moving average trails the batch statistics while the weights move,
    and `fit` with an optimizer that averages the weights (`use_ema=True`,
    the `kp.models` default) ends by writing weights that the statistics
    were never gathered with: on real cells that cost plain `predict` up to
    34 points of accuracy (docs/concepts.md). This function runs the model in
    training mode, without any weight update, on up to `num_batches`
    training batches and replaces the moving statistics by the plain
    average of the batch statistics ("precise BN", Wu & Johnson 2021).
    Trainable weights are not touched. `PreciseBatchNorm` calls it at the
    end of `fit`; `kp.models.ImageClassifier.fit` adds that callback.

    Args:
        model: A Keras model.
        batches: The training batches: an indexable sequence (a
            `keras.utils.PyDataset` such as `kp.data.OnePerClassBatches`) or
            an iterable (a `tf.data.Dataset`, a torch `DataLoader`) of
            `(x, y, ...)` tuples or of `x` arrays.
        num_batches: At most this many batches are averaged over (fewer if
            `batches` holds fewer).
        group: Batches concatenated into one forward pass. Default: as
            many as hold about 4M input values (16 batches of twenty 64x64
            images, one of fifteen 400x400 images).

    Returns:
        The number of BatchNormalization layers recalibrated.

    Example:

        >>> model = keras.Sequential(
        ...     [keras.Input((1,)), keras.layers.BatchNormalization()])
        >>> x = np.array([[1.0], [2.0], [3.0], [6.0]], "float32")
        >>> batches = [(x, None), (x + 4, None)]  # any (x, y) pairs
        >>> recalibrate_batch_norm(model, batches, group=1)
        1
        >>> layer = model.layers[0]  # means of the 2 batch means and variances
        >>> keras.ops.convert_to_numpy(layer.moving_mean).tolist()
        [5.0]
        >>> keras.ops.convert_to_numpy(layer.moving_variance).tolist()
        [3.5]
        >>> layer.momentum  # restored
        0.99
    """
    check_positive_int("num_batches", num_batches)
    if group is not None:
        check_positive_int("group", group)
    layers = batch_norm_layers(model)
    if not layers:
        return 0
    momenta = [layer.momentum for layer in layers]
    try:
        for k, x in enumerate(_passes(_inputs(batches, num_batches), group)):
            for layer in layers:
                # A running mean: the k-th pass gets weight 1 / (k + 1).
                layer.momentum = k / (k + 1)
            model(x, training=True)
    finally:
        for layer, momentum in zip(layers, momenta, strict=True):
            layer.momentum = momentum
    return len(layers)


def _inputs(batches, num_batches):
    """The inputs `x` of the first `num_batches` batches, as numpy arrays."""
    size = _indexable_size(batches)
    if size is not None:
        items = (batches[i] for i in range(min(num_batches, size)))
    else:
        items = itertools.islice(batches, num_batches)
    for item in items:
        x = item[0] if isinstance(item, (tuple, list)) else item
        yield keras.ops.convert_to_numpy(x)


def _passes(inputs, group):
    """Consecutive inputs concatenated, `group` or about `_PASS_VALUES` at a time."""
    chunk = []
    for x in inputs:
        full = sum(c.size for c in chunk) + x.size > _PASS_VALUES
        if group is None and chunk and full:
            yield np.concatenate(chunk)
            chunk = []
        chunk.append(x)
        if group is not None and len(chunk) == group:
            yield np.concatenate(chunk)
            chunk = []
    if chunk:
        yield np.concatenate(chunk)


class PreciseBatchNorm(keras.callbacks.Callback):
    """Ends `fit` with exact BatchNormalization statistics.

    At the end of `fit` (after `fit` has written the average of the weights
    into the model, where the optimizer keeps one), the moving statistics
    of every BatchNormalization layer are replaced by averages over
    training batches (`recalibrate_batch_norm`), so that `predict` and
    `evaluate` normalize with the statistics of the weights they run. The
    `kp.models` builders return a `kp.models.ImageClassifier`, whose `fit`
    adds this callback by itself; pass it to any other model's `fit`.

    Args:
        data: The training data, as given to `fit`: a `keras.utils.PyDataset`
            (such as `kp.data.OnePerClassBatches`), a `tf.data.Dataset`, a
            torch `DataLoader`, or an array of inputs. Not a generator:
            `fit` reads it once.
        batch_size: Batch size for an array. Default 32, as `fit`'s.
        num_batches: Batches to average over. Default 32.
        before_validation: Whether to recalibrate also before each
            validation inside `fit`, for the averaged weights that
            `keras.callbacks.SwapEMAWeights` validates.
        seed: Seed of the batches drawn from an array.

    Example:

        >>> model = keras.Sequential([
        ...     keras.Input((2,)),
        ...     keras.layers.BatchNormalization(),
        ...     keras.layers.Dense(1),
        ... ])
        >>> model.compile(optimizer=keras.optimizers.SGD(use_ema=True), loss="mse")
        >>> x = np.random.default_rng(0).normal(3.0, 2.0, (64, 2))
        >>> _ = model.fit(x, x[:, :1], epochs=2, verbose=0,
        ...               callbacks=[PreciseBatchNorm(x)])
        >>> norm = model.layers[0]  # the moving mean after 4 steps: exact
        >>> bool(np.allclose(keras.ops.convert_to_numpy(norm.moving_mean),
        ...                  x.mean(0), atol=1e-5))
        True
    """

    def __init__(
        self,
        data,
        batch_size: int | None = None,
        num_batches: int = 32,
        before_validation: bool = False,
        seed: int = 0,
    ):
        super().__init__()
        check_positive_int("num_batches", num_batches)
        if batch_size is not None:
            check_positive_int("batch_size", batch_size)
        self.batches = _rereadable_batches(data, batch_size or 32, num_batches, seed)
        self.num_batches = num_batches
        self.before_validation = before_validation

    @staticmethod
    def can_read(data) -> bool:
        """Whether `data`, as given to `fit`, can be read again after `fit`."""
        return _rereadable(data)

    def recalibrate(self):
        """Recalibrates `self.model` (a distributed trainer recalibrates a copy)."""
        recalibrate_batch_norm(self.model, self.batches, self.num_batches)

    def on_test_begin(self, logs=None):
        if not self.before_validation:
            return
        from keras_parcaps.training.averaged_weights import averaged_weights

        with averaged_weights(self.model):
            self.recalibrate()

    def on_train_end(self, logs=None):
        self.recalibrate()


def _indexable_size(batches):
    """The number of batches of an indexable sequence, else `None`."""
    if not hasattr(batches, "__getitem__"):
        return None
    if hasattr(batches, "__len__"):
        return len(batches)
    return getattr(batches, "num_batches", None)  # a `PyDataset`


def _rereadable(data) -> bool:
    if hasattr(data, "shape") or _indexable_size(data) is not None:
        return True
    try:
        return iter(data) is not data  # a Dataset or DataLoader, not a generator
    except TypeError:
        return False


def _rereadable_batches(data, batch_size, num_batches, seed):
    if not _rereadable(data):
        raise ValueError(
            "`data` must be readable again after `fit`: a keras.utils.PyDataset, a "
            "tf.data.Dataset, a torch DataLoader or an array, not an iterator or a "
            f"generator. Received: data={type(data).__name__}"
        )
    if hasattr(data, "shape"):
        return _ArrayBatches(data, batch_size, num_batches, seed)
    return data


class _ArrayBatches:
    """Batches of an array's rows drawn at random, as `fit` shuffles them
    (an array may be sorted by class)."""

    def __init__(self, x, batch_size, num_batches, seed):
        n = int(x.shape[0])
        order = np.random.default_rng(seed).permutation(n)
        count = min(num_batches, math.ceil(n / batch_size))
        self.x = x
        self.rows = [
            np.sort(order[i * batch_size : (i + 1) * batch_size]) for i in range(count)
        ]

    def __len__(self):
        return len(self.rows)

    def __getitem__(self, index):
        rows = self.rows[index]
        if isinstance(self.x, np.ndarray):
            return self.x[rows]
        return keras.ops.take(self.x, rows, axis=0)
