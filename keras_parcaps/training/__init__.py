"""Training: iteration epochs, checkpoints, resume, CV and small-data runs."""

from keras_parcaps.training.trainer import compile_for_training, train

__all__ = ["compile_for_training", "train"]
