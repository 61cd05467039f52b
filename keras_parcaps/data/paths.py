"""Where the real data lives: `$PARCAPS_DATA` or `../shared/data` next to the repo."""

import os
from pathlib import Path

_REPO_ROOT = Path(__file__).resolve().parents[2]


def data_dir(name: str | None = None) -> Path | None:
    """Returns the shared data folder (or its sub-folder `name`), or `None`.

    Looks first at the environment variable `PARCAPS_DATA`, then at
    `../shared/data` relative to the repository root. Returns `None` when
    the folder does not exist, so callers decide whether that is an error.

    Args:
        name: Optional sub-folder, such as `"bccd_wbc"`.

    Returns:
        An existing `Path`, or `None`.

    Example:

        >>> import os, pathlib, tempfile
        >>> from unittest import mock
        >>> tmp = tempfile.TemporaryDirectory()
        >>> (pathlib.Path(tmp.name) / "bccd_wbc").mkdir()
        >>> with mock.patch.dict(os.environ, {"PARCAPS_DATA": tmp.name}):
        ...     print(data_dir("bccd_wbc") == pathlib.Path(tmp.name, "bccd_wbc"))
        ...     print(data_dir("no_such_dataset"))
        True
        None
    """
    candidates = []
    if os.environ.get("PARCAPS_DATA"):
        candidates.append(Path(os.environ["PARCAPS_DATA"]))
    candidates.append(_REPO_ROOT.parent / "shared" / "data")
    for root in candidates:
        path = root / name if name else root
        if path.is_dir():
            return path
    return None
