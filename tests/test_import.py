"""`import keras_parcaps` has no side effect on the user's session."""

import os
import subprocess
import sys

import keras

from keras_parcaps.data import data_dir
from tests.markers import once

# The user's matplotlib backend (MPLBACKEND=svg) survives the import and a
# plot, and the plot leaves no pyplot figure open.
_CHECK = """
import sys
import keras_parcaps
import matplotlib
assert matplotlib.get_backend() == "svg", matplotlib.get_backend()
names = ["a", "b"]
keras_parcaps.evaluation.plot_confusion_matrix([[1, 0], [0, 1]], names, sys.argv[1])
assert matplotlib.get_backend() == "svg", matplotlib.get_backend()
import matplotlib.pyplot as plt
assert not plt.get_fignums(), "a figure was left open in pyplot"
"""


# A fresh interpreter costs 10-20 s of CPU for its imports; what the import
# does to matplotlib does not depend on the backend.
@once("what `import keras_parcaps` does to matplotlib, in a fresh interpreter")
def test_import_leaves_matplotlib_alone(tmp_path):
    env = {**os.environ, "KERAS_BACKEND": keras.backend.backend(), "MPLBACKEND": "svg"}
    result = subprocess.run(
        [sys.executable, "-c", _CHECK, str(tmp_path / "cm.png")],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert (tmp_path / "cm.png").stat().st_size > 0


def test_data_dir_reads_only_the_argument_and_environment(monkeypatch, tmp_path):
    monkeypatch.delenv("PARCAPS_DATA", raising=False)
    assert data_dir() is None and data_dir("bccd_wbc") is None
    (tmp_path / "bccd_wbc").mkdir()
    assert data_dir("bccd_wbc", root=tmp_path) == tmp_path / "bccd_wbc"
    monkeypatch.setenv("PARCAPS_DATA", str(tmp_path))
    assert data_dir() == tmp_path
