"""Images and class names for `keras-parcaps explain` (a file or a folder)."""

import json
from pathlib import Path

import numpy as np

from keras_parcaps.data.folders import IMAGE_EXTENSIONS
from keras_parcaps.data.image_set import decode_image


def _is_image(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in IMAGE_EXTENSIONS


def read_images(source, image_size, class_names, max_images=None):
    """`(images, labels, stems)` from one image file or a folder.

    A folder of class sub-folders gives labels where a sub-folder is named
    after one of `class_names` (else the label is unknown, -1); a flat folder
    gives its images without labels.
    """
    source = Path(source)
    if _is_image(source):
        paths, labels = [source], [-1]
    elif source.is_dir():
        paths = sorted(p for p in source.iterdir() if _is_image(p))
        labels = [-1] * len(paths)
        for folder in sorted(p for p in source.iterdir() if p.is_dir()):
            inner = sorted(p for p in folder.iterdir() if _is_image(p))
            label = class_names.index(folder.name) if folder.name in class_names else -1
            paths += inner
            labels += [label] * len(inner)
    else:
        raise FileNotFoundError(f"Image or folder not found: {source}")
    if not paths:
        raise ValueError(f"No image ({', '.join(IMAGE_EXTENSIONS)}) in {source}")
    # One image of each folder in turn, so that the first pages (and the
    # first `max_images`) cover every class.
    order = _round_robin(labels)[:max_images]
    paths = [paths[i] for i in order]
    labels = [labels[i] for i in order]
    images = np.stack([decode_image(p, image_size) for p in paths])
    stems = [
        f"{i:03d}_{p.stem}"
        if p.parent == source
        else f"{i:03d}_{p.parent.name}_{p.stem}"
        for i, p in enumerate(paths)
    ]
    labels = np.asarray(labels)
    return images, (labels if (labels >= 0).all() else None), stems


def _round_robin(labels):
    """Indices taking one image of each label in turn."""
    labels = np.asarray(labels)
    queues = [list(np.flatnonzero(labels == lab)) for lab in np.unique(labels)]
    order = []
    while any(queues):
        for queue in queues:
            if queue:
                order.append(queue.pop(0))
    return order


def class_names_for(model_file, num_classes, given=None):
    """The model's class names: `given`, else those saved in the `.keras`
    file by `kp.training.train` (or in the `run.json` beside it), else `"0"`,
    `"1"`, ..."""
    from keras_parcaps.training.saving import read_metadata

    if given:
        names = [name.strip() for name in given.split(",")]
    else:
        names = (read_metadata(model_file) or {}).get("class_names")
        run = Path(model_file).parent / "run.json"
        if not names and run.is_file():
            info = json.loads(run.read_text())
            names = info.get("fingerprint", info).get("classes")
        names = names or [str(c) for c in range(num_classes)]
    if len(names) != num_classes:
        raise ValueError(
            f"The model has {num_classes} classes; got {len(names)} class names "
            f"({', '.join(names)})"
        )
    return names
