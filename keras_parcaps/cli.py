"""The `keras-parcaps` command: demo, train, evaluate, explain, cross-validate,
small-data.

Choose the backend with the `KERAS_BACKEND` environment variable
(`tensorflow`, `jax` or `torch`) before running the command.
"""

import argparse
import json
import sys
import time
from pathlib import Path

# What `keras-parcaps demo` does by default: a few minutes on 2 CPU cores.
# The 2-layer parallel DR-CapsNet with 4 branches (a row of the paper's
# Table 1) learns the synthetic cells in 200 iterations (measured: Acc 95%,
# WAcc 97% on the held-out fold with JAX); the 3-layer one with 2-4 branches
# needs far longer at this size.
DEMO_DEFAULTS = {
    "model": "parallel_dr",
    "image_size": 64,
    "epochs": 5,
    "steps": 40,
    "branches": 4,
    "capsule_layers": 2,
}


def _model_options(args) -> dict:
    options = {}
    if getattr(args, "branches", None) is not None:
        options["n_branches"] = args.branches
    if getattr(args, "capsule_size", None) is not None:
        options["capsule_size"] = args.capsule_size
    if getattr(args, "capsule_layers", None) is not None:
        options["capsule_layers"] = args.capsule_layers
    for item in getattr(args, "model_option", None) or []:
        key, _, value = item.partition("=")
        if not key or not _:
            raise SystemExit(f"--model-option expects KEY=VALUE, got {item!r}")
        try:
            options[key] = json.loads(value)
        except json.JSONDecodeError:
            options[key] = value
    return options


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
    parser.add_argument("--data", default=None,
                        help="class-folder dataset, AML-Cytomorphology_LMU folder, "
                        "shared data set name (bccd_wbc, pbc_matek_dev) or "
                        "'synthetic' (default: the built-in synthetic cells)")
    parser.add_argument("--labels", default="original",
                        choices=("original", "reannotation_1", "reannotation_2"),
                        help="AML labels: original or one of the re-annotations")
    parser.add_argument("--on-error", default="raise", choices=("raise", "skip"),
                        help="undecodable images: fail (default) or skip them")
    from keras_parcaps.models.catalogue import model_names

    parser.add_argument("--model", default=defaults.get("model", "parallel_dr"),
                        help="a model of the catalogue kp.models.CATALOGUE ("
                        f"{', '.join(model_names())}), its builder's name, or "
                        "package.module:function for a builder of your own")
    parser.add_argument("--image-size", type=int,
                        default=defaults.get("image_size", 64))
    parser.add_argument("--epochs", type=int, default=defaults.get("epochs", 10))
    parser.add_argument("--steps", type=int, default=defaults.get("steps", 500),
                        help="iterations per epoch (the paper: 500)")
    parser.add_argument("--batch-size", type=int, default=None,
                        help="ordinary shuffled batches of this size (default: "
                        "one image per class, as in the paper)")
    parser.add_argument("--branches", type=int, default=defaults.get("branches"),
                        help="number of parallel branches (n_branches)")
    parser.add_argument("--capsule-size", type=int, default=None)
    parser.add_argument("--capsule-layers", type=int,
                        default=defaults.get("capsule_layers"))
    parser.add_argument("--model-option", action="append", metavar="KEY=VALUE",
                        help="any other builder argument (JSON value)")
    parser.add_argument("--no-augment", action="store_true")
    parser.add_argument("--no-agr", action="store_true",
                        help="skip the 8-orientation agreement (faster)")
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--verbose", type=int, default=1, choices=(0, 1, 2))


def _train_options(args):
    return {
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


def _builder(args):
    from keras_parcaps.training.builders import get_builder

    try:
        return get_builder(args.model, **_model_options(args))
    except ValueError as error:
        raise SystemExit(f"keras-parcaps: {error}") from None


def _data(args):
    try:
        return load_data(args.data, args.image_size, args.labels, args.on_error,
                         args.seed)
    except (FileNotFoundError, ValueError) as error:
        raise SystemExit(f"keras-parcaps: {error}") from None


def _cmd_train(args, title="Validation fold"):
    import keras

    from keras_parcaps.data import fold_split, stratified_folds
    from keras_parcaps.training.experiments import train_and_evaluate

    keras.utils.set_random_seed(args.seed)
    builder = _builder(args)
    data = _data(args)
    print(f"Data: {len(data)} images, {data.num_classes} classes "
          f"{dict(zip(data.class_names, data.class_counts().tolist(), strict=True))}")
    folds = stratified_folds(data.labels, args.n_folds, args.seed)
    train_idx, val_idx = fold_split(folds, args.fold)
    print(f"Model: {args.model} {builder.options}; backend "
          f"{keras.backend.backend()}; fold {args.fold}/{args.n_folds}: "
          f"{len(train_idx)} train, {len(val_idx)} validation images; "
          f"{args.epochs} epochs x {args.steps} iterations")
    start = time.time()
    report = train_and_evaluate(builder, data.subset(train_idx),
                                data.subset(val_idx), args.out,
                                **_train_options(args))
    _print_report(report, f"{title} ({time.time() - start:.0f} s)")
    return report


def _cmd_evaluate(args):
    import keras

    import keras_parcaps  # noqa: F401  (registers the custom objects)
    from keras_parcaps.data import fold_split, stratified_folds
    from keras_parcaps.evaluation import evaluate_model

    model = keras.saving.load_model(args.model_file)
    size = tuple(model.input_shape[1:3]) if hasattr(model, "input_shape") else ()
    if len(size) == 2 and size[0] == size[1] and size[0] is not None:
        args.image_size = size[0]  # the size the model was trained at
    data = _data(args)
    if args.fold is not None:
        folds = stratified_folds(data.labels, args.n_folds, args.seed)
        data = data.subset(fold_split(folds, args.fold)[1])
    report = evaluate_model(model, data, args.out, orientations=not args.no_agr)
    _print_report(report, "Evaluation")
    _link_explain(args, report)
    return report


def _cmd_diagnose(args):
    import keras

    import keras_parcaps  # noqa: F401  (registers the custom objects)
    from keras_parcaps.data import fold_split, stratified_folds
    from keras_parcaps.training.diagnose import diagnose, format_diagnosis

    model = keras.saving.load_model(args.model_file)
    size = tuple(model.input_shape[1:3]) if hasattr(model, "input_shape") else ()
    if len(size) == 2 and size[0] == size[1] and size[0] is not None:
        args.image_size = size[0]
    data = _data(args)
    if args.fold is not None:
        folds = stratified_folds(data.labels, args.n_folds, args.seed)
        data = data.subset(fold_split(folds, args.fold)[1])
    try:
        report = diagnose(model, data, num_images=args.images, seed=args.seed)
    except ValueError as error:
        raise SystemExit(f"keras-parcaps: {error}") from None
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
    command = (f"keras-parcaps explain {args.model_file} "
               f"{source or 'IMAGE_OR_FOLDER'} --out {Path(args.out) / 'explain'}")
    print(f"\nWhat the capsules decided (routing, branches, poses): {command}")
    markdown = report.get("files", {}).get("markdown")
    if markdown:
        with open(markdown, "a") as file:
            file.write("\n## What the capsules decided\n\nRouting, per-branch "
                       "contributions, orientations and poses as pictures "
                       f"(docs: explain.md):\n\n    {command}\n")


def _cmd_explain(args):
    import keras

    import keras_parcaps  # noqa: F401  (registers the custom objects)
    from keras_parcaps.explain import explain_capsules, write_explanation
    from keras_parcaps.explain._files import class_names_for, read_images

    model = keras.saving.load_model(args.model_file)
    shape = getattr(model, "image_shape", None) or model.input_shape[1:]
    try:
        names = class_names_for(args.model_file, model.output_shape[-1], args.classes)
        images, labels, stems = read_images(args.source, tuple(shape[:2]), names,
                                            args.max_images)
    except (FileNotFoundError, ValueError) as error:
        raise SystemExit(f"keras-parcaps: {error}") from None
    explanation = explain_capsules(model, images, labels, names,
                                   orientations=not args.no_agr)
    files = write_explanation(explanation, args.out, args.max_panels, stems)
    summary = explanation.summary()
    print(f"Explained {summary['n']} images; Agr {summary['agr']}; written to "
          f"{args.out}: {Path(files['json']).name}, {Path(files['summary']).name}, "
          f"{len(files['panels'])} panels, {len(files['poses'])} pose grids")
    return files


def _cmd_cross_validate(args):
    from keras_parcaps.training.experiments import cross_validate

    report = cross_validate(_builder(args), _data(args), args.out,
                            n_folds=args.n_folds, run_folds=args.folds,
                            **_train_options(args))
    _print_report(report, "Cross-validation (pooled)")
    return report


def _cmd_small_data(args):
    from keras_parcaps.training.experiments import small_data

    report = small_data(_builder(args), _data(args), args.out,
                        args.max_per_class, n_folds=args.n_folds,
                        run_folds=args.folds, **_train_options(args))
    _print_report(report, f"Small data, x={args.max_per_class} (pooled)")
    return report


def _folds(text):
    return [int(part) for part in text.split(",") if part]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="keras-parcaps",
        description="Train and evaluate parallel capsule networks on white "
        "blood cells. Set KERAS_BACKEND=tensorflow|jax|torch to pick a backend.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="train and evaluate a small parallel DR "
                          "CapsNet in a few minutes (synthetic cells by default)")
    _add_common(demo, demo=True)
    demo.add_argument("--out", default="runs/demo")
    demo.set_defaults(func=lambda a: _cmd_train(a, "Demo, held-out fold"),
                      fold=0, n_folds=5)

    train = sub.add_parser("train", help="train on folds != --fold, evaluate "
                           "on --fold; resumes after a kill")
    _add_common(train)
    train.add_argument("--out", default="runs/train")
    train.add_argument("--fold", type=int, default=0)
    train.add_argument("--n-folds", type=int, default=5)
    train.set_defaults(func=_cmd_train)

    evaluate = sub.add_parser("evaluate", help="evaluate a saved model.keras")
    evaluate.add_argument("model_file")
    _add_common(evaluate)
    evaluate.add_argument("--out", default="runs/evaluate")
    evaluate.add_argument("--fold", type=int, default=None,
                          help="evaluate only this validation fold")
    evaluate.add_argument("--n-folds", type=int, default=5)
    evaluate.set_defaults(func=_cmd_evaluate)

    diagnosis = sub.add_parser(
        "diagnose", help="is a saved model healthy? collapse, BatchNormalization "
        "statistics, capsule lengths, coupling entropy, gradient norms")
    diagnosis.add_argument("model_file")
    _add_common(diagnosis)
    diagnosis.add_argument("--images", type=int, default=64,
                           help="images to check, taken from every class in turn")
    diagnosis.add_argument("--fold", type=int, default=None,
                           help="check only this validation fold")
    diagnosis.add_argument("--n-folds", type=int, default=5)
    diagnosis.add_argument("--out", default=None, help="folder for diagnosis.json")
    diagnosis.set_defaults(func=_cmd_diagnose)

    explain = sub.add_parser("explain", help="what the capsules decided: routing, "
                             "branches, orientations and poses as PNGs and JSON")
    explain.add_argument("model_file")
    explain.add_argument("source", help="an image, a folder of images, or a folder "
                         "of class folders (labels from the folder names)")
    explain.add_argument("--out", default="runs/explain")
    explain.add_argument("--classes", default=None,
                         help="comma-separated class names (default: run.json "
                         "beside the model, written by training)")
    explain.add_argument("--max-images", type=int, default=None)
    explain.add_argument("--max-panels", type=int, default=16,
                         help="one page per image for at most this many images")
    explain.add_argument("--no-agr", action="store_true",
                         help="skip the 8 orientations (faster)")
    explain.set_defaults(func=_cmd_explain)

    cv = sub.add_parser("cross-validate", help="5-fold CV, pooled Table 2 report")
    _add_common(cv)
    cv.add_argument("--out", default="runs/cv")
    cv.add_argument("--n-folds", type=int, default=5)
    cv.add_argument("--folds", type=_folds, default=None,
                    help="comma-separated subset of folds to run")
    cv.set_defaults(func=_cmd_cross_validate)

    small = sub.add_parser("small-data", help="the small-data protocol for one x")
    _add_common(small)
    small.add_argument("--max-per-class", type=int, required=True,
                       help="x: images per class in the folds (10, 25, 50, ...)")
    small.add_argument("--out", default=None)
    small.add_argument("--n-folds", type=int, default=5)
    small.add_argument("--folds", type=_folds, default=None)
    small.set_defaults(func=_cmd_small_data)
    for command in (demo, train, cv, small):
        command.add_argument(
            "--distribute", action="store_true",
            help="train data-parallel on every GPU (else every CPU device) "
            "with Keras's engines: JAX DataParallel or TensorFlow "
            "MirroredStrategy; one-per-class batches take enough images per "
            "class to split evenly across devices",
        )
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "out", "") is None:
        args.out = f"runs/small_data_x{args.max_per_class}"
    args.func(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
