"""Hinton et al.'s small EM capsule network: the canonical EM sanity network."""

import keras
from keras import ops

from keras_parcaps._checks import check_positive_int, pose_side
from keras_parcaps.layers.em_class_caps import EMClassCaps
from keras_parcaps.layers.em_conv_caps import EMConvCaps
from keras_parcaps.layers.primary_caps import PrimaryCaps
from keras_parcaps.losses.spread_loss import SpreadLoss
from keras_parcaps.models.compiling import compile_model
from keras_parcaps.models.image_classifier import ImageClassifier


def build_em_capsnet(
    input_shape=(28, 28, 1),
    num_classes: int = 10,
    A: int = 32,
    B: int = 32,
    C: int = 32,
    D: int = 32,
    capsule_size: int = 16,
    routing_iterations: int = 3,
    coordinate_addition: bool = True,
    final_lambda: float = 0.01,
    learning_rate: float = 1e-3,
    margin: float = 0.2,
) -> keras.Model:
    """Builds and compiles Hinton et al.'s small matrix-capsule network.

    Conv 5x5 stride 2 with `A` ReLU channels; `PrimaryCaps(kind="matrix")`
    with `B` types (1x1); `EMConvCaps` with `C` types (K=3, stride 2);
    `EMConvCaps` with `D` types (K=3, stride 1); `EMClassCaps` with
    coordinate addition. All convolutions are `"valid"`: a 28x28 image gives
    12x12, 12x12, 5x5 and 3x3 grids. The model outputs the class
    activations `(batch, num_classes)`, the scores the spread loss acts on.
    With the defaults it has 318,964 weights: conv1 832; PrimaryCaps 17,952
    (pose and activation 1x1 convolutions with biases); each EMConvCaps
    9 x 32 x 32 transformations of 4x4 plus `beta_a`, `beta_u` (147,520);
    EMClassCaps 32 x 10 transformations plus betas (5,140). The
    transformations start as normal(0, 1/sqrt(P)) and the routing measures
    vote spread relative to the vote scale (see `kp.ops.em_routing`), so a
    fresh network is not saturated and trains from the first step.

    Train with `kp.callbacks.SpreadMarginSchedule` to ramp the margin.

    Args:
        input_shape: Image shape, channels last. Default `(28, 28, 1)`; at
            least 17x17 for the valid convolutions.
        num_classes: Number of classes. Default 10.
        A: Channels of the ReLU convolution. Default 32.
        B: Primary capsule types. Default 32.
        C: Types of the first convolutional capsule layer. Default 32.
        D: Types of the second convolutional capsule layer. Default 32.
        capsule_size: Pose entries `P * P` (9, 16, 25). Default 16.
        routing_iterations: EM iterations in every capsule layer. Default 3.
        coordinate_addition: Whether the class capsules add the scaled grid
            coordinates to their votes. Default `True`.
        final_lambda: Limit of the inverse-temperature schedule.
            Default 0.01.
        learning_rate: Nadam learning rate. Default 1e-3.
        margin: Initial spread-loss margin. Default 0.2.

    Returns:
        A functional `keras.Model` compiled with Nadam, `SpreadLoss`,
        and Acc and WAcc (`compile_model`).

    Example:

        >>> model = build_em_capsnet(A=8, B=8, C=8, D=8)
        >>> tuple(model.output.shape)
        (None, 10)

    Reference:
        - [Hinton et al., 2018](https://openreview.net/forum?id=HJWLfGWRb)
    """
    for name, value in (
        ("num_classes", num_classes),
        ("A", A),
        ("B", B),
        ("C", C),
        ("D", D),
    ):
        check_positive_int(name, value)
    pose_side(capsule_size)
    if len(input_shape) != 3 or min(input_shape[:2]) < 17:
        raise ValueError(
            "`input_shape` must be (height, width, channels) with height and "
            f"width at least 17. Received: input_shape={input_shape}"
        )
    routing = dict(routing_iterations=routing_iterations, final_lambda=final_lambda)
    inputs = keras.Input(shape=input_shape, name="images")
    x = keras.layers.Conv2D(A, 5, strides=2, activation="relu", name="conv1")(inputs)
    x = PrimaryCaps(B, capsule_size, kind="matrix", name="primary_caps")(x)
    x = EMConvCaps(C, kernel_size=3, strides=2, name="conv_caps1", **routing)(x)
    x = EMConvCaps(D, kernel_size=3, strides=1, name="conv_caps2", **routing)(x)
    x = EMClassCaps(
        num_classes,
        coordinate_addition=coordinate_addition,
        name="class_caps",
        **routing,
    )(x)
    scores = ops.take(x, x.shape[-1] - 1, axis=-1)
    model = ImageClassifier(inputs, scores, name="em_capsnet")
    return compile_model(
        model,
        loss=SpreadLoss(margin=margin),
        learning_rate=learning_rate,
        num_classes=num_classes,
    )
