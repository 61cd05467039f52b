"""Files a kill cannot corrupt: atomic writes, and models that know their classes.

Every file of a run folder is written to a temporary name in the same folder,
flushed to disk and renamed over the old one (`os.replace`, atomic on POSIX
and Windows), so a kill at any moment leaves either the old file or the new
one, never half of one.
"""

import contextlib
import json
import os
import zipfile
from pathlib import Path

# The entry that `save_model` adds to a `.keras` archive; Keras ignores it
# when loading.
METADATA_ENTRY = "keras_parcaps.json"


@contextlib.contextmanager
def _atomic_path(path):
    """Yields a temporary path beside `path`; renames it over `path` on success.

    The temporary name keeps the file's suffixes (Keras checks them) and
    starts with a dot, so listings of checkpoints never see it.
    """
    path = Path(path)
    temporary = path.with_name(f".tmp-{os.getpid()}-{path.name}")
    try:
        yield temporary
        with open(temporary, "rb+") as file:
            os.fsync(file.fileno())
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def write_text(path, text: str) -> None:
    """Writes `text` to `path` atomically (temporary file, then rename).

    Args:
        path: The file to write.
        text: Its new content.

    Example:

        >>> import pathlib, tempfile
        >>> tmp = tempfile.TemporaryDirectory()
        >>> path = pathlib.Path(tmp.name) / "run.json"
        >>> write_text(path, '{"epochs": 2}')
        >>> path.read_text(), [p.name for p in path.parent.iterdir()]
        ('{"epochs": 2}', ['run.json'])
    """
    with _atomic_path(path) as temporary:
        temporary.write_text(text)


def save_weights(model, path) -> None:
    """`model.save_weights(path)` atomically: a kill never leaves half a file.

    The file holds the model's weights and its optimizer's state, as with
    `keras.callbacks.BackupAndRestore`.

    Args:
        model: A Keras model.
        path: A `.weights.h5` file.
    """
    with _atomic_path(path) as temporary:
        model.save_weights(temporary)


def save_model(model, path, class_names=None, image_size=None) -> None:
    """`model.save(path)` atomically, with the class names and image size.

    The `.keras` file then carries what `kp.evaluation` and
    `keras-parcaps evaluate` need to read its outputs: the name of each
    output class, in order, and the image size it was trained at (read them
    back with `read_metadata`). Keras loads the file as usual.

    Args:
        model: A Keras model.
        path: A `.keras` file.
        class_names: The class of each model output, in order.
        image_size: `(height, width)` of the training images.

    Example:

        >>> import keras, pathlib, tempfile
        >>> model = keras.Sequential([keras.Input((4, 4, 3)),
        ...                           keras.layers.GlobalAveragePooling2D()])
        >>> tmp = tempfile.TemporaryDirectory()
        >>> path = pathlib.Path(tmp.name) / "model.keras"
        >>> save_model(model, path, class_names=["LYT", "NGS", "MON"],
        ...            image_size=(4, 4))
        >>> read_metadata(path)
        {'class_names': ['LYT', 'NGS', 'MON'], 'image_size': [4, 4]}
        >>> keras.saving.load_model(path).output_shape
        (None, 3)
    """
    metadata = {}
    if class_names is not None:
        metadata["class_names"] = [str(name) for name in class_names]
    if image_size is not None:
        metadata["image_size"] = [int(side) for side in image_size]
    with _atomic_path(path) as temporary:
        model.save(temporary)
        if metadata:
            with zipfile.ZipFile(temporary, "a") as archive:
                archive.writestr(METADATA_ENTRY, json.dumps(metadata))


def read_metadata(path):
    """The class names and image size saved with a `.keras` file by `save_model`.

    Args:
        path: A `.keras` file.

    Returns:
        A dict with `class_names` and `image_size` (those that were saved),
        or `None` for a file saved without them (e.g. by `model.save`).

    Raises:
        ValueError: when `path` is not a readable `.keras` archive (a
            truncated or foreign file).
        FileNotFoundError: when `path` does not exist.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Model file not found: {path}")
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
            if "config.json" not in names:
                raise ValueError(f"{path} is not a Keras model file (no config.json)")
            if METADATA_ENTRY not in names:
                return None
            return json.loads(archive.read(METADATA_ENTRY))
    except (zipfile.BadZipFile, OSError, EOFError, json.JSONDecodeError) as error:
        raise ValueError(
            f"{path} is not a readable .keras file (truncated or not a Keras "
            f"model): {error}"
        ) from None
