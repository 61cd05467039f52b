"""Input-pipeline speed: decoding, resizing, caching and batching, in images/s.

Reads real JPEGs from ../shared/data/pbc_matek_dev (or $PARCAPS_DATA) and,
for the AML-Cytomorphology_LMU format, 400x400 RGBA TIFFs written from them
into a temporary folder. Prints a markdown table.

    python benchmarks/data_pipeline.py --images 300
"""

import argparse
import os
import tempfile
import time
from pathlib import Path

import bench_utils
import numpy as np
from PIL import Image

from keras_parcaps.data import (
    ImageSet,
    OnePerClassBatches,
    load_class_folders,
)


def _rate(fn, n):
    start = time.perf_counter()
    fn()
    return n / (time.perf_counter() - start)


def _tiff_tree(source: ImageSet, root: Path) -> ImageSet:
    paths = []
    for i, path in enumerate(source.paths):
        out = root / source.class_names[source.labels[i]] / f"{i:05d}.tiff"
        out.parent.mkdir(parents=True, exist_ok=True)
        Image.open(path).convert("RGBA").resize((400, 400)).save(out)
        paths.append(out)
    return ImageSet(paths, source.labels, source.class_names)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=300)
    parser.add_argument("--batches", type=int, default=20)
    args = parser.parse_args()
    root = bench_utils.shared_data("pbc_matek_dev")
    everything = load_class_folders(root, image_size=None, cache=False)
    pick = np.random.default_rng(0).permutation(len(everything))[: args.images]
    jpegs = everything.subset(np.sort(pick))
    n = len(jpegs)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tiffs = _tiff_tree(jpegs, Path(tmp))
        for fmt, source in (("JPEG 360x363", jpegs), ("TIFF 400x400 RGBA", tiffs)):
            for size in (400, 64):
                data = ImageSet(
                    source.paths,
                    source.labels,
                    source.class_names,
                    image_size=size,
                    cache=True,
                )
                cold = _rate(data.preload, n)
                warm = _rate(lambda d=data: d.images(), n)
                batches = OnePerClassBatches(data, args.batches, augment=True)
                per_batch = data.num_classes
                augmented = _rate(
                    lambda b=batches: [b[i] for i in range(len(b))],
                    args.batches * per_batch,
                )
                rows.append((fmt, size, cold, warm, augmented))
    print(f"{n} images, {os.cpu_count()} CPU threads for decoding\n")
    print(
        "| source | size | decode+resize (no cache) | from cache | "
        "one-per-class batches + flips/rotation (cached) |"
    )
    print("| --- | ---: | ---: | ---: | ---: |")
    for fmt, size, cold, warm, augmented in rows:
        print(
            f"| {fmt} | {size}x{size} | {cold:,.0f} img/s | {warm:,.0f} img/s | "
            f"{augmented:,.0f} img/s |"
        )


if __name__ == "__main__":
    main()
