"""`plot_pose_perturbation`: Sabour et al.'s Fig. 4 for one image."""

from pathlib import Path

import numpy as np


def plot_pose_perturbation(explanation, index: int, path) -> str:
    """Saves the pose-perturbation grid (PNG) of image `index`.

    One row per dimension of the winning class capsule, one column per
    value added to it (Sabour et al. 2017, Fig. 4); the first column shows
    the image itself for reference. A row whose reconstructions change
    smoothly shows a pose parameter the capsule learned.

    Args:
        explanation: A `kp.explain.CapsuleExplanation` of a model with a
            reconstruction decoder (its `pose_perturbation` is set).
        index: Which image.
        path: Output PNG file.

    Returns:
        The path written, as a string.

    Example:

        >>> import pathlib, tempfile
        >>> import keras_parcaps as kp
        >>> model = kp.models.SabourCapsNet(input_shape=(28, 28, 1), num_classes=3)
        >>> images = np.random.default_rng(0).uniform(size=(1, 28, 28, 1))
        >>> explanation = kp.explain.explain_capsules(
        ...     model, images, orientations=False)
        >>> tmp = tempfile.TemporaryDirectory()
        >>> path = plot_pose_perturbation(
        ...     explanation, 0, pathlib.Path(tmp.name) / "pose.png")
        >>> pathlib.Path(path).stat().st_size > 10_000
        True
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    grid = explanation.pose_perturbation
    if grid is None:
        raise ValueError(
            "`explanation` has no pose perturbation: its model has no "
            "reconstruction decoder."
        )
    grid = np.clip(grid[index], 0, 1)
    dims, steps, height, width, channels = grid.shape
    # One mosaic, the image itself in the first column, a 1-pixel white gap
    # between tiles: a single image to draw, however many dimensions.
    tiles = np.ones((dims, steps + 1, height + 1, width + 1, channels), "float32")
    tiles[:, 0, :height, :width] = np.clip(explanation.images[index], 0, 1)
    tiles[:, 1:, :height, :width] = grid
    mosaic = tiles.transpose(0, 2, 1, 3, 4).reshape(
        dims * (height + 1), (steps + 1) * (width + 1), channels
    )
    values = explanation.pose_values
    fig = Figure(figsize=(0.6 * (steps + 1) + 1.2, 0.6 * dims + 1.0))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.imshow(
        mosaic.squeeze(-1) if channels == 1 else mosaic,
        cmap="gray" if channels == 1 else None,
        vmin=0,
        vmax=1,
    )
    ax.set_xticks(
        (np.arange(steps + 1) + 0.5) * (width + 1),
        ["image"] + [f"{v:+.2f}" for v in values],
        fontsize=7,
        rotation=90,
    )
    ax.set_yticks(
        (np.arange(dims) + 0.5) * (height + 1),
        [f"dim {d}" for d in range(dims)],
        fontsize=7,
    )
    ax.tick_params(length=0)
    ax.xaxis.tick_top()
    pred = int(explanation.predictions[index])
    fig.suptitle(
        f"image {index}: capsule {explanation.class_names[pred]}, one "
        "dimension perturbed per row",
        fontsize=9,
    )
    fig.savefig(path, dpi=100, bbox_inches="tight")
    return str(Path(path))
