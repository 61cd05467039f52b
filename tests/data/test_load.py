import numpy as np
import pytest
from PIL import Image

from keras_parcaps.data import AML_CODES, load


def _image(path, value, size=(9, 7), format=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((size[1], size[0], 3), value, np.uint8)).save(
        path, format=format
    )


def test_class_folders_by_path_and_by_name(tmp_path):
    for value, code in enumerate(("b", "a")):
        _image(tmp_path / "cells" / code / "x.png", 50 * (value + 1))
    by_path = load(str(tmp_path / "cells"), 8)
    assert by_path.class_names == ["a", "b"]
    assert by_path.images().shape == (2, 8, 8, 3)
    # A name that is no folder is looked up under the shared data folder.
    by_name = load("cells", (8, 6), root=tmp_path)
    assert by_name.class_names == ["a", "b"]
    assert by_name.images().shape == (2, 8, 6, 3)
    np.testing.assert_array_equal(by_name.images()[:, 0, 0, 0], [100, 50])


def test_a_folder_with_annotations_is_read_as_aml(tmp_path):
    lines = ["NGS/NGS_0001.tiff NGS nan nan", "LYT/LYT_0001.tiff LYT MON nan"]
    for value, line in enumerate(lines):
        _image(tmp_path / line.split()[0], 10 * value, format="TIFF")
    (tmp_path / "annotations.dat").write_text("\n".join(lines) + "\n")
    original = load(str(tmp_path), 16)
    assert original.class_names == list(AML_CODES)
    assert original.labels.tolist() == [AML_CODES.index(c) for c in ("NGS", "LYT")]
    relabelled = load(str(tmp_path), 16, labels="reannotation_1")
    assert relabelled.labels.tolist() == [AML_CODES.index(c) for c in ("NGS", "MON")]


def test_synthetic_cells_follow_the_seed():
    first, again, other = (load(None, 16, seed=s) for s in (0, 0, 1))
    assert first.class_names[0] == "NGS"
    assert first.images().shape[1:] == (16, 16, 3)
    np.testing.assert_array_equal(first.images([0, 1]), again.images([0, 1]))
    assert not np.array_equal(first.images([0, 1]), other.images([0, 1]))
    assert load("synthetic", 16).class_names == first.class_names


def test_unknown_source_names_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="no_such_data"):
        load("no_such_data", 8, root=tmp_path)
