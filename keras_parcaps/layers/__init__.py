"""Capsule layers (each in its own module, named after it)."""

from keras_parcaps.layers.capsule_length import CapsuleLength
from keras_parcaps.layers.capsule_mask import CapsuleMask
from keras_parcaps.layers.dr_caps import DRCaps
from keras_parcaps.layers.primary_caps import PrimaryCaps

__all__ = ["CapsuleLength", "CapsuleMask", "DRCaps", "PrimaryCaps"]
