"""`plot_explanation`: one page per image, what the capsules decided."""

from pathlib import Path

import numpy as np

from keras_parcaps.explain import _views

# Colours: the predicted class, the true class, everything else.
PREDICTED, TRUE, OTHER, WRONG = "#d95f02", "#1b9e77", "#9e9e9e", "#c62828"


def _show(ax, image, title, color="black"):
    ax.imshow(
        image.squeeze(), cmap="gray" if image.shape[-1] == 1 else None, vmin=0, vmax=1
    )
    ax.set_title(title, fontsize=9, color=color)
    ax.set_xticks([])
    ax.set_yticks([])


def plot_explanation(explanation, index: int, path, title=None) -> str:
    """Saves one page (PNG) explaining the decision on image `index`.

    The panels: the image, with its true and predicted class; the
    class-capsule lengths (or EM activations), the scores the decision is
    the longest of; each branch's share of the predicted class's capsule,
    with its capsule length and the class it alone would predict (capsule
    groups of a non-parallel network: Mid-Caps, or Primary-Cap types pooled
    over the grid); the final coupling heat map of the class routing layer,
    groups x classes; the coupling of each group to the predicted class
    over the routing iterations; where on the image the evidence for the
    predicted class lay (when a capsule layer sees a grid); and the eight
    dihedral orientations with their predictions (red where the class
    changes).

    Matplotlib is imported here, with the non-interactive Agg canvas of the
    figure itself: no global backend is set.

    Args:
        explanation: A `kp.explain.CapsuleExplanation`.
        index: Which image.
        path: Output PNG file.
        title: Page title; default `"image <index>"`.

    Returns:
        The path written, as a string.

    Example:

        >>> import pathlib, tempfile
        >>> import keras_parcaps as kp
        >>> model = kp.models.build_parallel_dr(
        ...     input_shape=(16, 16, 3), num_classes=3, n_branches=2)
        >>> images = np.random.default_rng(0).uniform(size=(1, 16, 16, 3))
        >>> explanation = kp.explain.explain_capsules(
        ...     model, images, orientations=False)
        >>> tmp = tempfile.TemporaryDirectory()
        >>> path = plot_explanation(explanation, 0, pathlib.Path(tmp.name) / "p.png")
        >>> pathlib.Path(path).stat().st_size > 10_000
        True
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    e = explanation
    names = e.class_names
    pred = int(e.predictions[index])
    label = None if e.labels is None else int(e.labels[index])
    group_names, share, coupling = _views.groups(e)

    fig = Figure(figsize=(15, 10.5))
    FigureCanvasAgg(fig)
    grid = fig.add_gridspec(3, 4, height_ratios=[1, 1, 0.55], hspace=0.45, wspace=0.45)

    ax = fig.add_subplot(grid[0, 0])
    title = f"predicted {names[pred]} ({e.scores[index, pred]:.2f})"
    if label is not None:
        title = f"true {names[label]}, " + title
    _show(ax, e.images[index], title, "black" if label in (None, pred) else WRONG)

    ax = fig.add_subplot(grid[0, 1])
    colors = [
        PREDICTED if c == pred else TRUE if c == label else OTHER
        for c in range(len(names))
    ]
    ax.barh(range(len(names)), e.scores[index], color=colors)
    ax.set_yticks(range(len(names)), names, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(0, max(1.0, float(e.scores[index].max())))
    ax.set_title("class capsules: length (score)", fontsize=9)

    ax = fig.add_subplot(grid[0, 2])
    values = share[index, :, pred]
    rows = list(group_names)
    if e.branches is not None:
        lengths = e.branches["length"][index]
        alone = e.branches["predictions"][index]
        rows = [
            f"{name}\n|u| {lengths[k]:.2f}, alone {names[alone[k]]}"
            for k, name in enumerate(group_names)
        ]
    ax.barh(range(len(rows)), values, color=PREDICTED)
    ax.axvline(0, color="black", linewidth=0.6)
    ax.set_yticks(range(len(rows)), rows, fontsize=7)
    if e.branches is not None:
        for tick, k in zip(ax.get_yticklabels(), alone, strict=True):
            tick.set_color("black" if k == pred else WRONG)
    ax.invert_yaxis()
    ax.set_title(f"share of the {names[pred]} capsule", fontsize=9)

    ax = fig.add_subplot(grid[0, 3])
    image = ax.imshow(coupling[index], cmap="viridis", vmin=0, aspect="auto")
    ax.set_xticks(range(len(names)), names, rotation=90, fontsize=7)
    ax.set_yticks(range(len(group_names)), group_names, fontsize=7)
    ax.set_title(f"coupling, {e.class_routing['name']}", fontsize=9)
    fig.colorbar(image, ax=ax, fraction=0.05)

    ax = fig.add_subplot(grid[1, 0:2])
    iterations = _views.iteration_coupling(e, index)
    steps = np.arange(1, len(iterations) + 1)
    for k, name in enumerate(group_names):
        ax.plot(steps, iterations[:, k], marker="o", label=name)
    ax.axhline(1 / len(names), color=OTHER, linestyle="--", linewidth=0.8)
    ax.set_xticks(steps)
    ax.set_xlabel("routing iteration")
    ax.set_ylabel(f"coupling to {names[pred]}")
    ax.set_title(
        "routing by agreement, iteration by iteration (dashed: uniform start)",
        fontsize=9,
    )
    if len(group_names) <= 16:
        ax.legend(fontsize=7, ncol=2)

    ax = fig.add_subplot(grid[1, 2:4])
    evidence = _views.evidence_map(e, index)
    if evidence is None:
        ax.axis("off")
        ax.text(
            0.5,
            0.5,
            "no capsule layer on a grid:\nno evidence map",
            ha="center",
            va="center",
            fontsize=9,
        )
    else:
        height, width = e.images.shape[1:3]
        _show(
            ax,
            e.images[index],
            f"where the {names[pred]} evidence lay "
            "(capsule grid, red: for, blue: against)",
        )
        # Red for, blue against; the more evidence, the more opaque.
        strength = np.abs(evidence) / (float(np.abs(evidence).max()) or 1.0)
        overlay = np.zeros((*evidence.shape, 4))
        overlay[..., 0] = evidence > 0
        overlay[..., 2] = evidence < 0
        overlay[..., 3] = 0.6 * strength
        ax.imshow(
            overlay,
            extent=(-0.5, width - 0.5, height - 0.5, -0.5),
            interpolation="nearest",
        )

    views = e.orientation_predictions
    strip = grid[2, :].subgridspec(1, 8, wspace=0.1)
    if views is None:
        ax = fig.add_subplot(strip[0, :])
        ax.axis("off")
        ax.text(0.5, 0.5, "orientations not computed", ha="center")
    else:
        from keras_parcaps.data.augment import dihedral_orientations

        oriented = dihedral_orientations(e.images[index : index + 1])
        for k in range(8):
            ax = fig.add_subplot(strip[0, k])
            cls = int(views[k, index])
            _show(
                ax,
                oriented[k][0],
                names[cls],
                "black" if cls == views[0, index] else WRONG,
            )
        agree = bool(np.all(views[:, index] == views[0, index]))
        fig.text(
            0.5,
            0.05,
            "8 orientations: the class "
            + ("is the same in all" if agree else "changes (red)"),
            ha="center",
            fontsize=9,
        )
    fig.suptitle(title or f"image {index}", fontsize=11)
    fig.savefig(path, dpi=90)
    return str(Path(path))
