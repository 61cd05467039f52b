"""Capsule operations and routing algorithms (`keras.ops` only)."""

from keras_parcaps.ops.capsule_ops import safe_norm, squash
from keras_parcaps.ops.routing import dynamic_routing

__all__ = ["dynamic_routing", "safe_norm", "squash"]
