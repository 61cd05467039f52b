"""Trials of a branch search as a table, a CSV file and a Fig. 2-style plot."""

import csv
import json
import math
from pathlib import Path

from keras_parcaps.evaluation.plots import new_figure

# The hyperparameters of `ParallelCapsHyperModel`, as its trials record them.
HYPERPARAMETERS = (
    "kind",
    "parallel",
    "branches",
    "capsule_size",
    "capsule_layers",
    "routing_iterations",
    "backbone",
)
COLUMNS = (
    "project",
    "trial_id",
    "status",
    *HYPERPARAMETERS,
    "val_wacc",
    "val_acc",
    "best_step",
)


def _best(metric: dict | None):
    """Best value of one metric of a `trial.json` (all observations)."""
    if not metric:
        return None
    values = [
        value
        for observation in metric.get("observations", [])
        for value in observation.get("value", [])
    ]
    if not values:
        return None
    return min(values) if metric.get("direction") == "min" else max(values)


def _trial_files(source):
    """`(project name, [trial dicts])` of a tuner or a tuner's project folder."""
    if hasattr(source, "oracle"):
        folder = Path(source.project_dir)
        trials = [trial.get_state() for trial in source.oracle.trials.values()]
        return folder.name, trials
    folder = Path(source)
    files = sorted(folder.glob("trial_*/trial.json"))
    if not files:
        raise ValueError(
            f"No KerasTuner trials (trial_*/trial.json) in {folder}. Pass a "
            "tuner or its project folder (directory/project_name)."
        )
    return folder.name, [json.loads(path.read_text()) for path in files]


def trials_table(sources) -> list:
    """One row per trial of one or several searches.

    Args:
        sources: A KerasTuner tuner, a project folder
            (`directory/project_name`), or a list of them, e.g. a DR and an
            EM search.

    Returns:
        A list of dicts with the keys of `COLUMNS`: the hyperparameters of
        `ParallelCapsHyperModel`, the best validation WAcc and accuracy of
        the trial (`None` while it has none) and its best step (epoch).

    Example:

        >>> rows = trials_table(["runs/tune/dr", "runs/tune/em"])  # doctest: +SKIP
        >>> rows[0]["branches"], rows[0]["val_wacc"]  # doctest: +SKIP
        (12, 0.754)
    """
    if isinstance(sources, (str, Path)) or hasattr(sources, "oracle"):
        sources = [sources]
    rows = []
    for source in sources:
        project, trials = _trial_files(source)
        for state in sorted(trials, key=lambda s: s["trial_id"]):
            values = state["hyperparameters"]["values"]
            metrics = state.get("metrics", {}).get("metrics", {})
            rows.append(
                {
                    "project": project,
                    "trial_id": state["trial_id"],
                    "status": state.get("status"),
                    **{key: values.get(key) for key in HYPERPARAMETERS},
                    "val_wacc": _best(metrics.get("val_wacc")),
                    "val_acc": _best(metrics.get("val_acc")),
                    "best_step": state.get("best_step"),
                }
            )
    return rows


def write_trials_csv(rows, path) -> Path:
    """Writes `trials_table` rows to a CSV file (columns `COLUMNS`).

    Example:

        >>> import tempfile, pathlib
        >>> row = {"trial_id": "0", "kind": "dr", "branches": 4, "val_wacc": 0.6}
        >>> tmp = tempfile.TemporaryDirectory()
        >>> path = write_trials_csv([row], pathlib.Path(tmp.name) / "t.csv")
        >>> path.read_text().splitlines()[1]
        ',0,,dr,,4,,,,,0.6,,'
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=COLUMNS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    return path


def branch_curves(rows) -> dict:
    """`{(kind, capsule_layers, parallel): [(N, best WAcc), ...]}` of finished trials.

    At each branch count the best trial over the other hyperparameters
    (capsule size, routing iterations) gives the point, as the paper picks
    the best set-up for each N.

    Example:

        >>> rows = [
        ...     {"kind": "dr", "capsule_layers": 3, "parallel": True,
        ...      "branches": 4, "val_wacc": wacc}
        ...     for wacc in (0.5, 0.7)
        ... ]
        >>> branch_curves(rows)
        {('dr', 3, True): [(4, 0.7)]}
    """
    curves = {}
    for row in rows:
        wacc = row["val_wacc"]
        if wacc is None or (isinstance(wacc, float) and math.isnan(wacc)):
            continue
        key = (row["kind"], row["capsule_layers"], row["parallel"])
        points = curves.setdefault(key, {})
        points[row["branches"]] = max(wacc, points.get(row["branches"], -math.inf))
    return {key: sorted(points.items()) for key, points in sorted(curves.items())}


def plot_branch_search(rows, path, title: str | None = None) -> Path:
    """Plots validation WAcc against the branch count N, as the paper's Fig. 2.

    One line per network kind and capsule-layer count (and non-parallel
    searches apart), each point the best trial at that N.

    Args:
        rows: Rows of `trials_table`.
        path: Image file to write (PNG, SVG, PDF...).
        title: Optional figure title.

    Returns:
        The path written.

    Example:

        >>> import tempfile, pathlib
        >>> rows = [
        ...     {"kind": "dr", "capsule_layers": 3, "parallel": True,
        ...      "branches": n, "val_wacc": wacc}
        ...     for n, wacc in ((1, 0.70), (4, 0.72), (12, 0.75))
        ... ]
        >>> tmp = tempfile.TemporaryDirectory()
        >>> path = plot_branch_search(rows, pathlib.Path(tmp.name) / "f.png")
        >>> path.stat().st_size > 0
        True
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure = new_figure(figsize=(6, 4))
    axes = figure.subplots()
    curves = branch_curves(rows)
    for (kind, layers, parallel), points in curves.items():
        label = f"{str(kind).upper()}-CapsNet, {layers} capsule layers"
        if parallel is False:
            label += " (non-parallel, N = Mid-Caps)"
        n, wacc = zip(*points)
        axes.plot(n, [100 * w for w in wacc], marker="o", label=label)
    axes.set_xlabel("Number of branches N (1: non-parallel)")
    axes.set_ylabel("Validation WAcc (%)")
    axes.xaxis.get_major_locator().set_params(integer=True)
    axes.grid(alpha=0.3)
    if curves:
        axes.legend(fontsize="small")
    else:
        axes.text(
            0.5, 0.5, "no finished trial yet", ha="center", transform=axes.transAxes
        )
    if title:
        axes.set_title(title)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    return path
