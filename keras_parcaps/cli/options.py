"""The `keras-parcaps` command line's checks and builder options.

All of them run before any data is loaded, model built or file written, so
that a bad argument costs nothing.
"""

import inspect
import json
import math
import os
import warnings
from pathlib import Path

from keras_parcaps.cli.parser import DEMO_DEFAULTS, DEMO_OPTIONS


class UsageError(ValueError):
    """A command-line argument that cannot work; exit code 2, like argparse."""


def _model_options(args) -> dict:
    """Builder options from the flags, then `--model-option KEY=VALUE`."""
    options = {}
    for flag, name in (
        ("branches", "n_branches"),
        ("capsule_size", "capsule_size"),
        ("capsule_layers", "capsule_layers"),
    ):
        if getattr(args, flag, None) is not None:
            options[name] = getattr(args, flag)
    for item in getattr(args, "model_option", None) or []:
        key, equals, value = item.partition("=")
        if not key or not equals:
            raise UsageError(f"--model-option expects KEY=VALUE, got {item!r}")
        try:
            options[key] = json.loads(value)
        except json.JSONDecodeError:
            options[key] = value
    return options


def _check_writable_folder(flag, path):
    """Raises unless `path` is a folder or can be created as one."""
    path = Path(path)
    if path.exists():
        if not path.is_dir():
            raise UsageError(f"{flag} {path} exists and is not a folder")
        if not os.access(path, os.W_OK | os.X_OK):
            raise UsageError(f"{flag} {path}: no permission to write there")
        return
    ancestor = path.absolute().parent
    while not ancestor.exists():
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise UsageError(f"{flag} {path} cannot be created: {ancestor} is a file")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise UsageError(
            f"{flag} {path} cannot be created: no permission to write in {ancestor}"
        )


def check_args(args) -> None:
    """Checks that need no Keras: before anything is imported, loaded or made."""
    n_folds = getattr(args, "n_folds", None)
    fold = getattr(args, "fold", None)
    if fold is not None and not 0 <= fold < n_folds:
        raise UsageError(
            f"--fold must be in 0..{n_folds - 1} for --n-folds {n_folds}, got {fold}"
        )
    for value in getattr(args, "folds", None) or []:
        if value >= n_folds:
            raise UsageError(
                f"--folds must be in 0..{n_folds - 1} for --n-folds "
                f"{n_folds}, got {value}"
            )
    max_per_class = getattr(args, "max_per_class", None)
    if max_per_class is not None and max_per_class < n_folds:
        raise UsageError(
            f"--max-per-class must be at least --n-folds ({n_folds}) so that every "
            f"fold holds an image of each class, got {max_per_class}"
        )
    if args.command in ("evaluate", "explain", "diagnose"):
        model_file = Path(args.model_file)
        if not model_file.is_file():
            raise UsageError(
                f"model file {model_file} "
                + ("is not a file" if model_file.exists() else "not found")
            )
    data = getattr(args, "data", None)
    if (
        data not in (None, "synthetic")
        and Path(data).exists()
        and not (Path(data).is_dir())
    ):
        raise UsageError(f"--data {data} is a file; expected a folder")
    _model_options(args)
    if getattr(args, "out", None) is not None:
        _check_writable_folder("--out", args.out)


def train_options(args, builder):
    """The training arguments of `train_and_evaluate` and the experiments."""
    if args.images_per_class is not None and args.batch_size is not None:
        raise UsageError(
            "--images-per-class sets the balanced batches that --batch-size "
            "replaces; give one of them"
        )
    options = {
        "fingerprint": _fingerprint(args, builder),
        "epochs": args.epochs,
        "steps_per_epoch": args.steps,
        "batch_size": args.batch_size,
        "augment": not args.no_augment,
        "learning_rate": args.learning_rate,
        "seed": args.seed,
        "verbose": args.verbose,
        "orientations": not args.no_agr,
        "distribute": args.distribute,
    }
    # Unset, `train` takes one per class, or the multiple a distributed run needs.
    if args.images_per_class is not None:
        options["images_per_class"] = args.images_per_class
    return options


def _check_option_values(name, function, options, image_size):
    """Each option of the builder's type, and allowed by the model catalogue."""
    from keras_parcaps.models import get_model_spec

    try:
        spec = get_model_spec(name)
    except ValueError:  # A builder of the user's own: its signature only.
        spec = None
    choices = spec.choices if spec else {}
    parameters = inspect.signature(function).parameters
    for option, value in options.items():
        if option not in parameters:  # Taken by a builder's **kwargs.
            continue
        default = parameters[option].default
        if isinstance(default, bool):
            ok, wanted = isinstance(value, bool), "true or false"
        elif isinstance(default, int):
            ok = isinstance(value, int) and not isinstance(value, bool) and value >= 1
            wanted = "an integer >= 1"
        elif isinstance(default, float):
            ok = (
                isinstance(value, (int, float))
                and not isinstance(value, bool)
                and math.isfinite(value)
            )
            wanted = "a finite number"
        elif isinstance(default, str):
            ok, wanted = isinstance(value, str), "a string"
        else:
            continue
        if ok and option in choices and value not in choices[option]:
            ok, wanted = False, f"one of {', '.join(map(str, choices[option]))}"
        if not ok:
            raise UsageError(f"model option {option} must be {wanted}, got {value!r}")
    layers = options.get(
        "capsule_layers", getattr(parameters.get("capsule_layers"), "default", None)
    )
    limit = spec.max_branches_2_layers if spec else None
    if limit and layers == 2 and options.get("n_branches", 0) > limit:
        raise UsageError(
            f"model {name!r} takes at most {limit} branches with 2 "
            f"capsule layers, got {options['n_branches']}"
        )
    min_size = spec.min_image_size(**options) if spec else None
    if min_size is not None and image_size < min_size:
        raise UsageError(
            f"--image-size must be at least {min_size} for model "
            f"{name!r}, got {image_size}"
        )


def model_builder(args):
    """The builder, after checking its options (without building anything)."""
    from keras_parcaps.training.builders import get_builder

    options = _model_options(args)
    demo_defaults = {}
    if args.command == "demo":
        demo_defaults = {
            name: DEMO_DEFAULTS[flag]
            for flag, name in DEMO_OPTIONS.items()
            if getattr(args, flag, None) is None and name not in options
        }
        options = {**demo_defaults, **options}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        builder = get_builder(args.model, **options)
    if builder.options != options:
        # The demo's own defaults fit its model only.
        dropped = sorted(set(options) - set(builder.options) - set(demo_defaults))
        if dropped:
            raise UsageError(
                f"model {args.model!r} takes no option(s) {', '.join(dropped)}"
            )
    for warning in caught:
        if "takes no option" not in str(warning.message):
            warnings.warn_explicit(
                warning.message, warning.category, warning.filename, warning.lineno
            )
    function = getattr(builder, "function", None)
    if function is not None:
        _check_option_values(args.model, function, builder.options, args.image_size)
    return builder


def _source_name(source):
    """How the data source enters a run's fingerprint: moving it keeps it."""
    if source in (None, "synthetic"):
        return "synthetic"
    return Path(source).name or str(source)


def _fingerprint(args, builder) -> dict:
    """What makes two runs of the command line the same run (see `RunFolder`)."""
    return {
        "data": _source_name(args.data),
        "labels": args.labels,
        "model": args.model,
        "model_options": builder.options,
    }
