"""keras-parcaps: parallel capsule networks for Keras 3.

Runs unchanged on the TensorFlow, JAX and PyTorch backends. Implements
"Parallel Capsule Networks for Classification of White Blood Cells"
(Vigueras-Guillen et al., MICCAI 2021).
"""

from keras_parcaps import (
    callbacks,
    data,
    evaluation,
    explain,
    layers,
    losses,
    metrics,
    models,
    ops,
    training,
    tuning,
)
from keras_parcaps.version import __version__

__all__ = [
    "__version__",
    "callbacks",
    "data",
    "evaluation",
    "explain",
    "layers",
    "losses",
    "metrics",
    "models",
    "ops",
    "training",
    "tuning",
]
