"""Model builders: the paper's networks and the canonical capsule networks."""

from keras_parcaps.models.dr import build_dr, build_parallel_dr
from keras_parcaps.models.em import build_em, build_parallel_em
from keras_parcaps.models.em_capsnet import build_em_capsnet
from keras_parcaps.models.resnext import build_resnext50
from keras_parcaps.models.sabour import SabourCapsNet, build_sabour_capsnet

__all__ = [
    "SabourCapsNet",
    "build_dr",
    "build_em",
    "build_em_capsnet",
    "build_parallel_dr",
    "build_parallel_em",
    "build_resnext50",
    "build_sabour_capsnet",
]
