import numpy as np
import pytest

from keras_parcaps.data import ImageSet, OnePerClassBatches, ShuffledBatches


def _data(counts, size=6):
    labels = np.repeat(np.arange(len(counts)), counts)
    # Each image is filled with its own index, so batches can be traced back.
    images = np.broadcast_to(
        np.arange(len(labels), dtype=np.uint8)[:, None, None, None],
        (len(labels), size, size, 3),
    )
    return ImageSet(None, labels, [f"c{i}" for i in range(len(counts))], images=images)


def test_one_per_class_every_batch():
    data = _data([50, 7, 1, 3])
    batches = OnePerClassBatches(data, steps_per_epoch=20, augment=False, seed=3)
    assert len(batches) == 20
    orders = set()
    for epoch in range(2):
        batches.set_epoch(epoch)
        for i in range(len(batches)):
            x, y = batches[i]
            assert x.shape == (4, 6, 6, 3) and x.dtype == np.float32
            assert y.shape == (4, 4)
            assert sorted(y.argmax(1).tolist()) == [0, 1, 2, 3]
            assert np.array_equal(y.sum(1), np.ones(4))
            index = np.rint(x[:, 0, 0, 0] * 255).astype(int)
            assert np.array_equal(data.labels[index], y.argmax(1))
            orders.add(tuple(y.argmax(1)))
    assert len(orders) > 5  # the order within a batch is shuffled


def test_one_per_class_walks_through_each_class():
    data = _data([7, 3])
    batches = OnePerClassBatches(data, steps_per_epoch=7, augment=False)
    seen = [batches.batch_indices(i) for i in range(7)]
    class0 = [int(i) for b in seen for i in b if data.labels[i] == 0]
    assert sorted(class0) == list(range(7))  # every image once per cycle
    class1 = [int(i) for b in seen[:6] for i in b if data.labels[i] == 1]
    assert sorted(class1) == [7, 7, 8, 8, 9, 9]


def test_one_per_class_is_deterministic():
    data = _data([5, 5, 5])
    a = OnePerClassBatches(data, 4, augment=True, seed=1)
    b = OnePerClassBatches(data, 4, augment=True, seed=1)
    c = OnePerClassBatches(data, 4, augment=True, seed=2)
    a.set_epoch(3)
    b.set_epoch(3)
    c.set_epoch(3)
    assert np.array_equal(a[2][0], b[2][0])
    assert not all(
        np.array_equal(a.batch_indices(i), c.batch_indices(i)) for i in range(4)
    )


def test_one_per_class_needs_every_class():
    data = ImageSet(None, [0, 0], ["a", "b"], images=np.zeros((2, 4, 4, 3)))
    with pytest.raises(ValueError, match="no image: b"):
        OnePerClassBatches(data, 3)
    with pytest.raises(IndexError):
        OnePerClassBatches(_data([1, 1]), 3)[3]


def test_shuffled_batches_one_pass():
    data = _data([6, 4, 3])
    batches = ShuffledBatches(data, batch_size=5, seed=0)
    assert len(batches) == 3
    for epoch in range(2):
        batches.set_epoch(epoch)
        seen = np.concatenate([batches.batch_indices(i) for i in range(3)])
        assert sorted(seen.tolist()) == list(range(13))
        x, y = batches[2]
        assert len(x) == 3  # the last batch is the remainder


def test_shuffled_batches_fixed_steps_and_order():
    data = _data([6, 4, 3])
    batches = ShuffledBatches(data, batch_size=5, steps_per_epoch=4)
    sizes = [len(batches[i][0]) for i in range(4)]
    assert sizes == [5, 5, 5, 5]
    first = np.concatenate([batches.batch_indices(i) for i in range(4)])[:13]
    assert sorted(first.tolist()) == list(range(13))
    ordered = ShuffledBatches(data, batch_size=5, shuffle=False)
    assert ordered.batch_indices(1).tolist() == [5, 6, 7, 8, 9]


def test_augmented_batches_keep_labels():
    data = _data([3, 3])
    batches = OnePerClassBatches(data, 2, augment=True, seed=0)
    x, y = batches[0]
    index = np.rint(x[:, 3, 3, 0] * 255).astype(int)  # constant images
    assert np.array_equal(data.labels[index], y.argmax(1))
