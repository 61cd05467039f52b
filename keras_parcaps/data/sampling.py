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
    """`uint8` images to the models' input: `float32` in `[0, 1]`.

    Args:
        images: `uint8` array of any shape.

    Returns:
        A `float32` array of the same shape, divided by 255.

    Example:

        >>> to_model_input(np.array([0, 51, 255], np.uint8))
        array([0. , 0.2, 1. ], dtype=float32)
    """
    return np.asarray(images, dtype=np.float32) / 255.0


class _Batches(keras.utils.PyDataset):
    """Epochs, shards and `__getitem__`; subclasses give `batch_indices`."""

    def __init__(
        self,
        data,
        steps_per_epoch,
        augment,
        seed,
        num_shards=1,
        shard_index=0,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if steps_per_epoch is not None:
            check_positive_int("steps_per_epoch", steps_per_epoch)
        check_positive_int("num_shards", num_shards)
        if not 0 <= shard_index < num_shards:
            raise ValueError(
                f"`shard_index` must be in [0, num_shards={num_shards}). "
                f"Received: shard_index={shard_index}"
            )
        self.data = data
        self.steps_per_epoch = steps_per_epoch
        self.augment = bool(augment)
        self.seed = int(seed)
        self.num_shards = int(num_shards)
        self.shard_index = int(shard_index)
        self.epoch = 0

    def shard(self, indices) -> slice:
        """The part of a global batch of `len(indices)` this shard holds.

        Shards are contiguous, equal and disjoint; together they are the
        global batch, in order.
        """
        size, rest = divmod(len(indices), self.num_shards)
        if rest:
            raise ValueError(
                f"A batch of {len(indices)} images does not split into "
                f"num_shards={self.num_shards} equal shards; take a multiple "
                "of the shard count (`kp.training.replica_batch_multiple` "
                "gives the images per class)."
            )
        return slice(self.shard_index * size, (self.shard_index + 1) * size)

    def set_epoch(self, epoch: int) -> None:
        """Selects the epoch whose batches `__getitem__` returns."""
        self.epoch = int(epoch)

    def __getitem__(self, index):
        if not 0 <= index < len(self):
            raise IndexError(index)
        # The batch's place in the run seeds its augmentation.
        step = self.epoch * len(self) + int(index)
        indices = self.batch_indices(index)
        # Only this shard's images are read and augmented; the augmentation
        # skips the draws of the shards before it, so the shards together
        # are exactly the unsharded batch.
        part = self.shard(indices)
        indices = indices[part]
        images = self.data.images(indices)
        if self.augment:
            images = augment_images(images, rng=[self.seed, 7, step], skip=part.start)
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
        images_per_class: Images of each class in a batch. Default 1 (the
            paper); data-parallel training takes
            `kp.training.replica_batch_multiple` so batches split evenly.
        num_shards: Number of processes sharing each batch (distributed
            training). Default 1.
        shard_index: Which shard this object returns: `__getitem__` gives
            the `shard_index`-th of `num_shards` equal, contiguous parts of
            the global batch `batch_indices` (images and augmentation as in
            the unsharded batch), so every process reads only its own
            images and every global batch still holds `images_per_class`
            images of every class.
        **kwargs: `keras.utils.PyDataset` arguments (`workers`, ...).

    Example:

        >>> # Three NGS images and one LYT: the LYT image is in every batch.
        >>> from keras_parcaps.data import synthetic_cells
        >>> data = synthetic_cells(counts=[3, 1], classes=["NGS", "LYT"],
        ...                        image_size=16)
        >>> batches = OnePerClassBatches(data, steps_per_epoch=4, augment=False)
        >>> len(batches)
        4
        >>> x, y = batches[0]
        >>> x.shape, x.dtype, y.sum(axis=0).tolist()
        ((2, 16, 16, 3), dtype('float32'), [1.0, 1.0])
        >>> [sorted(batches.batch_indices(i).tolist()) for i in range(4)]
        [[2, 3], [0, 3], [1, 3], [1, 3]]
        >>> pairs = OnePerClassBatches(data, 4, augment=False, images_per_class=2)
        >>> pairs[0][1].sum(axis=0).tolist()  # two of each class per batch
        [2.0, 2.0]
        >>> # Two processes each take half of every global batch:
        >>> halves = [OnePerClassBatches(data, 4, augment=False,
        ...                              images_per_class=2, num_shards=2,
        ...                              shard_index=i) for i in range(2)]
        >>> [len(h[0][0]) for h in halves]
        [2, 2]
        >>> np.array_equal(np.concatenate([h[0][0] for h in halves]), pairs[0][0])
        True
    """

    def __init__(
        self,
        data,
        steps_per_epoch: int = 500,
        augment: bool = True,
        seed: int = 0,
        images_per_class: int = 1,
        num_shards: int = 1,
        shard_index: int = 0,
        **kwargs,
    ):
        super().__init__(
            data, steps_per_epoch, augment, seed, num_shards, shard_index, **kwargs
        )
        check_positive_int("images_per_class", images_per_class)
        self.images_per_class = images_per_class
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
        k = self.images_per_class
        for label, members in enumerate(self.members):
            # Draw `k * step` onwards of the class's walk: with k = 1 the
            # batches are those of the paper's one-per-class sampling.
            for draw in range(k * step, k * (step + 1)):
                cycle, position = divmod(draw, len(members))
                order = np.random.default_rng([self.seed, label, cycle]).permutation(
                    len(members)
                )
                picks.append(members[order[position]])
        shuffle = np.random.default_rng([self.seed, 1, step]).permutation(len(picks))
        return np.asarray(picks)[shuffle]


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
        num_shards: Number of processes sharing each batch. Default 1.
        shard_index: Which of the `num_shards` equal parts of each batch
            `__getitem__` returns (see `OnePerClassBatches`).
        **kwargs: `keras.utils.PyDataset` arguments.

    Example:

        >>> from keras_parcaps.data import ImageSet
        >>> data = ImageSet(None, [0, 1, 1, 0], ["a", "b"],
        ...                 images=np.zeros((4, 8, 8, 3), np.uint8))
        >>> ordered = ShuffledBatches(data, batch_size=3, shuffle=False)
        >>> len(ordered), [ordered.batch_indices(i).tolist() for i in range(2)]
        (2, [[0, 1, 2], [3]])
        >>> x, y = ordered[0]
        >>> x.shape, y.tolist()
        ((3, 8, 8, 3), [[1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])
        >>> shuffled = ShuffledBatches(data, batch_size=3, seed=0)
        >>> seen = np.concatenate([shuffled.batch_indices(i) for i in range(2)])
        >>> sorted(seen.tolist())  # every image once per pass
        [0, 1, 2, 3]
    """

    def __init__(
        self,
        data,
        batch_size: int = 32,
        steps_per_epoch=None,
        shuffle: bool = True,
        augment: bool = False,
        seed: int = 0,
        num_shards: int = 1,
        shard_index: int = 0,
        **kwargs,
    ):
        super().__init__(
            data, steps_per_epoch, augment, seed, num_shards, shard_index, **kwargs
        )
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
