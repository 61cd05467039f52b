"""`load`: an `ImageSet` from a folder, a shared data set name, or synthetic."""

from pathlib import Path

from keras_parcaps.data.aml import load_aml
from keras_parcaps.data.folders import load_class_folders
from keras_parcaps.data.image_set import ImageSet
from keras_parcaps.data.paths import data_dir
from keras_parcaps.data.synthetic_cells import synthetic_cells


def load(
    source=None,
    image_size=64,
    labels: str = "original",
    on_error: str = "raise",
    seed: int = 0,
    root=None,
) -> ImageSet:
    """Loads a dataset from a folder, a shared data set name, or synthetic cells.

    - `None` or `"synthetic"`: the built-in synthetic cells
      (`synthetic_cells`).
    - A folder with `annotations.dat`: AML-Cytomorphology_LMU (`load_aml`).
    - Any other folder: one sub-folder per class (`load_class_folders`).
    - A name that is no folder, such as `"bccd_wbc"`: that sub-folder of
      the shared data folder (`root`, else `$PARCAPS_DATA`; see
      `data_dir`), read as above.

    Args:
        source: Folder, shared data set name, `"synthetic"` or `None`.
        image_size: `(height, width)` or an int. Default 64.
        labels: AML labels: `"original"`, `"reannotation_1"` or
            `"reannotation_2"`.
        on_error: `"raise"` or `"skip"` for undecodable images.
        seed: Seed of the synthetic cells.
        root: Shared data folder for names; default `$PARCAPS_DATA`.

    Returns:
        An `ImageSet`.

    Raises:
        FileNotFoundError: when `source` is neither a folder nor a shared
            data set.

    Example:

        >>> import pathlib, tempfile
        >>> from PIL import Image
        >>> tmp = tempfile.TemporaryDirectory()
        >>> for name in ("eosinophil", "lymphocyte"):
        ...     (pathlib.Path(tmp.name) / "cells" / name).mkdir(parents=True)
        ...     Image.new("RGB", (24, 20)).save(
        ...         pathlib.Path(tmp.name, "cells", name, "0.png"))
        >>> load("cells", image_size=8, root=tmp.name).class_names
        ['eosinophil', 'lymphocyte']
        >>> load(image_size=16).images([0]).shape  # synthetic cells
        (1, 16, 16, 3)
        >>> load("no_such_data", root=tmp.name)
        Traceback (most recent call last):
            ...
        FileNotFoundError: Data directory not found: no_such_data
    """
    if source is None or source == "synthetic":
        return synthetic_cells(image_size=image_size, seed=seed)
    path = Path(source)
    if not path.is_dir():
        path = data_dir(str(source), root=root) or path
    if (path / "annotations.dat").is_file():
        return load_aml(path, labels=labels, image_size=image_size, on_error=on_error)
    return load_class_folders(path, image_size=image_size, on_error=on_error)
