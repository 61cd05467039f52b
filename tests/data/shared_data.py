"""The real data for tests: skip with a reason when absent, fail under CI."""

import os
from pathlib import Path

import pytest

from keras_parcaps.data import data_dir

# The shared data beside a clone of the repository, for test runs that do
# not set $PARCAPS_DATA (the package itself only reads $PARCAPS_DATA).
BESIDE_REPO = Path(__file__).resolve().parents[2].parent / "shared" / "data"


def shared_data(name: str):
    """Path of `../shared/data/<name>` (or `$PARCAPS_DATA/<name>`).

    Skips the test when the folder is absent, but fails it when the
    environment variable `CI` is `true`: CI must run every data test.
    """
    path = data_dir(name) or data_dir(name, root=BESIDE_REPO)
    if path is None:
        message = (
            f"real data {name!r} not found in $PARCAPS_DATA or ../shared/data "
            "next to the repository"
        )
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message + " (CI=true: data tests must run)")
        pytest.skip(message)
    return path
