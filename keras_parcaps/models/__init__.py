"""Model builders: the paper's networks and the canonical capsule networks.

`CATALOGUE` holds every builder by name with its options' allowed values;
`compile_model` is the one place that compiles a network the paper's way.
"""

from keras_parcaps.models.catalogue import CATALOGUE, get_model_spec, model_names
from keras_parcaps.models.compiling import (
    compile_model,
    default_metrics,
    loss_callbacks,
)
from keras_parcaps.models.dr import build_dr, build_parallel_dr
from keras_parcaps.models.em import build_em, build_parallel_em
from keras_parcaps.models.em_capsnet import build_em_capsnet
from keras_parcaps.models.image_classifier import ImageClassifier
from keras_parcaps.models.model_spec import ModelSpec
from keras_parcaps.models.resnext import build_resnext50
from keras_parcaps.models.sabour import SabourCapsNet, build_sabour_capsnet

__all__ = [
    "CATALOGUE",
    "ImageClassifier",
    "ModelSpec",
    "SabourCapsNet",
    "build_dr",
    "build_em",
    "build_em_capsnet",
    "build_parallel_dr",
    "build_parallel_em",
    "build_resnext50",
    "build_sabour_capsnet",
    "compile_model",
    "default_metrics",
    "get_model_spec",
    "loss_callbacks",
    "model_names",
]
