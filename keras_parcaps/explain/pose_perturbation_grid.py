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
    grid = grid[index]
    dims, steps = grid.shape[:2]
    values = explanation.pose_values
    gray = grid.shape[-1] == 1
    fig = Figure(figsize=(0.8 * (steps + 1) + 0.8, 0.8 * dims + 0.8))
    FigureCanvasAgg(fig)
    axes = fig.subplots(dims, steps + 1, squeeze=False)
    for d in range(dims):
        for s in range(steps + 1):
            ax = axes[d, s]
            image = explanation.images[index] if s == 0 else grid[d, s - 1]
            ax.imshow(
                np.clip(image.squeeze(), 0, 1),
                cmap="gray" if gray else None,
                vmin=0,
                vmax=1,
            )
            ax.set_xticks([])
            ax.set_yticks([])
            if d == 0:
                ax.set_title("image" if s == 0 else f"{values[s - 1]:+.2f}", fontsize=7)
            if s == 0:
                ax.set_ylabel(f"dim {d}", fontsize=7)
    pred = int(explanation.predictions[index])
    fig.suptitle(
        f"image {index}: capsule {explanation.class_names[pred]}, one "
        "dimension perturbed per row",
        fontsize=9,
    )
    fig.savefig(path, dpi=80)
    return str(Path(path))
