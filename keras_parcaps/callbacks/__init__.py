"""Keras callbacks: training schedules whose state survives checkpoint and
resume, a stop at the first non-finite loss, and exact BatchNormalization
statistics at the end of `fit`."""

from keras_parcaps.callbacks.precise_batch_norm import PreciseBatchNorm
from keras_parcaps.callbacks.spread_margin_schedule import SpreadMarginSchedule
from keras_parcaps.callbacks.stop_on_non_finite_loss import StopOnNonFiniteLoss

__all__ = ["PreciseBatchNorm", "SpreadMarginSchedule", "StopOnNonFiniteLoss"]
