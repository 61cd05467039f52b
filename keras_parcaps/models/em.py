"""The paper's EM-routing capsule networks, parallel or not."""

import keras
from keras import ops

from keras_parcaps._checks import check_positive_int
from keras_parcaps.layers.em_class_caps import EMClassCaps
from keras_parcaps.layers.em_conv_caps import EMConvCaps
from keras_parcaps.layers.parallel_branch import ParallelBranch
from keras_parcaps.layers.primary_caps import PrimaryCaps
from keras_parcaps.losses.spread_loss import SpreadLoss
from keras_parcaps.models.stem import (
    DOWNSAMPLE,
    STEM_STRIDE,
    backbone_features,
    block,
    check_capsule_options,
    check_input_shape,
    compiled_network,
)

PRIMARY_CAPS = 32
# Mid-Caps: a 3x3 window; the first Mid-Cap layer carries a stride of 2.
MID_KERNEL = 3


def min_image_size(capsule_layers: int) -> int:
    """The smallest image side the EM networks allow with `capsule_layers`."""
    # The stem and the branch block stride 16 times; with Mid-Caps the grid
    # must hold a 3x3 window, without them a second block strides again.
    if capsule_layers == 2:
        return STEM_STRIDE * 4
    return STEM_STRIDE * 2 * (MID_KERNEL - 1) + 1


def _blocks(x, capsule_layers, backbone):
    """The paper's blocks after the stem; the plain backbone has none."""
    if backbone == "plain":
        # The plain backbone reaches the Primary-Caps grid by itself.
        return x
    downsample = DOWNSAMPLE[backbone]
    x = block([256, 256, 512], 64, "block", downsample)(x)
    if capsule_layers == 2:
        # No Mid-Caps to stride: the last CNN block is duplicated instead.
        x = block([256, 256, 512], 64, "block_2", downsample)(x)
    return x


def _primary_caps(x, num_capsules, capsule_size):
    return PrimaryCaps(
        num_capsules,
        capsule_size,
        kernel_size=3,
        padding="same",
        kind="matrix",
        name="primary_caps",
    )(x)


def _mid_caps(caps, num_capsules, capsule_layers, routing):
    for i in range(capsule_layers - 2):
        first = i == 0
        caps = EMConvCaps(
            num_capsules,
            kernel_size=MID_KERNEL,
            strides=2 if first else 1,
            padding="valid" if first else "same",
            name=f"mid_caps_{i + 1}",
            **routing,
        )(caps)
    return caps


def _class_scores(caps, num_classes, routing):
    caps = EMClassCaps(num_classes, name="class_caps", **routing)(caps)
    # The class scores are the activations, the last entry of each capsule.
    return ops.take(caps, caps.shape[-1] - 1, axis=-1)


def build_em(
    input_shape=(400, 400, 3),
    num_classes: int = 15,
    capsule_size: int = 16,
    capsule_layers: int = 3,
    n_mid_caps: int = 2,
    routing_iterations: int = 3,
    learning_rate=1e-3,
    margin: float = 0.2,
    backbone: str = "paper",
) -> keras.Model:
    """Builds and compiles the paper's non-parallel EM-CapsNet.

    The common stem (`keras_parcaps.models.stem.stem`), a `ResNeXtBlock`
    [256, 256, 512] of cardinality 64 with stride 2 (400x400 -> 25x25), and
    32 matrix Primary-Caps from a 3x3 convolution (stride 1: the paper
    advises against a stride in the Primary-Caps). With 3 capsule layers,
    `n_mid_caps` convolutional Mid-Caps (`EMConvCaps`, 3x3 window, stride
    2); with 4, a second layer of them (3x3, stride 1, `"same"` padding);
    with 2 no Mid-Caps, and the block is duplicated to stride once more.
    Class-Caps are `EMClassCaps` (1x1 window, weights shared over positions,
    no coordinate addition). All poses are `capsule_size` = P x P. The class
    scores are the Class-Caps activations, trained with `SpreadLoss`; ramp
    its margin from 0.2 to 0.9 with `kp.callbacks.SpreadMarginSchedule`
    (passed to `fit`).

    Not in the paper: EM routing gives every variance a prior worth one
    vote (`kp.ops.em_routing`, `prior_votes`). With 3 capsule layers and
    images up to 64x64 each Mid-Cap grid is 1x1, and without the prior the
    Class-Caps saturate from the start: the classes handed a Mid-Cap at 1,
    the others at 0.5 (docs/concepts.md).

    Parameters at 400x400, 15 classes, 4x4 poses (Table 1 of the paper):
    almost all are the CNN's. The 3x3 Primary-Caps convolution (512 -> 32 x
    17 channels) has 2.51M, the block 0.38M, the stem 0.16M; the capsule
    transformations are a few thousand (9 x 32 x 16 per Mid-Cap: the
    paper's "0.01M per Mid-Cap"). 3 layers, 2 Mid-Caps: 3.06M against the
    paper's 3.1M. 2 layers: the duplicated block adds 0.57M: 3.63M against
    3.6M.

    Args:
        input_shape: Image shape, channels last; at least 33x33 (32x32 with
            2 capsule layers). Default `(400, 400, 3)`.
        num_classes: Number of classes. Default 15.
        capsule_size: Pose entries `P * P` of every capsule: 9, 16 or 25.
            Default 16.
        capsule_layers: Capsule layers, 2, 3 or 4. Default 3.
        n_mid_caps: Mid-Cap types per Mid-Cap layer (3 and 4 layers).
            Default 2.
        routing_iterations: EM-routing iterations. Default 3.
        learning_rate: Nadam learning rate, a float or a schedule (see
            `compile_model`). Default 1e-3.
        margin: Initial margin of the spread loss. Default 0.2.
        backbone: What comes before the Primary-Caps: `"paper"` (the stem
            and the ResNeXt block(s)), `"pooled"` (the same layers and
            weights, every halving by max-pooling; see `build_dr`) or
            `"plain"`, a plain CNN instead of them
            (`keras_parcaps.models.stem.plain_backbone`; see
            `build_parallel_em`). Default `"paper"`.

    Returns:
        A `keras.Model` from images to class activations, compiled with
        Nadam, `SpreadLoss`, and Acc and WAcc (`compile_model`).

    Example:

        >>> model = build_em(input_shape=(48, 48, 3))
        >>> tuple(model.output.shape)
        (None, 15)

    Reference:
        - [Vigueras-Guillen et al., 2021](https://arxiv.org/abs/2108.02644)
        - [Hinton et al., 2018](https://openreview.net/forum?id=HJWLfGWRb)
    """
    check_capsule_options(
        num_classes, capsule_size, capsule_layers, routing_iterations, backbone
    )
    check_positive_int("n_mid_caps", n_mid_caps)
    input_shape = check_input_shape(input_shape, min_image_size(capsule_layers))
    routing = dict(routing_iterations=routing_iterations)
    inputs = keras.Input(input_shape, name="image")
    x = _blocks(backbone_features(inputs, backbone), capsule_layers, backbone)
    caps = _primary_caps(x, PRIMARY_CAPS, capsule_size)
    caps = _mid_caps(caps, n_mid_caps, capsule_layers, routing)
    scores = _class_scores(caps, num_classes, routing)
    name = f"em_capsnet_{capsule_layers}l"
    return compiled_network(
        inputs, scores, name, SpreadLoss(margin=margin), learning_rate
    )


def build_parallel_em(
    input_shape=(400, 400, 3),
    num_classes: int = 15,
    capsule_size: int = 16,
    capsule_layers: int = 3,
    n_branches: int = 10,
    routing_iterations: int = 3,
    learning_rate=1e-3,
    margin: float = 0.2,
    backbone: str = "paper",
) -> keras.Model:
    """Builds and compiles the paper's parallel EM-CapsNet.

    The common stem, then `n_branches` independent branches
    (`ParallelBranch`), each a `ResNeXtBlock` [256, 256, 512] of
    cardinality 64 with stride 2 and 32 matrix Primary-Caps (3x3
    convolution, stride 1). With 3 capsule layers each branch ends in one
    convolutional Mid-Cap type (`EMConvCaps`, 3x3 window, stride 2; with a
    single type every routing assignment is 1), with 4 in a second one
    (3x3, stride 1, `"same"` padding); the branches' Mid-Caps are
    concatenated on the capsule axis and routed to the Class-Caps
    (`EMClassCaps`, no coordinate addition). With 2 capsule layers the 32
    Primary-Caps are divided among the branches (`32 // n_branches` each),
    each branch's block is duplicated to stride once more, and the
    branches' Primary-Caps are routed to the Class-Caps. Trained with
    `SpreadLoss`; ramp its margin with `kp.callbacks.SpreadMarginSchedule`.

    Not in the paper: EM routing gives every variance a prior worth one
    vote (`kp.ops.em_routing`, `prior_votes`). With 3 capsule layers and
    images up to 64x64 each branch ends in one Mid-Cap, and without the
    prior the Class-Caps saturate from the start: the classes handed a
    Mid-Cap at 1, the others at 0.5 (docs/concepts.md).

    Parameters at 400x400, 15 classes, 4x4 poses (Table 1 of the paper): a
    3-layer branch has 2.89M (Primary-Caps 2.51M, block 0.38M; the paper's
    "3M per branch"), so 10 branches and the 0.16M stem give 29.1M against
    the paper's 30.1M. 2 layers, 2 branches of 16 Primary-Caps: 2 x (0.38M +
    0.57M + 1.25M) + 0.16M = 4.60M against 4.6M.

    `backbone="plain"` departs from the paper: a plain CNN
    (`keras_parcaps.models.stem.plain_backbone`, 0.39M parameters) replaces
    the stem and every block, shared by the branches, which start at their
    Primary-Caps; its grid is 1/16 of the image with any number of capsule
    layers (the duplicated block of 2 layers is dropped too). On real cells
    at 64x64, after 1,000 iterations on two folds, the 3-layer `build_em`
    on it had Agr 75.1 and 66.2% against 60.9 and 50.2% on the paper's
    stem, but Acc 83.3 and 65.9% against 73.8 and 73.5%: mixed, unlike the
    DR networks (docs/concepts.md, "The stem, not the capsules").

    Args:
        input_shape: Image shape, channels last; at least 33x33 (32x32 with
            2 capsule layers). Default `(400, 400, 3)`.
        num_classes: Number of classes. Default 15.
        capsule_size: Pose entries `P * P` of every capsule: 9, 16 or 25.
            Default 16.
        capsule_layers: Capsule layers, 2, 3 or 4. Default 3.
        n_branches: Number of branches, at least 1 (at most 32 with 2
            capsule layers). Default 10.
        routing_iterations: EM-routing iterations. Default 3.
        learning_rate: Nadam learning rate, a float or a schedule (see
            `compile_model`). Default 1e-3.
        margin: Initial margin of the spread loss. Default 0.2.
        backbone: What comes before the Primary-Caps: `"paper"` (the stem
            and the ResNeXt block(s)), `"pooled"` (the same layers and
            weights, every halving by max-pooling; see `build_dr`) or
            `"plain"`, a plain CNN instead of them
            (`keras_parcaps.models.stem.plain_backbone`; see above).
            Default `"paper"`.

    Returns:
        A `keras.Model` from images to class activations, compiled with
        Nadam, `SpreadLoss`, and Acc and WAcc (`compile_model`).

    Example:

        >>> model = build_parallel_em(input_shape=(48, 48, 3), n_branches=2)
        >>> tuple(model.output.shape)
        (None, 15)

    Reference:
        - [Vigueras-Guillen et al., 2021](https://arxiv.org/abs/2108.02644)
        - [Hinton et al., 2018](https://openreview.net/forum?id=HJWLfGWRb)
    """
    check_capsule_options(
        num_classes, capsule_size, capsule_layers, routing_iterations, backbone
    )
    check_positive_int("n_branches", n_branches)
    if capsule_layers == 2 and n_branches > PRIMARY_CAPS:
        raise ValueError(
            f"`n_branches` must be at most {PRIMARY_CAPS} with 2 capsule layers "
            "(the Primary-Caps are divided among branches). "
            f"Received: n_branches={n_branches}"
        )
    input_shape = check_input_shape(input_shape, min_image_size(capsule_layers))
    routing = dict(routing_iterations=routing_iterations)
    inputs = keras.Input(input_shape, name="image")
    features = backbone_features(inputs, backbone)

    branch_inputs = keras.Input(tuple(features.shape[1:]), name="features")
    x = _blocks(branch_inputs, capsule_layers, backbone)
    primary = PRIMARY_CAPS // n_branches if capsule_layers == 2 else PRIMARY_CAPS
    caps = _primary_caps(x, primary, capsule_size)
    caps = _mid_caps(caps, 1, capsule_layers, routing)
    branch = keras.Model(branch_inputs, caps, name="branch")

    caps = ParallelBranch(branch, n_branches, name="branches")(features)
    scores = _class_scores(caps, num_classes, routing)
    name = f"parallel_em_capsnet_{capsule_layers}l_{n_branches}b"
    return compiled_network(
        inputs, scores, name, SpreadLoss(margin=margin), learning_rate
    )
