import numpy as np
import pytest
from PIL import Image

from keras_parcaps.data import (
    AML_CLASSES,
    AML_CODES,
    annotation_counts,
    class_table,
    load_aml,
    read_annotations,
)
from tests.data.shared_data import shared_data

# Table 2 of the paper, typed in independently of kp.data.AML_CLASSES.
PAPER_TABLE_2 = {
    "Neutrophil (segm.)": 8484,
    "Neutrophil (band)": 109,
    "Lymphocyte (typ.)": 3937,
    "Lymphocyte (atyp.)": 11,
    "Monocyte": 1789,
    "Eosinophil": 424,
    "Basophil": 79,
    "Myeloblast": 3268,
    "Promyelocyte": 70,
    "Promyelocyte (bil.)": 18,
    "Myelocyte": 42,
    "Metamyelocyte": 15,
    "Monoblast": 26,
    "Erythroblast": 78,
    "Smudge cell": 15,
}


def _annotations():
    return shared_data("matek_metadata") / "annotations.dat"


def test_class_table_in_paper_order():
    table = class_table()
    assert len(table) == 15
    assert [code for code, _ in table] == list(AML_CODES)
    assert table[0] == ("NGS", "Neutrophil (segmented)")
    assert table[-1] == ("KSC", "Smudge cell")
    assert class_table(["KSC", "NGS"]) == [table[0], table[-1]]


def test_unknown_code_lists_valid_codes():
    with pytest.raises(ValueError, match="Unknown AML class code 'XYZ'.*NGS, NGB"):
        class_table(["XYZ"])


def test_counts_equal_paper_table_2():
    counts = annotation_counts(_annotations())
    assert list(counts) == list(AML_CODES)
    assert list(counts.values()) == list(PAPER_TABLE_2.values())
    assert sum(counts.values()) == 18365
    assert [n for _, _, n in AML_CLASSES] == list(PAPER_TABLE_2.values())


def _raw_lines():
    return [line.split() for line in _annotations().read_text().splitlines() if line]


def test_reannotation_switching_against_raw_file():
    lines = _raw_lines()
    for column, source in ((2, "reannotation_1"), (3, "reannotation_2")):
        labels = read_annotations(_annotations(), source)
        unc = sum(fields[column] == "UNC" for fields in lines)
        assert unc > 0
        assert len(labels) == len(lines) - unc
        for fields in lines:
            if fields[column] == "UNC":
                assert fields[0] not in labels
            elif fields[column] == "nan":
                assert labels[fields[0]] == fields[1]
            else:
                assert labels[fields[0]] == fields[column]
    changed = [f for f in lines if f[2] not in ("nan", "UNC", f[1])]
    assert changed, "the file has re-annotations that change the label"
    original = read_annotations(_annotations())
    assert all(original[f[0]] == f[1] for f in changed)


@pytest.fixture
def aml_tree(tmp_path):
    """A small AML layout: TIFFs made from real JPEGs, real annotation lines."""
    jpegs = sorted((shared_data("pbc_matek_dev") / "NGS").glob("*.jpg"))[:4]
    lines = _raw_lines()
    chosen = []
    for code in AML_CODES:
        chosen += [f for f in lines if f[1] == code][:2]
    chosen += [f for f in lines if f[2] not in ("nan", "UNC", f[1])][:2]
    chosen += [f for f in lines if f[2] == "UNC"][:1]
    for i, fields in enumerate(chosen):
        path = tmp_path / fields[0]
        path.parent.mkdir(exist_ok=True)
        image = Image.open(jpegs[i % len(jpegs)]).convert("RGB").resize((400, 400))
        if i % 3 == 0:
            image = image.convert("RGBA")  # real TIFFs are often RGBA
        image.save(path, format="TIFF")
    (tmp_path / "annotations.dat").write_text(
        "\n".join(" ".join(f) for f in chosen) + "\n"
    )
    return tmp_path, chosen


def test_load_aml_tree(aml_tree):
    root, chosen = aml_tree
    data = load_aml(root, image_size=32)
    assert data.class_names == list(AML_CODES)
    assert data.full_names[0] == "Neutrophil (segmented)"
    assert len(data) == len(chosen)
    expected = [AML_CODES.index(f[1]) for f in chosen]
    assert data.labels.tolist() == expected
    images = data.images()
    assert images.shape == (len(chosen), 32, 32, 3)
    assert images.dtype == np.uint8


def test_load_aml_reannotated(aml_tree):
    root, chosen = aml_tree
    data = load_aml(root, labels="reannotation_1", image_size=16)
    kept = [f for f in chosen if f[2] != "UNC"]
    assert len(data) == len(kept) == len(chosen) - 1
    expected = [AML_CODES.index(f[1] if f[2] == "nan" else f[2]) for f in kept]
    assert data.labels.tolist() == expected
    assert sorted(data.labels.tolist()) != sorted(AML_CODES.index(f[1]) for f in kept)


def test_load_aml_subset_of_classes(aml_tree):
    root, _ = aml_tree
    data = load_aml(root, classes=["LYT", "NGS"], image_size=16)
    assert data.class_names == ["NGS", "LYT"]  # the paper's order
    assert set(data.labels.tolist()) == {0, 1}
    with pytest.raises(ValueError, match="Valid codes: NGS"):
        load_aml(root, classes=["NGS", "FOO"])


def test_load_aml_bad_input(aml_tree, tmp_path_factory):
    root, chosen = aml_tree
    with pytest.raises(FileNotFoundError, match="not found"):
        load_aml(root / "nope")
    empty = tmp_path_factory.mktemp("empty")
    with pytest.raises(FileNotFoundError, match="annotations.dat"):
        load_aml(empty)
    (root / chosen[0][0]).unlink()
    with pytest.raises(FileNotFoundError, match="missing"):
        load_aml(root)
    data = load_aml(root, on_error="skip", image_size=16)
    assert len(data) == len(chosen) - 1
    assert data.skipped == [str(root / chosen[0][0])]


def test_bad_annotation_line(tmp_path):
    (tmp_path / "annotations.dat").write_text("A/a.tiff NGS nan\n")
    with pytest.raises(ValueError, match="line 1: expected 4 fields"):
        read_annotations(tmp_path / "annotations.dat")
    (tmp_path / "annotations.dat").write_text("A/a.tiff FOO nan nan\n")
    with pytest.raises(ValueError, match="unknown class code 'FOO'.*Valid codes"):
        read_annotations(tmp_path / "annotations.dat")
    with pytest.raises(ValueError, match="labels"):
        read_annotations(tmp_path / "annotations.dat", labels="reannotation_3")


def test_annotation_paths_leaving_the_root_are_rejected(tmp_path):
    root = tmp_path / "aml"
    (root / "NGS").mkdir(parents=True)
    Image.new("RGB", (8, 8)).save(root / "NGS" / "NGS_0001.tiff")
    Image.new("RGB", (8, 8)).save(tmp_path / "outside.tiff")
    for listed in (
        "../outside.tiff",
        str(tmp_path / "outside.tiff"),
        "NGS/../../outside.tiff",
    ):
        (root / "annotations.dat").write_text(
            f"NGS/NGS_0001.tiff NGS nan nan\n{listed} NGS nan nan\n"
        )
        with pytest.raises(ValueError, match="outside the dataset folder"):
            load_aml(root, image_size=8)
