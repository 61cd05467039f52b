"""Training schedules as Keras callbacks whose state survives checkpoint and resume."""

from keras_parcaps.callbacks.spread_margin_schedule import SpreadMarginSchedule

__all__ = ["SpreadMarginSchedule"]
