"""Keras callbacks: training schedules whose state survives checkpoint and
resume, and a stop at the first non-finite loss."""

from keras_parcaps.callbacks.spread_margin_schedule import SpreadMarginSchedule
from keras_parcaps.callbacks.stop_on_non_finite_loss import StopOnNonFiniteLoss

__all__ = ["SpreadMarginSchedule", "StopOnNonFiniteLoss"]
