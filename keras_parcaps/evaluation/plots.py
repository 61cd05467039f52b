"""Figures: the confusion matrix and the training curves, saved as PNG files."""

import csv
from pathlib import Path

import numpy as np


def new_figure(**kwargs):
    """A matplotlib `Figure` outside pyplot, for writing to a file.

    matplotlib is imported here, when a figure is drawn, not with
    `keras_parcaps`; the figure is not registered with pyplot, so the
    user's matplotlib backend and open figures are left alone, and
    `Figure.savefig` renders with Agg.

    Args:
        **kwargs: `matplotlib.figure.Figure` arguments, such as `figsize`.

    Returns:
        A new `matplotlib.figure.Figure`.

    Example:

        >>> figure = new_figure(figsize=(2, 2))
        >>> type(figure).__name__, len(figure.subplots(1, 2))
        ('Figure', 2)
    """
    from matplotlib.figure import Figure

    return Figure(**kwargs)


def plot_confusion_matrix(matrix, class_names, path, normalize: bool = True) -> str:
    """Saves a confusion matrix (rows: true class, columns: predicted) as PNG.

    Args:
        matrix: Counts `(classes, classes)`.
        class_names: Labels of the rows and columns.
        path: Output PNG file.
        normalize: Whether to colour by the share of each true class (the
            cells still print counts).

    Returns:
        The path written, as a string.

    Example:

        >>> import pathlib, tempfile
        >>> from PIL import Image
        >>> tmp = tempfile.TemporaryDirectory()
        >>> path = plot_confusion_matrix([[5, 1], [0, 3]], ["NGS", "LYT"],
        ...                              pathlib.Path(tmp.name) / "cm.png")
        >>> pathlib.Path(path).name, Image.open(path).format
        ('cm.png', 'PNG')
    """
    matrix = np.asarray(matrix)
    rows = matrix.sum(axis=1, keepdims=True)
    shown = np.divide(matrix, rows, out=np.zeros(matrix.shape), where=rows > 0)
    if not normalize:
        shown = matrix
    size = 2.5 + 0.45 * len(class_names)
    fig = new_figure(figsize=(size, size))
    ax = fig.subplots()
    ax.imshow(shown, cmap="Blues", vmin=0)
    ax.set_xticks(range(len(class_names)), class_names, rotation=90)
    ax.set_yticks(range(len(class_names)), class_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    threshold = shown.max() / 2 if shown.size else 0
    for (i, j), count in np.ndenumerate(matrix):
        ax.text(
            j,
            i,
            str(count),
            ha="center",
            va="center",
            fontsize=7,
            color="white" if shown[i, j] > threshold else "black",
        )
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    return str(path)


def _number(text):
    # CSVLogger writes "NA" for a metric missing from an epoch.
    try:
        return float(text)
    except (TypeError, ValueError):
        return np.nan


def plot_training_curves(log_csv, path) -> str:
    r"""Plots every column of a Keras `CSVLogger` file against the epoch.

    Losses go on the left axes, accuracies and other metrics on the right;
    validation columns are dashed. `NA` cells (a metric missing from an
    epoch) are left as gaps.

    Args:
        log_csv: The `CSVLogger` file, such as `log.csv` of
            `kp.training.train`.
        path: Output PNG file.

    Returns:
        The path written, as a string.

    Example:

        >>> import pathlib, tempfile
        >>> from PIL import Image
        >>> tmp = tempfile.TemporaryDirectory()
        >>> log = pathlib.Path(tmp.name) / "log.csv"
        >>> _ = log.write_text("epoch,acc,loss,val_acc,val_loss\n"
        ...                    "0,0.50,1.20,0.45,1.30\n"
        ...                    "1,0.70,0.80,NA,NA\n")
        >>> path = plot_training_curves(log, pathlib.Path(tmp.name) / "curves.png")
        >>> Image.open(path).format
        'PNG'
    """
    with open(log_csv) as file:
        rows = list(csv.DictReader(file))
    if not rows:
        raise ValueError(f"No epoch logged in {log_csv}.")
    epochs = [int(row["epoch"]) + 1 for row in rows]
    fig = new_figure(figsize=(10, 4))
    left, right = fig.subplots(1, 2)
    for key in rows[0]:
        if key in ("epoch", "learning_rate"):
            continue
        values = [_number(row[key]) for row in rows]
        ax = left if "loss" in key else right
        ax.plot(
            epochs,
            values,
            "--" if key.startswith("val_") else "-",
            marker="o",
            markersize=3,
            label=key,
        )
    for ax, title in ((left, "loss"), (right, "metrics")):
        ax.set_xlabel("epoch")
        ax.set_title(title)
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    return str(Path(path))
