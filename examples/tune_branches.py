"""Search the branch count and capsule size of parallel CapsNets with KerasTuner.

    KERAS_BACKEND=jax python examples/tune_branches.py --kinds dr em \
        --image-size 64 --max-trials 20 --epochs 5 --steps 100 --out runs/tune

Without --data it searches on the built-in synthetic cells; --data takes a
class-folder dataset, an AML-Cytomorphology_LMU folder or a shared data set
name. Fold --fold of 5 stratified folds validates, the other four train (the
paper's protocol). Rerunning the same command after a kill continues the
search; only the trial in flight runs again. It writes OUT/trials.csv and
OUT/branches.png (validation WAcc against the branch count N, as the paper's
Fig. 2). The same command runs distributed: start it once with
KERASTUNER_TUNER_ID=chief and once per worker with KERASTUNER_TUNER_ID=tuner0,
tuner1, ..., all with KERASTUNER_ORACLE_IP and KERASTUNER_ORACLE_PORT set
(docs/tuning.md).
"""

import argparse

import keras_parcaps as kp


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=None)
    parser.add_argument("--kinds", nargs="+", default=["dr"], choices=["dr", "em"])
    parser.add_argument(
        "--tuner", default="random", choices=["random", "bayesian", "hyperband"]
    )
    parser.add_argument("--max-trials", type=int, default=10)
    parser.add_argument(
        "--branches", type=int, nargs=2, default=[1, 16], metavar=("MIN", "MAX")
    )
    parser.add_argument("--capsule-sizes", type=int, nargs="+", default=[9, 16, 25])
    parser.add_argument("--capsule-layers", type=int, nargs="+", default=[2, 3, 4])
    parser.add_argument(
        "--routing", type=int, nargs=2, default=[1, 3], metavar=("MIN", "MAX")
    )
    parser.add_argument(
        "--non-parallel",
        action="store_true",
        help="N counts the Mid-Caps of the non-parallel network",
    )
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--fold", type=int, default=0)
    parser.add_argument(
        "--no-jit",
        action="store_true",
        help="skip XLA compilation (faster for very short trials)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--verbose", type=int, default=1)
    parser.add_argument("--out", default="runs/tune_branches")
    args = parser.parse_args(argv)

    data = kp.data.load(args.data, args.image_size, seed=args.seed)
    folds = kp.data.stratified_folds(data.labels, n_folds=5, seed=args.seed)
    train_idx, val_idx = kp.data.fold_split(folds, args.fold)
    result = kp.tuning.search_branches(
        data.subset(train_idx),
        data.subset(val_idx),
        args.out,
        kinds=args.kinds,
        tuner=args.tuner,
        max_trials=args.max_trials,
        epochs=args.epochs,
        steps_per_epoch=args.steps,
        seed=args.seed,
        verbose=args.verbose,
        branches=tuple(args.branches),
        capsule_sizes=args.capsule_sizes,
        capsule_layers=args.capsule_layers,
        routing_iterations=tuple(args.routing),
        parallel=not args.non_parallel,
        jit_compile=False if args.no_jit else "auto",
    )
    if "rows" in result:
        for row in result["rows"]:
            print(row)
        print(f"Written: {result['csv']} and {result['plot']}")


if __name__ == "__main__":
    main()
