"""Capsule-network losses."""

from keras_parcaps.losses.margin_loss import MarginLoss, margin_loss
from keras_parcaps.losses.spread_loss import SpreadLoss, spread_loss

__all__ = ["MarginLoss", "margin_loss", "SpreadLoss", "spread_loss"]
