"""Model builders by name, from the model catalogue `kp.models.CATALOGUE`."""

import importlib
import inspect
import warnings

from keras_parcaps.models.catalogue import CATALOGUE, get_model_spec

# Command-line name -> builder, the catalogue's entries.
BUILDERS = {name: spec.builder for name, spec in CATALOGUE.items()}


def available_builders() -> list:
    """The names of `kp.models.CATALOGUE`, the models `get_builder` knows."""
    return list(CATALOGUE)


def get_builder(name, **options):
    """Returns `build(input_shape, num_classes) -> compiled model`.

    Args:
        name: A name of the model catalogue `kp.models.CATALOGUE` (such as
            `"parallel_dr"`) or of its builder (`"build_parallel_dr"`),
            `"package.module:function"` for a builder of your own, or a
            callable; a builder takes `input_shape` and `num_classes`
            keyword arguments.
        **options: Keyword arguments for the builder, such as `n_branches`.
            Options the builder does not accept are dropped with a warning,
            so one command line serves builders of different signatures.

    Returns:
        The function `build`, with the options it passes in `build.options`.

    Raises:
        ValueError: for a name the catalogue does not hold (the message
            lists those it has).

    Example:

        >>> build = get_builder("parallel_dr", n_branches=4)
        >>> build.__name__, build.options
        ('build_parallel_dr', {'n_branches': 4})
        >>> with warnings.catch_warnings(record=True) as caught:
        ...     warnings.simplefilter("always")
        ...     build = get_builder("resnext50", n_branches=4)
        >>> build.options, str(caught[0].message)
        ({}, "Model 'resnext50' takes no option(s) ['n_branches']; ignored.")
        >>> # A builder of your own, called as build(input_shape, num_classes):
        >>> import keras
        >>> def tiny(input_shape, num_classes, width=4):
        ...     return keras.Sequential([
        ...         keras.Input(input_shape),
        ...         keras.layers.Flatten(),
        ...         keras.layers.Dense(width),
        ...         keras.layers.Dense(num_classes, activation="softmax"),
        ...     ])
        >>> model = get_builder(tiny, width=8)((8, 8, 3), num_classes=3)
        >>> model.layers[-2].units, tuple(model(keras.ops.zeros((1, 8, 8, 3))).shape)
        (8, (1, 3))
        >>> get_builder("no_such_model")
        Traceback (most recent call last):
            ...
        ValueError: Unknown or unavailable model 'no_such_model'. Available here: ...
    """
    if callable(name):
        function, label = name, getattr(name, "__name__", "builder")
    elif ":" in name:
        module, _, attr = name.partition(":")
        function, label = getattr(importlib.import_module(module), attr), attr
    else:
        spec = get_model_spec(name)
        function, label = spec.builder, spec.name
        options = {**spec.defaults, **options}
    parameters = inspect.signature(function).parameters
    takes_any = any(p.kind is p.VAR_KEYWORD for p in parameters.values())
    accepted = {k: v for k, v in options.items() if takes_any or k in parameters}
    dropped = sorted(set(options) - set(accepted))
    if dropped:
        warnings.warn(
            f"Model {label!r} takes no option(s) {dropped}; ignored.", stacklevel=2
        )

    def build(input_shape, num_classes):
        return function(
            input_shape=tuple(input_shape), num_classes=num_classes, **accepted
        )

    build.__name__ = f"build_{label}"
    build.function = function
    build.options = accepted
    return build
