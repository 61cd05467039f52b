"""The real data for tests: skip with a reason when absent, fail under CI."""

import os

import pytest

from keras_parcaps.data import data_dir


def shared_data(name: str):
    """Path of `../shared/data/<name>` (or `$PARCAPS_DATA/<name>`).

    Skips the test when the folder is absent, but fails it when the
    environment variable `CI` is `true`: CI must run every data test.
    """
    path = data_dir(name)
    if path is None:
        message = (
            f"real data {name!r} not found in $PARCAPS_DATA or ../shared/data "
            "next to the repository"
        )
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message + " (CI=true: data tests must run)")
        pytest.skip(message)
    return path
