"""KerasTuner search over branch count, capsule size and capsule layers.

KerasTuner is optional (`pip install keras-parcaps[tuner]`): it is imported
the first time a name of this package is used, not by `import keras_parcaps`.
"""

import importlib

# Public name -> module of this package that defines it.
_EXPORTS = {
    "ParallelCapsHyperModel": "hypermodel",
    "objective": "hypermodel",
    "OBJECTIVE": "hypermodel",
    "PAPER_DEFAULTS": "hypermodel",
    "trials_table": "report",
    "write_trials_csv": "report",
    "plot_branch_search": "report",
    "branch_curves": "report",
    "make_tuner": "search",
    "search_branches": "search",
    "is_worker": "search",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module = importlib.import_module(f"{__name__}.{_EXPORTS[name]}")
    return getattr(module, name)


def __dir__():
    return sorted(set(globals()) | set(__all__))
