"""Capsule layers (each in its own module, named after it)."""

from keras_parcaps.layers.capsule_length import CapsuleLength
from keras_parcaps.layers.capsule_mask import CapsuleMask
from keras_parcaps.layers.dr_caps import DRCaps
from keras_parcaps.layers.em_class_caps import EMClassCaps
from keras_parcaps.layers.em_conv_caps import EMConvCaps
from keras_parcaps.layers.group_conv2d import GroupConv2D
from keras_parcaps.layers.image_centering import ImageCentering
from keras_parcaps.layers.parallel_branch import ParallelBranch
from keras_parcaps.layers.primary_caps import PrimaryCaps
from keras_parcaps.layers.resnext_block import ResNeXtBlock

__all__ = [
    "CapsuleLength",
    "CapsuleMask",
    "DRCaps",
    "EMClassCaps",
    "EMConvCaps",
    "GroupConv2D",
    "ImageCentering",
    "ParallelBranch",
    "PrimaryCaps",
    "ResNeXtBlock",
]
