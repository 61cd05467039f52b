"""Class-folder image datasets: one folder per class, decoded on demand."""

from pathlib import Path

import numpy as np

from keras_parcaps.data.image_set import ImageSet

IMAGE_EXTENSIONS = (".tif", ".tiff", ".jpg", ".jpeg", ".png", ".bmp")


def scan_class_folders(root, classes=None):
    """Lists the images of a class-folder dataset.

    Args:
        root: Folder holding one sub-folder per class.
        classes: Optional class names (sub-folder names) to keep, in the
            order that defines the integer labels. Default: every non-empty
            sub-folder, sorted by name.

    Returns:
        `(paths, labels, class_names)`: a list of file paths, an `int64`
        array of labels and the list of class names.

    Raises:
        FileNotFoundError: when `root` does not exist.
        ValueError: when there is no class folder, a requested class has no
            folder (the message lists the available ones), or a requested
            class folder holds no image.

    Example:

        >>> import pathlib, tempfile
        >>> from PIL import Image
        >>> tmp = tempfile.TemporaryDirectory()
        >>> root = pathlib.Path(tmp.name)
        >>> for name, count in (("eosinophil", 2), ("lymphocyte", 1)):
        ...     (root / name).mkdir()
        ...     for i in range(count):
        ...         Image.new("RGB", (24, 20)).save(root / name / f"{i}.png")
        >>> paths, labels, names = scan_class_folders(root)
        >>> names, labels.tolist()
        (['eosinophil', 'lymphocyte'], [0, 0, 1])
        >>> [pathlib.Path(p).name for p in paths]
        ['0.png', '1.png', '0.png']
        >>> scan_class_folders(root, classes=["lymphocyte"])[2]
        ['lymphocyte']
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"Data directory not found: {root}")
    folders = {
        entry.name: entry
        for entry in sorted(root.iterdir())
        if entry.is_dir() and not entry.name.startswith(".")
    }
    files = {name: _list_images(folder) for name, folder in folders.items()}
    if classes is None:
        classes = [name for name in folders if files[name]]
        if not classes:
            raise ValueError(
                f"No class folder with images ({', '.join(IMAGE_EXTENSIONS)}) "
                f"found in {root}."
            )
    classes = list(classes)
    for name in classes:
        if name not in folders:
            raise ValueError(
                f"Unknown class {name!r}: no folder {root / name}. Available "
                f"class folders: {', '.join(folders) or 'none'}."
            )
        if not files[name]:
            raise ValueError(f"Class folder {root / name} holds no image.")
    paths, labels = [], []
    for label, name in enumerate(classes):
        paths.extend(files[name])
        labels.extend([label] * len(files[name]))
    return paths, np.asarray(labels, dtype=np.int64), classes


def _list_images(folder):
    return [
        str(path)
        for path in sorted(folder.iterdir())
        if path.suffix.lower() in IMAGE_EXTENSIONS and not path.name.startswith(".")
    ]


def load_class_folders(
    root,
    image_size=(64, 64),
    classes=None,
    cache: bool = True,
    on_error: str = "raise",
) -> ImageSet:
    """Loads any dataset stored as one folder of images per class.

    TIFF, JPEG, PNG and BMP files are read; RGBA and grayscale images become
    RGB; every image is resized to `image_size`, so mixed sizes are fine.

    Args:
        root: Folder with one sub-folder per class.
        image_size: `(height, width)` or an int. Default `(64, 64)`.
        classes: Optional class folder names to use, in label order.
        cache: Whether to keep decoded images in memory. Default `True`.
        on_error: `"raise"` or `"skip"` for undecodable images.

    Returns:
        An `ImageSet`.

    Example:

        >>> import pathlib, tempfile
        >>> from PIL import Image
        >>> tmp = tempfile.TemporaryDirectory()
        >>> root = pathlib.Path(tmp.name)
        >>> for name, count in (("eosinophil", 2), ("lymphocyte", 1)):
        ...     (root / name).mkdir()
        ...     for i in range(count):
        ...         Image.new("RGB", (24, 20)).save(root / name / f"{i}.png")
        >>> data = load_class_folders(root, image_size=16)
        >>> data.class_names, data.class_counts().tolist()
        (['eosinophil', 'lymphocyte'], [2, 1])
        >>> data.images().shape  # every image resized to 16x16
        (3, 16, 16, 3)
    """
    paths, labels, names = scan_class_folders(root, classes)
    return ImageSet(
        paths, labels, names, image_size=image_size, cache=cache, on_error=on_error
    )
