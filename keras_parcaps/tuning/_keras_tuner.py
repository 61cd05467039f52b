"""KerasTuner, an optional dependency, imported with a clear message."""

import importlib


def require_keras_tuner():
    """Returns `keras_tuner`, or raises an `ImportError` saying how to install it."""
    try:
        return importlib.import_module("keras_tuner")
    except ImportError as error:
        raise ImportError(
            "keras_parcaps.tuning needs KerasTuner, an optional dependency: "
            "`pip install keras-parcaps[tuner]` (or `pip install keras-tuner`)."
        ) from error
