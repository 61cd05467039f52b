"""The `keras-parcaps` subcommands: one function per command, in `COMMANDS`."""

import contextlib
import json
import time
from pathlib import Path

from keras_parcaps.cli.options import UsageError, model_builder, train_options


def _print_report(report, title):
    from keras_parcaps.evaluation import format_summary, format_table

    print(f"\n{title}: {format_summary(report)}\n")
    print(format_table(report))
    files = report.get("files", {})
    if files:
        print("\nWritten:")
        for path in files.values():
            print(f"  {path}")


def _data(args):
    """The data set, every image decoded (or skipped) before any training."""
    from keras_parcaps.data import load

    data = load(
        args.data,
        args.image_size,
        labels=args.labels,
        on_error=args.on_error,
        seed=args.seed,
    )
    if args.on_error == "raise":
        data.preload()
    elif data.skipped:
        shown = ", ".join(str(path) for path in data.skipped[:20])
        more = f" and {len(data.skipped) - 20} more" if len(data.skipped) > 20 else ""
        print(
            f"Skipped {len(data.skipped)} unreadable or missing image(s): {shown}{more}"
        )
    return data


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
    builder = model_builder(args)
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
        **train_options(args, builder),
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
    builder = model_builder(args)
    with _run_folder(args):
        report = experiment(
            builder,
            _data(args),
            args.out,
            n_folds=args.n_folds,
            run_folds=args.folds,
            **experiment_options,
            **train_options(args, builder),
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


def _cmd_demo(args):
    return _cmd_train(args, "Demo, held-out fold")


COMMANDS = {
    "demo": _cmd_demo,
    "train": _cmd_train,
    "evaluate": _cmd_evaluate,
    "diagnose": _cmd_diagnose,
    "explain": _cmd_explain,
    "cross-validate": _cmd_cross_validate,
    "small-data": _cmd_small_data,
}
