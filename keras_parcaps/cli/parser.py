"""The `keras-parcaps` command line's arguments: `build_parser`."""

import argparse
import math

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
DEMO_OPTIONS = {
    "branches": "n_branches",
    "capsule_layers": "capsule_layers",
    "backbone": "backbone",
}


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
    demo.set_defaults(fold=0, n_folds=5)

    train = sub.add_parser(
        "train",
        help="train on folds != --fold, evaluate on --fold; resumes after a kill",
    )
    _add_common(train)
    train.add_argument("--out", default="runs/train")
    _add_fold(train, default=0)

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
