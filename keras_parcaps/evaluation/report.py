"""The paper's numbers for a set of predictions: Acc, WAcc, Agr, Table 2."""

import csv
import json
from pathlib import Path

import numpy as np
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    confusion_matrix,
    precision_recall_fscore_support,
)

from keras_parcaps.evaluation.agreement import agreement


def classification_report(
    y_true, y_pred, class_names, full_names=None, orientation_predictions=None
) -> dict:
    """Acc, WAcc, optional Agr, per-class precision/sensitivity, confusion.

    The per-class rows follow the layout of Table 2 of the paper: class,
    number of images, precision, sensitivity; the `total` row holds the
    number of images and the unweighted means of precision and sensitivity
    over the classes present in `y_true`.

    Args:
        y_true: Integer labels `(n,)`.
        y_pred: Predicted integer labels `(n,)`.
        class_names: Class codes in label order.
        full_names: Optional long names, in label order.
        orientation_predictions: Optional predicted classes `(8, n)` over the
            dihedral orientations, for Agr.

    Returns:
        A JSON-ready dict with keys `acc`, `wacc`, `agr` (or `None`), `n`,
        `classes` (rows), `total` and `confusion_matrix`.

    Example:

        >>> report = classification_report([0, 1, 1], [0, 1, 0], ["A", "B"])
        >>> report["acc"], report["wacc"]
        (0.6666666666666666, 0.75)
    """
    y_true = np.asarray(y_true)
    y_pred = np.asarray(y_pred)
    labels = np.arange(len(class_names))
    full_names = list(full_names or class_names)
    precision, recall, _, support = precision_recall_fscore_support(
        y_true, y_pred, labels=labels, zero_division=0
    )
    present = support > 0
    rows = [
        {
            "code": class_names[i],
            "name": full_names[i],
            "images": int(support[i]),
            "precision": float(precision[i]),
            "sensitivity": float(recall[i]),
        }
        for i in labels
    ]
    agr = None
    if orientation_predictions is not None:
        agr = agreement(orientation_predictions)
    return {
        "acc": float(accuracy_score(y_true, y_pred)),
        "wacc": float(balanced_accuracy_score(y_true, y_pred)),
        "agr": agr,
        "n": int(len(y_true)),
        "classes": rows,
        "total": {
            "images": int(support.sum()),
            "precision": float(precision[present].mean()),
            "sensitivity": float(recall[present].mean()),
        },
        "confusion_matrix": confusion_matrix(y_true, y_pred, labels=labels).tolist(),
    }


def format_table(report: dict) -> str:
    """The Table 2-style rows of `report` as a markdown table.

    Args:
        report: A dict from `classification_report`.

    Returns:
        The table, one line per class and a `Total` line.

    Example:

        >>> report = classification_report([0, 1, 1], [0, 1, 0], ["A", "B"],
        ...                                ["Type A", "Type B"])
        >>> print(format_table(report))
        | Type of cell | Images | Precision | Sensitivity |
        | --- | ---: | ---: | ---: |
        | Type A (A) | 1 | 0.500 | 1.000 |
        | Type B (B) | 2 | 1.000 | 0.500 |
        | Total | 3 | 0.750 | 0.750 |
    """
    lines = [
        "| Type of cell | Images | Precision | Sensitivity |",
        "| --- | ---: | ---: | ---: |",
    ]
    for row in report["classes"]:
        lines.append(
            f"| {row['name']} ({row['code']}) | {row['images']:,} | "
            f"{row['precision']:.3f} | {row['sensitivity']:.3f} |"
        )
    total = report["total"]
    lines.append(
        f"| Total | {total['images']:,} | {total['precision']:.3f} | "
        f"{total['sensitivity']:.3f} |"
    )
    return "\n".join(lines)


def format_summary(report: dict) -> str:
    """One line: Acc, WAcc and Agr in percent, as in Table 1.

    Args:
        report: A dict from `classification_report`.

    Returns:
        A string such as `"Acc 91.2  WAcc 85.0  Agr 97.5%  (n=600)"`.

    Example:

        >>> views = [[0, 1, 0]] * 7 + [[0, 1, 1]]  # 8 orientations, 3 images
        >>> report = classification_report([0, 1, 1], [0, 1, 0], ["A", "B"],
        ...                                orientation_predictions=views)
        >>> format_summary(report)
        'Acc 66.7  WAcc 75.0  Agr 66.7%  (n=3)'
    """
    agr = "n/a" if report["agr"] is None else f"{100 * report['agr']:.1f}%"
    return (
        f"Acc {100 * report['acc']:.1f}  WAcc {100 * report['wacc']:.1f}  "
        f"Agr {agr}  (n={report['n']})"
    )


def write_report(report: dict, out_dir, prefix: str = "report") -> dict:
    """Writes `report` as JSON, the Table 2 rows as CSV and markdown.

    The markdown file holds `format_summary` and `format_table`.

    Args:
        report: A dict from `classification_report`.
        out_dir: Output folder, created if needed.
        prefix: File name prefix: `{prefix}.json`, `{prefix}_table.csv`,
            `{prefix}.md`.

    Returns:
        A dict of the written paths: `json`, `csv`, `markdown`.

    Example:

        >>> import json, pathlib, tempfile
        >>> tmp = tempfile.TemporaryDirectory()
        >>> report = classification_report([0, 1, 1], [0, 1, 0], ["A", "B"])
        >>> files = write_report(report, tmp.name)
        >>> sorted(pathlib.Path(path).name for path in files.values())
        ['report.json', 'report.md', 'report_table.csv']
        >>> json.loads(pathlib.Path(files["json"]).read_text())["wacc"]
        0.75
        >>> pathlib.Path(files["csv"]).read_text().splitlines()[1]
        'A,A,1,0.5000,1.0000'
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {
        "json": out_dir / f"{prefix}.json",
        "csv": out_dir / f"{prefix}_table.csv",
        "markdown": out_dir / f"{prefix}.md",
    }
    paths["json"].write_text(json.dumps(report, indent=2))
    with open(paths["csv"], "w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["code", "type_of_cell", "images", "precision", "sensitivity"])
        for row in report["classes"]:
            writer.writerow(
                [
                    row["code"],
                    row["name"],
                    row["images"],
                    f"{row['precision']:.4f}",
                    f"{row['sensitivity']:.4f}",
                ]
            )
        total = report["total"]
        writer.writerow(
            [
                "",
                "Total",
                total["images"],
                f"{total['precision']:.4f}",
                f"{total['sensitivity']:.4f}",
            ]
        )
    paths["markdown"].write_text(
        format_summary(report) + "\n\n" + format_table(report) + "\n"
    )
    return {key: str(path) for key, path in paths.items()}
