"""The CNN stem shared by the paper's capsule networks, and input checks."""

import keras

from keras_parcaps.layers.resnext_block import ResNeXtBlock

# The stem halves the image three times: 400x400 -> 50x50.
STEM_STRIDE = 8
# Window of the grouped convolutions of the paper's CNN blocks.
BLOCK_KERNEL = 7


def check_input_shape(input_shape, min_size: int) -> tuple:
    """Returns `input_shape` as a tuple; raises unless it is a large enough image.

    Args:
        input_shape: `(height, width, channels)`.
        min_size: Smallest height and width that the network's strides
            reduce to at least one grid point.
    """
    shape = tuple(input_shape) if isinstance(input_shape, (list, tuple)) else None
    if (
        shape is None
        or len(shape) != 3
        or not all(isinstance(d, int) and d > 0 for d in shape)
    ):
        raise ValueError(
            "`input_shape` must be (height, width, channels) with positive "
            f"integers. Received: input_shape={input_shape!r}"
        )
    if min(shape[:2]) < min_size:
        raise ValueError(
            f"`input_shape` is too small for the strides of this network: height "
            f"and width must be at least {min_size}. Received: "
            f"input_shape={input_shape!r}"
        )
    return shape


def stem(inputs):
    """Applies the common CNN stem of the paper's capsule networks.

    Conv 7x7 with stride 2 and 64 filters, batch normalization, ReLU; a
    `ResNeXtBlock` [64, 64, 128] of cardinality 16 with stride 2; a
    `ResNeXtBlock` [128, 128, 256] of cardinality 32 with stride 2. The
    grouped convolutions are 7x7, as in the authors' code. A 400x400 image
    leaves the stem as a 50x50x256 feature map; the stem has about 0.16M
    parameters.

    Args:
        inputs: Image tensor `(batch, height, width, channels)`.

    Returns:
        The feature map `(batch, ceil(height / 8), ceil(width / 8), 256)`.
    """
    x = keras.layers.Conv2D(
        64, 7, strides=2, padding="same", use_bias=False, name="stem_conv"
    )(inputs)
    x = keras.layers.BatchNormalization(name="stem_norm")(x)
    x = keras.layers.ReLU(name="stem_relu")(x)
    x = ResNeXtBlock(
        [64, 64, 128], cardinality=16, kernel_size=BLOCK_KERNEL, strides=2,
        name="stem_block_1",
    )(x)
    return ResNeXtBlock(
        [128, 128, 256], cardinality=32, kernel_size=BLOCK_KERNEL, strides=2,
        name="stem_block_2",
    )(x)
