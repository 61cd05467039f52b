"""Capsule operations and routing algorithms (`keras.ops` only)."""

from keras_parcaps.ops.capsule_ops import safe_norm, squash
from keras_parcaps.ops.em_routing import (
    em_e_step,
    em_m_step,
    em_routing,
    inverse_temperatures,
)
from keras_parcaps.ops.routing import (
    dynamic_routing,
    dynamic_routing_from_inputs,
    routing_formulation,
)

__all__ = [
    "dynamic_routing",
    "dynamic_routing_from_inputs",
    "em_e_step",
    "em_m_step",
    "em_routing",
    "inverse_temperatures",
    "routing_formulation",
    "safe_norm",
    "squash",
]
