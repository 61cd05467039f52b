"""Batches for `Model.fit`: one image per class (the paper's) or shuffled.

Both are `keras.utils.PyDataset`s, so they feed every backend and show in
Keras progress bars. A batch is a pure function of `(seed, epoch, index)`:
a resumed run draws the same batches as an uninterrupted one would.
"""

import math

import keras
import numpy as np

from keras_parcaps._checks import check_positive_int
from keras_parcaps.data.augment import augment_images


def to_model_input(images) -> np.ndarray:
    """`uint8` images to the models' input: `float32` in `[0, 1]`."""
    return np.asarray(images, dtype=np.float32) / 255.0


class _Batches(keras.utils.PyDataset):
    def __init__(self, data, steps_per_epoch, augment, seed, **kwargs):
        super().__init__(**kwargs)
        if steps_per_epoch is not None:
            check_positive_int("steps_per_epoch", steps_per_epoch)
        self.data = data
        self.steps_per_epoch = steps_per_epoch
        self.augment = bool(augment)
        self.seed = int(seed)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Selects the epoch whose batches `__getitem__` returns."""
        self.epoch = int(epoch)

    def _batch(self, indices, step):
        images = self.data.images(indices)
        if self.augment:
            images = augment_images(images, rng=[self.seed, 7, step])
        labels = keras.utils.to_categorical(
            self.data.labels[indices], self.data.num_classes
        )
        return to_model_input(images), labels.astype(np.float32)


class OnePerClassBatches(_Batches):
    """The paper's batches: every class exactly once, in a shuffled order.

    Each class walks through its own reshuffled list of images, so a rare
    class repeats often while every image of a common class is still seen.
    A batch therefore has `num_classes` images whatever the class balance.

    Args:
        data: An `kp.data.ImageSet` (or anything with `labels`,
            `num_classes` and `images(indices)`); every class must have at
            least one image.
        steps_per_epoch: Batches per epoch (the paper's 500 iterations).
        augment: Whether to apply `augment_images` (flips, rotations).
        seed: Seed of the sampling and the augmentation.
        **kwargs: `keras.utils.PyDataset` arguments (`workers`, ...).

    Example:

        >>> batches = OnePerClassBatches(data, steps_per_epoch=500)  # doctest: +SKIP
        >>> model.fit(batches, epochs=10)  # doctest: +SKIP
    """

    def __init__(self, data, steps_per_epoch: int = 500, augment: bool = True,
                 seed: int = 0, **kwargs):
        super().__init__(data, steps_per_epoch, augment, seed, **kwargs)
        self.members = [
            np.flatnonzero(data.labels == label) for label in range(data.num_classes)
        ]
        empty = [data.class_names[c] for c, m in enumerate(self.members) if not len(m)]
        if empty:
            raise ValueError(
                f"One-image-per-class batches need every class; these have no "
                f"image: {', '.join(empty)}"
            )

    def __len__(self) -> int:
        return self.steps_per_epoch

    def batch_indices(self, index: int) -> np.ndarray:
        """Indices into `data` of the images of batch `index` of this epoch."""
        step = self.epoch * self.steps_per_epoch + int(index)
        picks = []
        for label, members in enumerate(self.members):
            cycle, position = divmod(step, len(members))
            order = np.random.default_rng([self.seed, label, cycle]).permutation(
                len(members)
            )
            picks.append(members[order[position]])
        shuffle = np.random.default_rng([self.seed, 1, step]).permutation(len(picks))
        return np.asarray(picks)[shuffle]

    def __getitem__(self, index):
        if not 0 <= index < len(self):
            raise IndexError(index)
        step = self.epoch * self.steps_per_epoch + int(index)
        return self._batch(self.batch_indices(index), step)


class ShuffledBatches(_Batches):
    """Ordinary batches: the whole set, reshuffled every pass.

    Args:
        data: A `kp.data.ImageSet`.
        batch_size: Images per batch. Default 32.
        steps_per_epoch: Batches per epoch; default one pass over the data
            (the last batch may be smaller). With a value, passes follow each
            other without a gap and every batch is full.
        shuffle: Whether to shuffle (`False` gives the data in order, for
            prediction).
        augment: Whether to apply `augment_images`.
        seed: Seed of the shuffling and the augmentation.
        **kwargs: `keras.utils.PyDataset` arguments.
    """

    def __init__(self, data, batch_size: int = 32, steps_per_epoch=None,
                 shuffle: bool = True, augment: bool = False, seed: int = 0,
                 **kwargs):
        super().__init__(data, steps_per_epoch, augment, seed, **kwargs)
        check_positive_int("batch_size", batch_size)
        if not len(data):
            raise ValueError("`data` holds no image.")
        self.batch_size = batch_size
        self.shuffle = bool(shuffle)

    def __len__(self) -> int:
        if self.steps_per_epoch is not None:
            return self.steps_per_epoch
        return math.ceil(len(self.data) / self.batch_size)

    def batch_indices(self, index: int) -> np.ndarray:
        n = len(self.data)
        if self.steps_per_epoch is None:
            start = self.epoch * n + index * self.batch_size
            stop = self.epoch * n + min(n, (index + 1) * self.batch_size)
        else:
            start = (self.epoch * self.steps_per_epoch + index) * self.batch_size
            stop = start + self.batch_size
        positions = np.arange(start, stop)
        if not self.shuffle:
            return positions % n
        cycles, offsets = np.divmod(positions, n)
        out = np.empty_like(positions)
        for cycle in np.unique(cycles):
            order = np.random.default_rng([self.seed, 2, cycle]).permutation(n)
            out[cycles == cycle] = order[offsets[cycles == cycle]]
        return out

    def __getitem__(self, index):
        if not 0 <= index < len(self):
            raise IndexError(index)
        step = self.epoch * len(self) + int(index)
        return self._batch(self.batch_indices(index), step)
