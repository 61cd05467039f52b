"""Parameter counts of every Table 1 network beside the paper's NPar.

Builds each configuration of Table 1 of the paper (400x400 images, 15
classes, capsules 16 long) without training it and prints a markdown table
of our `count_params()` next to the paper's, with the relative difference.

    KERAS_BACKEND=torch python examples/table1_parameters.py
"""

import argparse
import gc

import keras_parcaps as kp

# (network, capsule layers, branches or Mid-Caps, paper's NPar, builder, options)
TABLE1 = [
    ("DR-CapsNet", 2, "-", 77.3e6, "build_dr", dict(capsule_layers=2)),
    ("DR-CapsNet", 3, "2", 11.3e6, "build_dr", dict(capsule_layers=3, n_mid_caps=2)),
    (
        "DR-CapsNet",
        2,
        "N=4",
        77.6e6,
        "build_parallel_dr",
        dict(capsule_layers=2, n_branches=4),
    ),
    (
        "DR-CapsNet",
        3,
        "N=12",
        73.2e6,
        "build_parallel_dr",
        dict(capsule_layers=3, n_branches=12),
    ),
    ("EM-CapsNet", 2, "-", 3.6e6, "build_em", dict(capsule_layers=2)),
    ("EM-CapsNet", 3, "2", 3.1e6, "build_em", dict(capsule_layers=3, n_mid_caps=2)),
    (
        "EM-CapsNet",
        2,
        "N=2",
        4.6e6,
        "build_parallel_em",
        dict(capsule_layers=2, n_branches=2),
    ),
    (
        "EM-CapsNet",
        3,
        "N=10",
        30.1e6,
        "build_parallel_em",
        dict(capsule_layers=3, n_branches=10),
    ),
    ("ResNeXt-50", "-", "-", 23.3e6, "build_resnext50", {}),
]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input-size", type=int, default=400)
    parser.add_argument("--num-classes", type=int, default=15)
    args = parser.parse_args()
    print("| network | layers | N / Mid-Caps | paper NPar | ours | difference |")
    print("| --- | --- | --- | --- | --- | --- |")
    for network, layers, branches, paper, builder, options in TABLE1:
        build = getattr(kp.models, builder, None)
        if build is None:
            ours, diff = f"({builder} not available)", "-"
        else:
            model = build(
                input_shape=(args.input_size, args.input_size, 3),
                num_classes=args.num_classes,
                **options,
            )
            count = model.count_params()
            ours, diff = f"{count / 1e6:.2f}M", f"{(count - paper) / paper:+.1%}"
            del model
            gc.collect()
        row = [network, layers, branches, f"{paper / 1e6:.1f}M", ours, diff]
        print("| " + " | ".join(str(x) for x in row) + " |", flush=True)


if __name__ == "__main__":
    main()
