"""`plot_explanation_summary`: what the capsules decided over a data set."""

from pathlib import Path

import numpy as np

from keras_parcaps.explain import _views


def plot_explanation_summary(explanation, path) -> str:
    """Saves a one-page dataset-level summary (PNG) of a `CapsuleExplanation`.

    The panels: the mean share of each branch (or capsule group) in the
    predicted class's capsule, per predicted class; how often each branch
    alone predicts the network's class, and how often two branches alone
    agree with each other (parallel networks); the mean class-capsule
    lengths per predicted class (how far the winner stands out); and per
    predicted class, the share of images whose class is the same in all
    eight orientations (the class-wise Agr), with the number of images.

    Args:
        explanation: A `kp.explain.CapsuleExplanation` of several images.
        path: Output PNG file.

    Returns:
        The path written, as a string.

    Example:

        >>> import pathlib, tempfile
        >>> import keras_parcaps as kp
        >>> model = kp.models.build_parallel_dr(
        ...     input_shape=(16, 16, 3), num_classes=3, n_branches=2)
        >>> images = np.random.default_rng(0).uniform(size=(4, 16, 16, 3))
        >>> explanation = kp.explain.explain_capsules(
        ...     model, images, orientations=False)
        >>> tmp = tempfile.TemporaryDirectory()
        >>> path = pathlib.Path(tmp.name) / "summary.png"
        >>> path = plot_explanation_summary(explanation, path)
        >>> pathlib.Path(path).stat().st_size > 10_000
        True
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    e = explanation
    names = e.class_names
    n, num_classes = e.scores.shape
    preds = e.predictions
    counts = np.bincount(preds, minlength=num_classes)
    group_names, share, _ = _views.groups(e)
    own = share[np.arange(n), :, preds]
    by_class = np.full((num_classes, len(group_names)), np.nan)
    mean_scores = np.full((num_classes, num_classes), np.nan)
    for c in range(num_classes):
        if counts[c]:
            by_class[c] = own[preds == c].mean(0)
            mean_scores[c] = e.scores[preds == c].mean(0)
    rows = [f"{name} ({count})" for name, count in zip(names, counts, strict=True)]

    fig = Figure(figsize=(15, 10))
    FigureCanvasAgg(fig)
    grid = fig.add_gridspec(2, 3, hspace=0.45, wspace=0.45)

    ax = fig.add_subplot(grid[0, 0])
    bound = float(np.nanmax(np.abs(by_class))) if counts.any() else 1.0
    image = ax.imshow(by_class, cmap="RdBu_r", vmin=-bound, vmax=bound, aspect="auto")
    ax.set_xticks(range(len(group_names)), group_names, rotation=90, fontsize=7)
    ax.set_yticks(range(num_classes), rows, fontsize=7)
    ax.set_ylabel("predicted class (images)")
    ax.set_title("mean share of the predicted class's capsule", fontsize=9)
    for (i, j), value in np.ndenumerate(by_class):
        if np.isfinite(value) and by_class.shape[1] <= 16:
            ax.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize=6)
    fig.colorbar(image, ax=ax, fraction=0.05)

    ax = fig.add_subplot(grid[0, 1])
    ax2 = fig.add_subplot(grid[0, 2])
    if e.branches is None:
        for axis in (ax, ax2):
            axis.axis("off")
            axis.text(
                0.5,
                0.5,
                "not a parallel network:\nno branches",
                ha="center",
                va="center",
                fontsize=9,
            )
    else:
        alone = e.branches["predictions"]
        agree = np.mean(alone == preds[:, None], axis=0)
        ax.bar(range(len(agree)), agree, color="#d95f02")
        ax.set_xticks(range(len(agree)), group_names, rotation=90, fontsize=7)
        ax.set_ylim(0, 1)
        ax.set_title("branch alone gives the network's class", fontsize=9)
        pairwise = np.mean(alone[:, :, None] == alone[:, None, :], axis=0)
        image = ax2.imshow(pairwise, cmap="Greens", vmin=0, vmax=1)
        ax2.set_xticks(range(len(agree)), group_names, rotation=90, fontsize=7)
        ax2.set_yticks(range(len(agree)), group_names, fontsize=7)
        ax2.set_title("two branches alone give the same class", fontsize=9)
        fig.colorbar(image, ax=ax2, fraction=0.05)

    ax = fig.add_subplot(grid[1, 0:2])
    image = ax.imshow(mean_scores, cmap="magma", vmin=0, aspect="auto")
    ax.set_xticks(range(num_classes), names, rotation=90, fontsize=7)
    ax.set_yticks(range(num_classes), rows, fontsize=7)
    ax.set_xlabel("class capsule")
    ax.set_ylabel("predicted class (images)")
    ax.set_title("mean class-capsule length", fontsize=9)
    fig.colorbar(image, ax=ax, fraction=0.05)

    ax = fig.add_subplot(grid[1, 2])
    views = e.orientation_predictions
    if views is None:
        ax.axis("off")
        ax.text(0.5, 0.5, "orientations not computed", ha="center", va="center")
    else:
        same = np.all(views == views[:1], axis=0)
        agr = [same[preds == c].mean() if counts[c] else 0 for c in range(num_classes)]
        ax.barh(range(num_classes), agr, color="#1b9e77")
        ax.set_yticks(range(num_classes), rows, fontsize=7)
        ax.invert_yaxis()
        ax.set_xlim(0, 1)
        ax.set_title(f"Agr per predicted class (all: {same.mean():.1%})", fontsize=9)
    summary = e.summary()
    line = f"{n} images"
    if summary["acc"] is not None:
        line += f", Acc {summary['acc']:.1%}"
    fig.suptitle(line, fontsize=11)
    fig.savefig(path, dpi=90)
    return str(Path(path))
