"""Tiny capsule networks for the explain tests (16-32 px, a few ms a step)."""

import keras
from keras import ops

import keras_parcaps as kp


def tiny_parallel_dr(size=16, num_classes=3, n_branches=3, capsule_layers=3):
    """Conv, then `n_branches` x (conv, PrimaryCaps[, one Mid-Cap]), DRCaps."""
    inputs = keras.Input((size, size, 3))
    x = keras.layers.Conv2D(8, 3, strides=2, activation="relu")(inputs)
    branch_in = keras.Input(tuple(x.shape[1:]))
    caps = kp.layers.PrimaryCaps(2, 6, kernel_size=3, strides=2)(
        keras.layers.Conv2D(8, 3, activation="relu")(branch_in)
    )
    if capsule_layers == 3:
        caps = kp.layers.DRCaps(
            1,
            8,
            kernel_initializer=keras.initializers.RandomNormal(stddev=0.3),
            name="mid_cap",
        )(caps)
    branch = keras.Model(branch_in, caps, name="branch")
    caps = kp.layers.ParallelBranch(branch, n_branches, name="branches")(x)
    caps = kp.layers.DRCaps(
        num_classes,
        8,
        kernel_initializer=keras.initializers.RandomNormal(stddev=0.5),
        name="class_caps",
    )(caps)
    scores = kp.layers.CapsuleLength(name="length")(caps)
    model = keras.Model(inputs, scores, name="tiny_parallel_dr")
    model.compile(optimizer="nadam", loss=kp.losses.MarginLoss())
    return model


def tiny_parallel_em(size=16, num_classes=3, n_branches=2):
    """Conv, then `n_branches` x (matrix PrimaryCaps, EMConvCaps), EMClassCaps."""
    inputs = keras.Input((size, size, 3))
    x = keras.layers.Conv2D(8, 3, strides=2, activation="relu")(inputs)
    branch_in = keras.Input(tuple(x.shape[1:]))
    caps = kp.layers.PrimaryCaps(3, 16, kernel_size=3, strides=2, kind="matrix")(
        branch_in
    )
    caps = kp.layers.EMConvCaps(1, kernel_size=3, padding="same", name="mid_caps")(caps)
    branch = keras.Model(branch_in, caps, name="branch")
    caps = kp.layers.ParallelBranch(branch, n_branches, name="branches")(x)
    caps = kp.layers.EMClassCaps(
        num_classes, coordinate_addition=True, name="class_caps"
    )(caps)
    scores = ops.take(caps, caps.shape[-1] - 1, axis=-1)
    model = keras.Model(inputs, scores, name="tiny_parallel_em")
    model.compile(optimizer="nadam", loss=kp.losses.SpreadLoss())
    return model


def tiny_sabour(num_classes=3):
    """Sabour's CapsNet with its decoder at its smallest input, 28x28x1."""
    model = kp.models.SabourCapsNet(input_shape=(28, 28, 1), num_classes=num_classes)
    model.build((None, 28, 28, 1))
    return model
