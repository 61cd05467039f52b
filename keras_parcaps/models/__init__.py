"""Model builders: the paper's networks and the canonical capsule networks."""

from keras_parcaps.models.sabour import SabourCapsNet, build_sabour_capsnet

__all__ = ["SabourCapsNet", "build_sabour_capsnet"]
