"""A tiny capsule network for fast training tests (any input size >= 24)."""

import keras

import keras_parcaps as kp


def tiny_capsnet(input_shape=(32, 32, 3), num_classes=6, **kwargs):
    """Conv, conv, PrimaryCaps, DRCaps, CapsuleLength; compiled with margin loss."""
    inputs = keras.Input(input_shape)
    x = keras.layers.Conv2D(16, 5, strides=2, activation="relu")(inputs)
    x = keras.layers.Conv2D(32, 3, strides=2, activation="relu")(x)
    x = kp.layers.PrimaryCaps(4, 8, kernel_size=3, strides=2)(x)
    x = kp.layers.DRCaps(num_classes, 8)(x)
    outputs = kp.layers.CapsuleLength()(x)
    model = keras.Model(inputs, outputs, name="tiny_capsnet")
    model.compile(optimizer="nadam", loss=kp.losses.MarginLoss())
    return model
