"""Keras metrics of the paper: WAcc (balanced accuracy)."""

from keras_parcaps.metrics.weighted_accuracy import WeightedAccuracy

__all__ = ["WeightedAccuracy"]
