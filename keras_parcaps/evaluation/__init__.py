"""Evaluation: Acc, WAcc, Agr, the Table 2 report, confusion matrix, plots."""

from keras_parcaps.evaluation.agreement import agreement, predict_orientations
from keras_parcaps.evaluation.evaluate import evaluate_model
from keras_parcaps.evaluation.plots import plot_confusion_matrix, plot_training_curves
from keras_parcaps.evaluation.report import (
    classification_report,
    format_summary,
    format_table,
    write_report,
)

__all__ = [
    "agreement",
    "classification_report",
    "evaluate_model",
    "format_summary",
    "format_table",
    "plot_confusion_matrix",
    "plot_training_curves",
    "predict_orientations",
    "write_report",
]
