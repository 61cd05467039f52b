"""Where the shared real data lives: an explicit folder or `$PARCAPS_DATA`."""

import os
from pathlib import Path

ENV_VARIABLE = "PARCAPS_DATA"


def data_dir(name: str | None = None, root=None) -> Path | None:
    """Returns the shared data folder (or its sub-folder `name`), or `None`.

    The folder is `root` when given, else the environment variable
    `PARCAPS_DATA`. Returns `None` when neither is set or the folder does
    not exist, so callers decide whether that is an error.

    Args:
        name: Optional sub-folder, such as `"bccd_wbc"`.
        root: Optional shared data folder; default `$PARCAPS_DATA`.

    Returns:
        An existing `Path`, or `None`.

    Example:

        >>> import os, pathlib, tempfile
        >>> from unittest import mock
        >>> tmp = tempfile.TemporaryDirectory()
        >>> (pathlib.Path(tmp.name) / "bccd_wbc").mkdir()
        >>> data_dir("bccd_wbc", root=tmp.name) == pathlib.Path(tmp.name, "bccd_wbc")
        True
        >>> with mock.patch.dict(os.environ, {"PARCAPS_DATA": tmp.name}):
        ...     print(data_dir("bccd_wbc") == pathlib.Path(tmp.name, "bccd_wbc"))
        ...     print(data_dir("no_such_dataset"))
        True
        None
    """
    if root is None:
        root = os.environ.get(ENV_VARIABLE) or None
    if root is None:
        return None
    path = Path(root) / name if name else Path(root)
    return path if path.is_dir() else None
