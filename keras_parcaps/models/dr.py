"""The paper's dynamic-routing capsule networks, parallel or not."""

import keras

from keras_parcaps._checks import check_choice, check_positive_int
from keras_parcaps.layers.capsule_length import CapsuleLength
from keras_parcaps.layers.dr_caps import DRCaps
from keras_parcaps.layers.parallel_branch import ParallelBranch
from keras_parcaps.layers.primary_caps import PrimaryCaps
from keras_parcaps.losses.margin_loss import MarginLoss
from keras_parcaps.models.stem import (
    BACKBONES,
    DOWNSAMPLE,
    STEM_STRIDE,
    backbone_features,
    block,
    check_capsule_options,
    check_input_shape,
    compiled_network,
    plain_backbone,
    stem,
)

# Primary-Caps: two capsules of 256 values per grid point.
PRIMARY_CAPS = 2
PRIMARY_LENGTH = 256
# The stem, then the branch block's stride.
MIN_SIZE = STEM_STRIDE * 2


def _block(backbone):
    return block([256, 256, 512], 64, "block", DOWNSAMPLE[backbone])


def _on_grid(caps, share_weights: bool) -> bool:
    """`share_weights` for a layer reading `caps`: only the Primary-Caps grid
    `(batch, height, width, types, dim)` has positions to share."""
    return share_weights and len(caps.shape) == 5


def _class_scores(caps, num_classes, capsule_size, routing_iterations, share_weights):
    caps = DRCaps(
        num_classes,
        capsule_size,
        routing_iterations=routing_iterations,
        share_weights=_on_grid(caps, share_weights),
        name="class_caps",
    )(caps)
    # The class scores are the lengths of the Class-Caps.
    return CapsuleLength(name="length")(caps)


def dr_branch(
    features_shape,
    capsule_size: int = 16,
    capsule_layers: int = 3,
    primary_length: int = PRIMARY_LENGTH,
    share_weights: bool = False,
    backbone: str = "paper",
) -> keras.Model:
    """One branch of the paper's parallel DR-CapsNet, as a model.

    A `ResNeXtBlock` [256, 256, 512] of cardinality 64 with stride 2 (none
    with `backbone="plain"`; pooling first with `backbone="pooled"`),
    Primary-Caps of two `primary_length`-long capsules per grid point, then
    one `capsule_size`-long Mid-Cap per Mid-Cap layer (none with 2 capsule
    layers). `build_parallel_dr` runs `n_branches` copies of it on the
    stem's features (`ParallelBranch`).

    Args:
        features_shape: Shape of the stem's features, `(height, width,
            channels)`; 50x50x256 for a 400x400 image.
        capsule_size: Length of the Mid-Caps. Default 16.
        capsule_layers: Capsule layers of the network, 2, 3 or 4.
            Default 3.
        primary_length: Length of the Primary-Caps. Default 256.
        share_weights: Whether the first Mid-Cap shares its transformation
            over the grid positions of each Primary-Cap type (see
            `build_dr`). Default `False`, the paper's.
        backbone: `"paper"` or `"pooled"` (the branch starts with its
            block) or `"plain"` (see `build_dr`). Default `"paper"`.

    Returns:
        A `keras.Model` named `"branch"`, from features to capsules.

    Example:

        >>> branch = dr_branch((8, 8, 256))
        >>> tuple(branch.output.shape)  # one 16-long Mid-Cap
        (None, 1, 16)
    """
    check_choice("backbone", backbone, BACKBONES)
    features = keras.Input(tuple(features_shape), name="features")
    # The plain backbone reaches the Primary-Caps grid by itself.
    x = features if backbone == "plain" else _block(backbone)(features)
    caps = PrimaryCaps(PRIMARY_CAPS, primary_length, name="primary_caps")(x)
    for i in range(capsule_layers - 2):
        caps = DRCaps(
            1,
            capsule_size,
            share_weights=_on_grid(caps, share_weights),
            name=f"mid_cap_{i + 1}",
        )(caps)
    return keras.Model(features, caps, name="branch")


def build_dr(
    input_shape=(400, 400, 3),
    num_classes: int = 15,
    capsule_size: int = 16,
    capsule_layers: int = 3,
    n_mid_caps: int = 2,
    routing_iterations: int = 3,
    learning_rate=1e-3,
    share_weights: bool = False,
    backbone: str = "paper",
) -> keras.Model:
    """Builds and compiles the paper's non-parallel DR-CapsNet.

    The common stem (`keras_parcaps.models.stem.stem`), a `ResNeXtBlock`
    [256, 256, 512] of cardinality 64 with stride 2 (50x50 -> 25x25 for a
    400x400 image), Primary-Caps of two 256-long capsules per grid point
    (a 1x1 convolution: 1,250 capsules at 400x400), then `DRCaps` with
    unshared weights: with 2 capsule layers straight to the Class-Caps,
    with 3 through `n_mid_caps` Mid-Caps, with 4 through two layers of
    `n_mid_caps` Mid-Caps. Mid- and Class-Caps are `capsule_size` long;
    class scores are the Class-Caps lengths, trained with `MarginLoss`.

    Parameters at 400x400, 15 classes, `capsule_size=16` (Table 1 of the
    paper): the unshared Primary-to-next transformations dominate, 1,250 x
    256 x 16 = 5.12M per Mid-Cap. 2 layers: 1,250 x 15 x 16 x 256 = 76.8M
    plus 0.8M of CNN, 77.6M against the paper's 77.3M (+0.4%). 3 layers
    with 2 Mid-Caps: 10.24M plus 0.8M, 11.1M against 11.3M (-2%). Each
    extra Mid-Cap adds 5.1M, the paper's "5M".

    `share_weights=True` departs from the paper: the capsule layer that
    reads the Primary-Caps grid (the first Mid-Caps, or the Class-Caps
    with 2 layers) keeps one transformation per Primary-Cap type instead
    of one per grid position (`DRCaps(share_weights=True)`), so a cell
    seen rotated or shifted meets the same weights in its new place, and
    the 1,250 x 256 x 16 matrices per Mid-Cap become 2 x 256 x 16. On real
    cells at 64x64 (docs/concepts.md, "Position-specific weights") it
    raised the 8-orientation agreement (Agr) of the 3-layer parallel
    network by 10-17 points (mean 43.5% -> 56.0%) and Acc by 4-6 (68.5%
    -> 73.7%) after 1,000 iterations, in three runs; Table 1's parameter
    counts then no longer hold.

    `backbone="plain"` departs from the paper too: a plain CNN
    (`keras_parcaps.models.stem.plain_backbone`: four stages of 3x3
    convolution, batch normalization, ReLU and max pooling, 0.39M
    parameters) replaces the stem and the block, and gives the Primary-Caps
    the same grid. The capsule layers are the paper's. On real cells at
    64x64 the 3-layer parallel network on the plain backbone reached the
    Acc and Agr of a plain CNN, the paper's stem 15-20 points less, with or
    without capsules after it (docs/concepts.md, "The stem, not the
    capsules").

    `backbone="pooled"` keeps every layer and weight of the paper's network
    (Table 1's counts hold) and changes only where it samples: the stem's
    7x7 convolution runs at stride 1 and is max-pooled 2x2, and every block
    max-pools its input and runs at stride 1 (`ResNeXtBlock(
    downsample="pool")`), a grid that 90-degree rotations of an even-sized
    image map onto itself. Not in the paper. On real cells at 64x64 the
    3-layer parallel network gained 10 points of Acc and 15 of Agr over the
    paper's sampling (two folds, docs/concepts.md, "The paper's weights,
    pooled"), and stayed below the plain backbone.

    Args:
        input_shape: Image shape, channels last, at least 16x16. Default
            `(400, 400, 3)`.
        num_classes: Number of classes. Default 15.
        capsule_size: Length of the Mid- and Class-Caps: 9, 16 or 25.
            Default 16.
        capsule_layers: Capsule layers, 2, 3 or 4. Default 3.
        n_mid_caps: Mid-Caps per Mid-Cap layer (3 and 4 layers). Default 2.
        routing_iterations: Dynamic-routing iterations. Default 3.
        learning_rate: Nadam learning rate, a float or a schedule (see
            `compile_model`). Default 1e-3.
        share_weights: Whether the capsule layer after the Primary-Caps
            shares its transformation over grid positions (see above).
            Default `False`, the paper's.
        backbone: What comes before the Primary-Caps: `"paper"` (the stem
            and the ResNeXt block), `"pooled"` (the same layers, pooling)
            or `"plain"` (see above). Default `"paper"`.

    Returns:
        A `keras.Model` from images to class scores, compiled with Nadam,
        `MarginLoss`, and Acc and WAcc (`compile_model`).

    Example:

        >>> model = build_dr(input_shape=(64, 64, 3), capsule_layers=3)
        >>> tuple(model.output.shape)
        (None, 15)

    Reference:
        - [Vigueras-Guillen et al., 2021](https://arxiv.org/abs/2108.02644)
    """
    check_capsule_options(
        num_classes, capsule_size, capsule_layers, routing_iterations, backbone
    )
    check_positive_int("n_mid_caps", n_mid_caps)
    input_shape = check_input_shape(input_shape, MIN_SIZE)
    inputs = keras.Input(input_shape, name="image")
    if backbone == "plain":
        x = plain_backbone(inputs)
    else:
        # The block is made before the stem, as it always was, so that a
        # seed draws the paper network's weights as before.
        x = _block(backbone)(stem(inputs, DOWNSAMPLE[backbone]))
    caps = PrimaryCaps(PRIMARY_CAPS, PRIMARY_LENGTH, name="primary_caps")(x)
    for i in range(capsule_layers - 2):
        caps = DRCaps(
            n_mid_caps,
            capsule_size,
            routing_iterations=routing_iterations,
            share_weights=_on_grid(caps, share_weights),
            name=f"mid_caps_{i + 1}",
        )(caps)
    scores = _class_scores(
        caps, num_classes, capsule_size, routing_iterations, share_weights
    )
    name = f"dr_capsnet_{capsule_layers}l"
    return compiled_network(inputs, scores, name, MarginLoss(), learning_rate)


def build_parallel_dr(
    input_shape=(400, 400, 3),
    num_classes: int = 15,
    capsule_size: int = 16,
    capsule_layers: int = 3,
    n_branches: int = 12,
    routing_iterations: int = 3,
    learning_rate=1e-3,
    share_weights: bool = False,
    backbone: str = "paper",
) -> keras.Model:
    """Builds and compiles the paper's parallel DR-CapsNet.

    The common stem, then `n_branches` independent branches
    (`ParallelBranch`), each a `ResNeXtBlock` [256, 256, 512] of
    cardinality 64 with stride 2 and Primary-Caps of two capsules per grid
    point. With 3 capsule layers each branch ends in one `capsule_size`-long
    Mid-Cap (no routing: the coupling of a single Mid-Cap is 1), with 4 in
    two single Mid-Caps one after the other; the branches' Mid-Caps are
    concatenated and routed to the Class-Caps. With 2 capsule layers the
    branches' Primary-Caps are concatenated and routed to the Class-Caps,
    and the 256 values of a Primary-Cap are divided among the branches
    (`256 // n_branches` each).

    Parameters at 400x400, 15 classes, `capsule_size=16` (Table 1 of the
    paper): a 3-layer branch has 1,250 x 256 x 16 = 5.12M Mid-Cap weights,
    0.26M of Primary-Caps and 0.38M of block, 5.8M (the paper's "about 6M
    per branch"); 12 branches and the stem give 69.4M against the paper's
    73.2M (-5.2%). 2 layers, 4 branches of 64-long Primary-Caps: 5,000 x 15 x
    16 x 64 = 76.8M Class-Caps weights plus 1.9M of CNN, 78.75M against
    77.6M (+1.5%).

    Args:
        input_shape: Image shape, channels last, at least 16x16. Default
            `(400, 400, 3)`.
        num_classes: Number of classes. Default 15.
        capsule_size: Length of the Mid- and Class-Caps: 9, 16 or 25.
            Default 16.
        capsule_layers: Capsule layers, 2, 3 or 4. Default 3.
        n_branches: Number of branches, at least 1. Default 12.
        routing_iterations: Dynamic-routing iterations. Default 3.
        learning_rate: Nadam learning rate, a float or a schedule (see
            `compile_model`). Default 1e-3.
        share_weights: Whether the capsule layer after the Primary-Caps
            (each branch's first Mid-Cap, or the Class-Caps with 2 layers)
            shares its transformation over grid positions, a departure from
            the paper (see `build_dr`). Default `False`, the paper's.
        backbone: `"paper"` (the stem, then a ResNeXt block in each
            branch), `"pooled"` (the same layers, every halving by
            max-pooling) or `"plain"` (a plain CNN shared by the branches,
            which start at their Primary-Caps); the last two depart from
            the paper (see `build_dr`). Default `"paper"`.

    Returns:
        A `keras.Model` from images to class scores, compiled with Nadam,
        `MarginLoss`, and Acc and WAcc (`compile_model`).

    Example:

        >>> model = build_parallel_dr(input_shape=(64, 64, 3), n_branches=2)
        >>> tuple(model.output.shape)
        (None, 15)

    Reference:
        - [Vigueras-Guillen et al., 2021](https://arxiv.org/abs/2108.02644)
    """
    check_capsule_options(
        num_classes, capsule_size, capsule_layers, routing_iterations, backbone
    )
    check_positive_int("n_branches", n_branches)
    input_shape = check_input_shape(input_shape, MIN_SIZE)
    if capsule_layers == 2 and n_branches > PRIMARY_LENGTH:
        raise ValueError(
            f"`n_branches` must be at most {PRIMARY_LENGTH} with 2 capsule layers "
            f"(the Primary-Cap length is divided among branches). "
            f"Received: n_branches={n_branches}"
        )
    inputs = keras.Input(input_shape, name="image")
    features = backbone_features(inputs, backbone)
    primary_length = PRIMARY_LENGTH
    if capsule_layers == 2:
        primary_length = PRIMARY_LENGTH // n_branches
    branch = dr_branch(
        features.shape[1:],
        capsule_size,
        capsule_layers,
        primary_length,
        share_weights=share_weights,
        backbone=backbone,
    )
    caps = ParallelBranch(branch, n_branches, name="branches")(features)
    scores = _class_scores(
        caps, num_classes, capsule_size, routing_iterations, share_weights
    )
    name = f"parallel_dr_capsnet_{capsule_layers}l_{n_branches}b"
    return compiled_network(inputs, scores, name, MarginLoss(), learning_rate)
