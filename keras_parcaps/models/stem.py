"""The CNN stem shared by the paper's capsule networks, their checks and compiling."""

import keras

from keras_parcaps._checks import check_choice, check_positive_int
from keras_parcaps.layers.image_centering import ImageCentering
from keras_parcaps.layers.resnext_block import ResNeXtBlock
from keras_parcaps.models.compiling import compile_model
from keras_parcaps.models.image_classifier import ImageClassifier

# The stem halves the image three times: 400x400 -> 50x50.
STEM_STRIDE = 8
# Window of the grouped convolutions of the paper's CNN blocks.
BLOCK_KERNEL = 7
# Momentum of every BatchNormalization in the capsule networks (Keras: 0.99).
# Nadam at 1e-3 keeps moving the convolution kernels by about 9% every 250
# iterations for as long as training runs, so the batch statistics drift;
# moving averages with momentum 0.99 trail them by about 100 iterations and
# were 5-7% off in variance, enough for `predict` to lose most of its
# accuracy. With 0.9 they trail by 10 iterations (2-3% off, the noise of
# the batches). Measured on real leukocytes; see docs/concepts.md.
BATCH_NORM_MOMENTUM = 0.9

# What the paper's builders put before the Primary-Caps: the paper's stem
# and branch blocks, the same layers halving the grid by max-pooling
# (`downsample="pool"`), or a plain CNN (see `plain_backbone`).
BACKBONES = ("paper", "pooled", "plain")
# How the backbones made of the paper's layers halve the grid.
DOWNSAMPLE = {"paper": "stride", "pooled": "pool"}
# Widths of the plain backbone's four stages.
PLAIN_WIDTHS = (32, 64, 128, 256)

# The capsule sizes (3x3, 4x4, 5x5) and capsule-layer counts of the paper.
CAPSULE_SIZES = (9, 16, 25)
CAPSULE_LAYERS = (2, 3, 4)


def check_capsule_options(
    num_classes, capsule_size, capsule_layers, routing_iterations, backbone
) -> None:
    """Raises unless the options are ones the paper's networks take."""
    check_positive_int("num_classes", num_classes)
    check_choice("capsule_size", capsule_size, CAPSULE_SIZES)
    check_choice("capsule_layers", capsule_layers, CAPSULE_LAYERS)
    check_positive_int("routing_iterations", routing_iterations)
    check_choice("backbone", backbone, BACKBONES)


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


def stem(inputs, downsample: str = "stride"):
    """Applies the common CNN stem of the paper's capsule networks.

    `ImageCentering` (each image minus its mean colour; not in the paper, it
    keeps the first batch normalization's moving mean from trailing, see
    that layer), then conv 7x7 with stride 2 and 64 filters, batch
    normalization, ReLU; a `ResNeXtBlock` [64, 64, 128] of cardinality 16
    with stride 2; a `ResNeXtBlock` [128, 128, 256] of cardinality 32 with
    stride 2. The grouped convolutions are 7x7, as in the authors' code;
    every batch normalization has momentum `BATCH_NORM_MOMENTUM` (0.9; Keras
    and the paper: 0.99). A 400x400 image
    leaves the stem as a 50x50x256 feature map; the stem has about 0.16M
    parameters.

    A stride-2 layer samples every other position starting at one border.
    On an even size a 90-degree rotation or a flip of the image moves that
    grid by one pixel, so the features of a turned cell are not the turned
    features, whatever the kernels. At sizes 16k + 1 (65, 401) every
    stride-2 layer of the stem and of the branch blocks sees an odd size
    and its grid is symmetric (tests/models/test_stem.py).

    `downsample="pool"` keeps every layer and weight and moves each halving
    into 2x2 max-pooling: the 7x7 convolution runs at stride 1 and is
    pooled, the blocks pool their input (`ResNeXtBlock(downsample="pool")`).
    2x2 windows tile an even size, so the grid is symmetric at 64x64 and
    400x400 (and not at 65x65). Not in the paper; see `backbone="pooled"` of
    the builders.

    Args:
        inputs: Image tensor `(batch, height, width, channels)`.
        downsample: `"stride"` (the paper's) or `"pool"`.

    Returns:
        The feature map `(batch, ceil(height / 8), ceil(width / 8), 256)`.
    """
    # `ResNeXtBlock` checks `downsample` for the stem's first block.
    pooled = downsample == "pool"
    x = ImageCentering(name="centering")(inputs)
    x = keras.layers.Conv2D(
        64,
        7,
        strides=1 if pooled else 2,
        padding="same",
        use_bias=False,
        name="stem_conv",
    )(x)
    x = keras.layers.BatchNormalization(momentum=BATCH_NORM_MOMENTUM, name="stem_norm")(
        x
    )
    x = keras.layers.ReLU(name="stem_relu")(x)
    if pooled:
        x = keras.layers.MaxPooling2D(2, padding="same", name="stem_pool")(x)
    x = block([64, 64, 128], 16, "stem_block_1", downsample)(x)
    return block([128, 128, 256], 32, "stem_block_2", downsample)(x)


def plain_backbone(inputs):
    """Applies the plain CNN that can replace the paper's stem and blocks.

    `ImageCentering`, then four stages of a 3x3 convolution (32, 64, 128
    and 256 filters), batch normalization (momentum `BATCH_NORM_MOMENTUM`),
    ReLU and 2x2 max pooling: the feature map has 1/16 of the image's
    height and width, the grid the paper's stem and branch block give to
    the Primary-Caps (25x25 for a 400x400 image). About 0.39M parameters.

    Not in the paper. On real cells at 64x64 the paper's capsule head on
    this backbone learned as well as a plain CNN, while the paper's stem
    held every network built on it, capsules or not, 15-20 points lower in
    Acc (docs/concepts.md, "The stem, not the capsules").

    Args:
        inputs: Image tensor `(batch, height, width, channels)`.

    Returns:
        The feature map `(batch, ceil(height / 16), ceil(width / 16), 256)`.
    """
    x = ImageCentering(name="centering")(inputs)
    for i, filters in enumerate(PLAIN_WIDTHS, start=1):
        x = keras.layers.Conv2D(
            filters, 3, padding="same", use_bias=False, name=f"plain_conv_{i}"
        )(x)
        x = keras.layers.BatchNormalization(
            momentum=BATCH_NORM_MOMENTUM, name=f"plain_norm_{i}"
        )(x)
        x = keras.layers.ReLU(name=f"plain_relu_{i}")(x)
        x = keras.layers.MaxPooling2D(2, padding="same", name=f"plain_pool_{i}")(x)
    return x


def backbone_features(inputs, backbone: str):
    """Applies what the builders' `backbone` puts before their branches.

    Args:
        inputs: Image tensor `(batch, height, width, channels)`.
        backbone: One of `BACKBONES`: `"paper"` or `"pooled"` (the stem,
            sampling by strides or by pooling) or `"plain"`
            (`plain_backbone`).

    Returns:
        The feature map the branches (or the paper's block) read.
    """
    if backbone == "plain":
        return plain_backbone(inputs)
    return stem(inputs, DOWNSAMPLE[backbone])


def block(
    filters, cardinality: int, name: str, downsample: str = "stride"
) -> ResNeXtBlock:
    """A `ResNeXtBlock` of the paper's CNN: 7x7 groups, stride 2.

    Args:
        filters: The three widths `[f1, f2, f3]`.
        cardinality: Number of groups.
        name: Layer name.
        downsample: `"stride"` (the paper's) or `"pool"` (see
            `ResNeXtBlock`).

    Returns:
        The block, with `BATCH_NORM_MOMENTUM`.
    """
    return ResNeXtBlock(
        filters,
        cardinality=cardinality,
        kernel_size=BLOCK_KERNEL,
        strides=2,
        downsample=downsample,
        momentum=BATCH_NORM_MOMENTUM,
        name=name,
    )


def compiled_network(inputs, scores, name: str, loss, learning_rate):
    """The paper's network from `inputs` to `scores`, compiled the paper's way.

    Args:
        inputs: The image input tensor.
        scores: The class scores, `(batch, num_classes)`; their last
            dimension is the number of classes of WAcc.
        name: Model name.
        loss: The network's loss, such as `MarginLoss()` or `SpreadLoss()`.
        learning_rate: Nadam learning rate.

    Returns:
        A `kp.models.ImageClassifier` compiled by `compile_model` (Nadam,
        Acc and WAcc).
    """
    model = ImageClassifier(inputs, scores, name=name)
    return compile_model(model, loss=loss, learning_rate=learning_rate)
