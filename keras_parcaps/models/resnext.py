"""ResNeXt-50 (32x4d), the paper's CNN baseline."""

import keras

from keras_parcaps._checks import check_positive_int
from keras_parcaps.layers.resnext_block import ResNeXtBlock
from keras_parcaps.models.compiling import compile_model
from keras_parcaps.models.image_classifier import ImageClassifier
from keras_parcaps.models.stem import check_input_shape

# (blocks, [f1, f2, f3]) per stage; cardinality 32, 4 channels per group.
STAGES = (
    (3, [128, 128, 256]),
    (4, [256, 256, 512]),
    (6, [512, 512, 1024]),
    (3, [1024, 1024, 2048]),
)
CARDINALITY = 32
# Stem conv, max pooling, and stages 2 to 4 each halve the image.
MIN_SIZE = 32


def build_resnext50(
    input_shape=(400, 400, 3),
    num_classes: int = 15,
    learning_rate: float = 1e-3,
) -> keras.Model:
    """Builds and compiles ResNeXt-50 (32x4d), the paper's CNN baseline.

    Conv 7x7 with stride 2 and 64 filters, batch normalization, ReLU and a
    3x3 max pooling with stride 2; four stages of 3, 4, 6 and 3
    `ResNeXtBlock`s of cardinality 32 with 3x3 grouped convolutions
    (widths [128, 128, 256] to [1024, 1024, 2048], stride 2 in the first
    block of stages 2 to 4); global average pooling and a softmax layer.
    Trained with categorical cross-entropy.

    Parameters with 15 classes: 22.98M trainable (the torchvision
    `resnext50_32x4d` body, whose 1000-class head is 2.05M of its 25.03M,
    with a 30,735-parameter head: 23,010,639) plus 68,224 batch-normalization
    statistics, 23.08M in `count_params()` against the paper's 23.3M
    (-1.0%). The count does not depend on the input size.

    Args:
        input_shape: Image shape, channels last, at least 32x32. Default
            `(400, 400, 3)`.
        num_classes: Number of classes. Default 15.
        learning_rate: Nadam learning rate. Default 1e-3.

    Returns:
        A `keras.Model` from images to class probabilities, compiled with
        Nadam, categorical cross-entropy, and Acc and WAcc
        (`compile_model`).

    Example:

        >>> model = build_resnext50(input_shape=(64, 64, 3))
        >>> tuple(model.output.shape)
        (None, 15)

    Reference:
        - [Xie et al., 2017](https://arxiv.org/abs/1611.05431)
    """
    check_positive_int("num_classes", num_classes)
    input_shape = check_input_shape(input_shape, MIN_SIZE)
    inputs = keras.Input(input_shape, name="image")
    x = keras.layers.Conv2D(
        64, 7, strides=2, padding="same", use_bias=False, name="stem_conv"
    )(inputs)
    x = keras.layers.BatchNormalization(name="stem_norm")(x)
    x = keras.layers.ReLU(name="stem_relu")(x)
    x = keras.layers.MaxPooling2D(3, strides=2, padding="same", name="stem_pool")(x)
    for stage, (blocks, filters) in enumerate(STAGES):
        for block in range(blocks):
            strides = 2 if stage > 0 and block == 0 else 1
            x = ResNeXtBlock(
                filters,
                cardinality=CARDINALITY,
                kernel_size=3,
                strides=strides,
                name=f"stage_{stage + 1}_block_{block + 1}",
            )(x)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    outputs = keras.layers.Dense(num_classes, activation="softmax", name="classes")(x)
    model = ImageClassifier(inputs, outputs, name="resnext50")
    return compile_model(
        model,
        loss="categorical_crossentropy",
        learning_rate=learning_rate,
        num_classes=num_classes,
    )
