"""Capsule-network losses."""

from keras_parcaps.losses.margin_loss import MarginLoss, margin_loss

__all__ = ["MarginLoss", "margin_loss"]
