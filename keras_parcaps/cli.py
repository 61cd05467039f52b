"""The `keras-parcaps` command: demo, train, evaluate, explain, cross-validate,
small-data.

Choose the backend with the `KERAS_BACKEND` environment variable
(`tensorflow`, `jax` or `torch`) before running the command.
"""

import argparse
import contextlib
import inspect
import json
import math
import os
import sys
import time
import warnings
from pathlib import Path

# What `keras-parcaps demo` does by default: a few minutes on 2 CPU cores.
# The paper's best network, the 3-layer parallel DR-CapsNet (here with 4
# branches), learns the synthetic cells in 200 iterations (measured with JAX:
# held-out Acc 94.7%, WAcc 95.8%, docs/benchmarks.md); the 2-layer one is
# about 1.7x cheaper per iteration (`--capsule-layers 2`).
DEMO_DEFAULTS = {
    "model": "parallel_dr",
    "image_size": 64,
    "epochs": 5,
    "steps": 40,
    "branches": 4,
    "capsule_layers": 3,
    # On real cells the paper's stem learns far less in the demo's budget
    # (docs/concepts.md, "The stem, not the capsules").
    "backbone": "plain",
}
# The demo's defaults that are builder options: DEMO_DEFAULTS key -> option.
# A key with a flag (--branches) yields to it; `backbone` has none and
# yields to --model-option only.
_DEMO_OPTIONS = {
    "branches": "n_branches",
    "capsule_layers": "capsule_layers",
    "backbone": "backbone",
}


class UsageError(ValueError):
    """A command-line argument that cannot work; exit code 2, like argparse."""


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors: `keras-parcaps: <message>`, exit code 2."""

    def error(self, message):
        self.exit(2, f"keras-parcaps: {message} (see {self.prog} --help)\n")


def _int_at_least(minimum):
    def parse(text):
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected an integer, got {text!r}"
            ) from None
        if value < minimum:
            raise argparse.ArgumentTypeError(
                f"must be an integer >= {minimum}, got {value}"
            )
        return value

    parse.__name__ = f"integer >= {minimum}"
    return parse


def _learning_rate(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(
            f"must be a positive finite number, got {text}"
        )
    return value


def _folds(text):
    parse = _int_at_least(0)
    folds = [parse(part.strip()) for part in text.split(",") if part.strip()]
    if not folds or len(set(folds)) != len(folds):
        raise argparse.ArgumentTypeError(
            f"expected distinct fold numbers such as 0,2,4, got {text!r}"
        )
    return folds


def _names(text):
    names = [part.strip() for part in text.split(",") if part.strip()]
    if len(names) < 2 or len(set(names)) != len(names):
        raise argparse.ArgumentTypeError(
            f"expected two or more distinct names such as NGS,LYT,MON, got {text!r}"
        )
    return names


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


def _check_args(args) -> None:
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


def load_data(source, image_size, labels="original", on_error="raise", seed=0):
    """An `ImageSet` from `--data`: see `kp.data.load`."""
    from keras_parcaps.data import load

    return load(source, image_size, labels=labels, on_error=on_error, seed=seed)


def _print_report(report, title):
    from keras_parcaps.evaluation import format_summary, format_table

    print(f"\n{title}: {format_summary(report)}\n")
    print(format_table(report))
    files = report.get("files", {})
    if files:
        print("\nWritten:")
        for path in files.values():
            print(f"  {path}")


def _add_common(parser, demo=False):
    defaults = DEMO_DEFAULTS if demo else {}
    parser.add_argument(
        "--data",
        default=None,
        help="class-folder dataset, AML-Cytomorphology_LMU folder, "
        "shared data set name (bccd_wbc, pbc_matek_dev) or "
        "'synthetic' (default: the built-in synthetic cells)",
    )
    parser.add_argument(
        "--labels",
        default="original",
        choices=("original", "reannotation_1", "reannotation_2"),
        help="AML labels: original or one of the re-annotations",
    )
    parser.add_argument(
        "--on-error",
        default="raise",
        choices=("raise", "skip"),
        help="undecodable images: fail (default) or skip them",
    )
    from keras_parcaps.models.catalogue import model_names

    parser.add_argument(
        "--model",
        default=defaults.get("model", "parallel_dr"),
        help="a model of the catalogue kp.models.CATALOGUE ("
        f"{', '.join(model_names())}), its builder's name, or "
        "package.module:function for a builder of your own",
    )
    parser.add_argument(
        "--image-size", type=_int_at_least(8), default=defaults.get("image_size", 64)
    )
    parser.add_argument(
        "--epochs", type=_int_at_least(1), default=defaults.get("epochs", 10)
    )
    parser.add_argument(
        "--steps",
        type=_int_at_least(1),
        default=defaults.get("steps", 500),
        help="iterations per epoch (the paper: 500)",
    )
    parser.add_argument(
        "--batch-size",
        type=_int_at_least(1),
        default=None,
        help="ordinary shuffled batches of this size (default: "
        "one image per class, as in the paper)",
    )
    parser.add_argument(
        "--images-per-class",
        type=_int_at_least(1),
        default=None,
        help="images of each class in a balanced batch (default 1, the paper's; "
        "2 trained better on 10 classes, see docs/concepts.md)",
    )
    parser.add_argument(
        "--branches",
        type=_int_at_least(1),
        default=None,
        help="number of parallel branches (n_branches; demo: "
        f"{DEMO_DEFAULTS['branches']} for its model)",
    )
    parser.add_argument("--capsule-size", type=_int_at_least(1), default=None)
    parser.add_argument(
        "--capsule-layers",
        type=_int_at_least(1),
        default=None,
        help=f"capsule layers (demo: {DEMO_DEFAULTS['capsule_layers']} for its model)",
    )
    parser.add_argument(
        "--model-option",
        action="append",
        metavar="KEY=VALUE",
        help="any other builder argument (JSON value)"
        + (
            f"; demo: backbone={DEMO_DEFAULTS['backbone']} for its model "
            "(backbone=paper: the paper's stem)"
            if demo
            else ""
        ),
    )
    parser.add_argument("--no-augment", action="store_true")
    parser.add_argument(
        "--no-agr",
        action="store_true",
        help="skip the 8-orientation agreement (faster)",
    )
    parser.add_argument("--learning-rate", type=_learning_rate, default=1e-3)
    parser.add_argument("--seed", type=_int_at_least(0), default=0)
    parser.add_argument("--verbose", type=int, default=1, choices=(0, 1, 2))


def _train_options(args, builder):
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


def _builder(args):
    """The builder, after checking its options (without building anything)."""
    from keras_parcaps.training.builders import get_builder

    options = _model_options(args)
    demo_defaults = {}
    if args.command == "demo":
        demo_defaults = {
            name: DEMO_DEFAULTS[flag]
            for flag, name in _DEMO_OPTIONS.items()
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


def _data(args):
    """The data set, every image decoded (or skipped) before any training."""
    data = load_data(args.data, args.image_size, args.labels, args.on_error, args.seed)
    if args.on_error == "raise":
        data.preload()
    elif data.skipped:
        shown = ", ".join(str(path) for path in data.skipped[:20])
        more = f" and {len(data.skipped) - 20} more" if len(data.skipped) > 20 else ""
        print(
            f"Skipped {len(data.skipped)} unreadable or missing image(s): {shown}{more}"
        )
    return data


def _fingerprint(args, builder) -> dict:
    return {
        "data": _source_name(args.data),
        "labels": args.labels,
        "model": args.model,
        "model_options": builder.options,
    }


@contextlib.contextmanager
def _run_folder(args):
    """Holds `--out`'s lock for the whole command; clears it on --overwrite.

    In a run of several processes, the chief alone locks and clears the
    folder; the others learn whether it could.
    """
    from keras_parcaps.training import RunFolder, distribution_backend

    run = RunFolder(args.out)

    def take():
        run.lock()
        if getattr(args, "overwrite", False):
            try:
                run.clear()
            except BaseException:
                run.unlock()
                raise

    distribution_backend.on_chief(take)
    try:
        yield run
    finally:
        run.unlock()  # nothing to do where the lock is not held


def _cmd_train(args, title="Validation fold"):
    import keras

    keras.utils.set_random_seed(args.seed)
    builder = _builder(args)
    with _run_folder(args):
        return _train_fold(args, builder, title)


def _train_fold(args, builder, title):
    import keras

    from keras_parcaps.data import fold_split, stratified_folds
    from keras_parcaps.training.experiments import train_and_evaluate

    data = _data(args)
    print(
        f"Data: {len(data)} images, {data.num_classes} classes "
        f"{dict(zip(data.class_names, data.class_counts().tolist(), strict=True))}"
    )
    folds = stratified_folds(data.labels, args.n_folds, args.seed)
    train_idx, val_idx = fold_split(folds, args.fold)
    print(
        f"Model: {args.model} {builder.options}; backend "
        f"{keras.backend.backend()}; fold {args.fold}/{args.n_folds}: "
        f"{len(train_idx)} train, {len(val_idx)} validation images; "
        f"{args.epochs} epochs x {args.steps} iterations"
    )
    start = time.time()
    report = train_and_evaluate(
        builder,
        data.subset(train_idx),
        data.subset(val_idx),
        args.out,
        **_train_options(args, builder),
    )
    _print_report(report, f"{title} ({time.time() - start:.0f} s)")
    return report


def _model_classes(args):
    """The class names of `args.model_file`'s outputs: saved with it (or in
    the `run.json` of the run folder it is in), or --class-names."""
    from keras_parcaps.training.saving import read_metadata

    saved = (read_metadata(args.model_file) or {}).get("class_names")
    run = Path(args.model_file).parent / "run.json"
    if not saved and run.is_file():
        info = json.loads(run.read_text())
        saved = info.get("fingerprint", info).get("classes")
    given = args.class_names
    if saved and given and saved != given:
        raise UsageError(
            f"--class-names {','.join(given)} differ from the classes saved with "
            f"{args.model_file}: {','.join(saved)}"
        )
    if not saved and not given:
        raise UsageError(
            f"{args.model_file} has no class names saved with it (saved without "
            "keras-parcaps?); pass --class-names NAME,NAME,... in output order"
        )
    return saved or given


def _load_model(path):
    import keras

    import keras_parcaps  # noqa: F401  (registers the custom objects)

    try:
        return keras.saving.load_model(path)
    except Exception as error:  # Keras raises many types for foreign files.
        raise ValueError(
            f"cannot load {path} as a Keras model: {type(error).__name__}: {error}"
        ) from None


def _align_classes(data, class_names):
    """`data` with labels indexing `class_names` (the model's outputs)."""
    import numpy as np

    if list(data.class_names) == list(class_names):
        return data
    unknown = [name for name in data.class_names if name not in class_names]
    if unknown:
        raise UsageError(
            f"the data's classes {','.join(data.class_names)} are not the model's "
            f"classes {','.join(class_names)} (unknown to the model: "
            f"{','.join(unknown)})"
        )
    position = np.array([class_names.index(name) for name in data.class_names])
    full = dict(zip(data.class_names, data.full_names, strict=True))
    aligned = data.subset(np.arange(len(data)))
    aligned.labels = position[data.labels]
    aligned.class_names = list(class_names)
    aligned.full_names = [full.get(name, name) for name in class_names]
    return aligned


def _data_for_model(args, model):
    """The data at the size `model` was trained at, only `--fold` if given."""
    from keras_parcaps.data import fold_split, stratified_folds

    size = tuple(model.input_shape[1:3]) if hasattr(model, "input_shape") else ()
    if len(size) == 2 and size[0] == size[1] and size[0] is not None:
        args.image_size = size[0]
    data = _data(args)
    if args.fold is not None:
        folds = stratified_folds(data.labels, args.n_folds, args.seed)
        data = data.subset(fold_split(folds, args.fold)[1])
    return data


def _cmd_evaluate(args):
    from keras_parcaps.evaluation import evaluate_model

    if args.average_orientations and args.no_agr:
        raise UsageError(
            "--average-orientations needs the 8 orientations that --no-agr skips"
        )
    class_names = _model_classes(args)
    model = _load_model(args.model_file)
    outputs = model.output_shape[-1] if hasattr(model, "output_shape") else None
    if outputs is not None and outputs != len(class_names):
        raise UsageError(
            f"{args.model_file} has {outputs} outputs but {len(class_names)} class "
            f"names: {','.join(class_names)}"
        )
    data = _align_classes(_data_for_model(args, model), class_names)
    with _run_folder(args):
        report = evaluate_model(
            model,
            data,
            args.out,
            orientations=not args.no_agr,
            average_orientations=args.average_orientations,
        )
    _print_report(report, "Evaluation")
    _link_explain(args, report)
    return report


def _cmd_diagnose(args):
    from keras_parcaps.training.diagnose import diagnose, format_diagnosis

    model = _load_model(args.model_file)
    data = _data_for_model(args, model)
    report = diagnose(model, data, num_images=args.images, seed=args.seed)
    print(format_diagnosis(report))
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "diagnosis.json").write_text(json.dumps(report, indent=2))
        print(f"Wrote {out / 'diagnosis.json'}")
    return report


def _link_explain(args, report):
    """Points the evaluation report at `keras-parcaps explain` for this model."""
    from keras_parcaps.data import data_dir

    source = args.data
    if source and not Path(source).exists() and data_dir(str(source)) is not None:
        source = data_dir(str(source))
    command = (
        f"keras-parcaps explain {args.model_file} "
        f"{source or 'IMAGE_OR_FOLDER'} --out {Path(args.out) / 'explain'}"
    )
    print(f"\nWhat the capsules decided (routing, branches, poses): {command}")
    markdown = report.get("files", {}).get("markdown")
    if markdown:
        with open(markdown, "a") as file:
            file.write(
                "\n## What the capsules decided\n\nRouting, per-branch "
                "contributions, orientations and poses as pictures "
                f"(docs: explain.md):\n\n    {command}\n"
            )


def _cmd_explain(args):
    from keras_parcaps.explain import explain_capsules, write_explanation
    from keras_parcaps.explain._files import class_names_for, read_images

    model = _load_model(args.model_file)
    shape = getattr(model, "image_shape", None) or model.input_shape[1:]
    names = class_names_for(args.model_file, model.output_shape[-1], args.classes)
    images, labels, stems = read_images(
        args.source, tuple(shape[:2]), names, args.max_images
    )
    explanation = explain_capsules(
        model, images, labels, names, orientations=not args.no_agr
    )
    files = write_explanation(explanation, args.out, args.max_panels, stems)
    summary = explanation.summary()
    print(
        f"Explained {summary['n']} images; Agr {summary['agr']}; written to "
        f"{args.out}: {Path(files['json']).name}, {Path(files['summary']).name}, "
        f"{len(files['panels'])} panels, {len(files['poses'])} pose grids"
    )
    return files


def _run_folds(args, experiment, title, **experiment_options):
    """Runs `cross_validate` or `small_data` on the command's data and prints it."""
    builder = _builder(args)
    with _run_folder(args):
        report = experiment(
            builder,
            _data(args),
            args.out,
            n_folds=args.n_folds,
            run_folds=args.folds,
            **experiment_options,
            **_train_options(args, builder),
        )
    _print_report(report, title)
    return report


def _cmd_cross_validate(args):
    from keras_parcaps.training.experiments import cross_validate

    return _run_folds(args, cross_validate, "Cross-validation (pooled)")


def _cmd_small_data(args):
    from keras_parcaps.training.experiments import small_data

    title = f"Small data, x={args.max_per_class} (pooled)"
    return _run_folds(args, small_data, title, max_per_class=args.max_per_class)


def _add_fold(parser, default=None, help=None):
    """`--fold` and `--n-folds`: one validation fold of `stratified_folds`."""
    parser.add_argument("--fold", type=_int_at_least(0), default=default, help=help)
    parser.add_argument("--n-folds", type=_int_at_least(2), default=5)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="keras-parcaps",
        description="Train and evaluate parallel capsule networks on white "
        "blood cells. Set KERAS_BACKEND=tensorflow|jax|torch to pick a backend.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser(
        "demo",
        help="train and evaluate a small parallel DR "
        "CapsNet in a few minutes (synthetic cells by default)",
    )
    _add_common(demo, demo=True)
    demo.add_argument("--out", default="runs/demo")
    demo.set_defaults(
        func=lambda a: _cmd_train(a, "Demo, held-out fold"), fold=0, n_folds=5
    )

    train = sub.add_parser(
        "train",
        help="train on folds != --fold, evaluate on --fold; resumes after a kill",
    )
    _add_common(train)
    train.add_argument("--out", default="runs/train")
    _add_fold(train, default=0)
    train.set_defaults(func=_cmd_train)

    evaluate = sub.add_parser("evaluate", help="evaluate a saved model.keras")
    evaluate.add_argument("model_file")
    _add_common(evaluate)
    evaluate.add_argument("--out", default="runs/evaluate")
    _add_fold(evaluate, help="evaluate only this validation fold")
    evaluate.add_argument(
        "--class-names",
        type=_names,
        default=None,
        help="comma-separated class of each model output, for "
        "a model saved without them (keras-parcaps saves them)",
    )
    evaluate.add_argument(
        "--average-orientations",
        action="store_true",
        help="classify each image by its scores averaged over the 8 "
        "orientations (test-time augmentation; Agr is unchanged)",
    )
    evaluate.set_defaults(func=_cmd_evaluate)

    diagnosis = sub.add_parser(
        "diagnose",
        help="is a saved model healthy? collapse, BatchNormalization "
        "statistics, capsule lengths, coupling entropy, gradient norms",
    )
    diagnosis.add_argument("model_file")
    _add_common(diagnosis)
    diagnosis.add_argument(
        "--images",
        type=_int_at_least(1),
        default=64,
        help="images to check, taken from every class in turn",
    )
    _add_fold(diagnosis, help="check only this validation fold")
    diagnosis.add_argument("--out", default=None, help="folder for diagnosis.json")
    diagnosis.set_defaults(func=_cmd_diagnose)

    explain = sub.add_parser(
        "explain",
        help="what the capsules decided: routing, "
        "branches, orientations and poses as PNGs and JSON",
    )
    explain.add_argument("model_file")
    explain.add_argument(
        "source",
        help="an image, a folder of images, or a folder "
        "of class folders (labels from the folder names)",
    )
    explain.add_argument("--out", default="runs/explain")
    explain.add_argument(
        "--classes",
        default=None,
        help="comma-separated class names (default: run.json "
        "beside the model, written by training)",
    )
    explain.add_argument("--max-images", type=_int_at_least(1), default=None)
    explain.add_argument(
        "--max-panels",
        type=_int_at_least(0),
        default=16,
        help="one page per image for at most this many images",
    )
    explain.add_argument(
        "--no-agr", action="store_true", help="skip the 8 orientations (faster)"
    )
    explain.set_defaults(func=_cmd_explain)

    cv = sub.add_parser("cross-validate", help="5-fold CV, pooled Table 2 report")
    _add_common(cv)
    cv.add_argument("--out", default="runs/cv")
    cv.add_argument("--n-folds", type=_int_at_least(2), default=5)
    cv.add_argument(
        "--folds",
        type=_folds,
        default=None,
        help="comma-separated subset of folds to run",
    )
    cv.set_defaults(func=_cmd_cross_validate)

    small = sub.add_parser("small-data", help="the small-data protocol for one x")
    _add_common(small)
    small.add_argument(
        "--max-per-class",
        type=_int_at_least(1),
        required=True,
        help="x: images per class in the folds (10, 25, 50, ...)",
    )
    small.add_argument("--out", default=None)
    small.add_argument("--n-folds", type=_int_at_least(2), default=5)
    small.add_argument("--folds", type=_folds, default=None)
    small.set_defaults(func=_cmd_small_data)
    for command in (demo, train, cv, small):
        command.add_argument(
            "--distribute",
            action="store_true",
            help="train data-parallel on every GPU (else every CPU device) "
            "of every process a launcher started (torchrun, TF_CONFIG, the "
            "JAX coordinator variables; implied when they announce several "
            "processes): JAX DataParallel, TensorFlow (MultiWorker)Mirrored"
            "Strategy or torch DistributedDataParallel; one-per-class "
            "batches take enough images per class to split evenly",
        )
        command.add_argument(
            "--coordinator-address",
            default=None,
            help="JAX, several processes: host:port of process 0 "
            "(JAX_COORDINATOR_ADDRESS)",
        )
        command.add_argument(
            "--num-processes",
            type=_int_at_least(1),
            default=None,
            help="JAX: number of processes (JAX_NUM_PROCESSES)",
        )
        command.add_argument(
            "--process-id",
            type=_int_at_least(0),
            default=None,
            help="JAX: this process's index (JAX_PROCESS_ID)",
        )
        command.add_argument(
            "--overwrite",
            action="store_true",
            help="delete what --out holds and start over (without it, a run "
            "resumes, and a different run in --out is refused)",
        )
    return parser


def _join_processes(args) -> None:
    """Joins a launcher's processes; the first line says what is used.

    Only the chief prints anything after that line (the others train
    silently, and write no file).
    """
    from keras_parcaps.training import distribution_backend

    for value, name in (
        (args.coordinator_address, "JAX_COORDINATOR_ADDRESS"),
        (args.num_processes, "JAX_NUM_PROCESSES"),
        (args.process_id, "JAX_PROCESS_ID"),
    ):
        if value is not None:
            os.environ[name] = str(value)
    if distribution_backend.launcher_processes() > 1:
        args.distribute = True
    if not args.distribute:
        return
    distribution_backend.initialize_processes()
    print(f"Distributed: {distribution_backend.describe()}", flush=True)
    if not distribution_backend.is_chief():
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 (for the process's life)
        args.verbose = 0


def _one_line(error) -> str:
    return " ".join(str(error).split()) or type(error).__name__


def _format_warning(message, category, filename, lineno, line=None):
    return f"keras-parcaps: warning: {_one_line(message)}\n"


def main(argv=None) -> int:
    """Runs the command line; errors are one line on stderr.

    Bad arguments exit with code 2 before anything is loaded, built or
    written (like argparse); bad data, a locked or foreign `--out` and other
    refusals exit with 2 as well, a training that fails (a non-finite loss)
    with 1.
    """
    if "jax" not in sys.modules:
        # JAX on a CPU compiles the partitionable threefry draws of small
        # weights in up to 85 s each (docs/getting-started.md).
        os.environ.setdefault("JAX_THREEFRY_PARTITIONABLE", "0")
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "small-data" and args.out is None:
        args.out = f"runs/small_data_x{args.max_per_class}"
    formatwarning, warnings.formatwarning = warnings.formatwarning, _format_warning
    try:
        _check_args(args)
        if hasattr(args, "distribute"):
            _join_processes(args)
        args.func(args)
    except (UsageError, ValueError, OSError) as error:
        parser.exit(2, f"keras-parcaps: {_one_line(error)}\n")
    except ArithmeticError as error:  # FloatingPointError: a non-finite loss.
        parser.exit(1, f"keras-parcaps: {_one_line(error)}\n")
    finally:
        warnings.formatwarning = formatwarning
    return 0


if __name__ == "__main__":
    sys.exit(main())
