"""The AML-Cytomorphology_LMU dataset (Matek et al. 2019) and its class table."""

from collections import Counter
from pathlib import Path

import numpy as np

from keras_parcaps._checks import check_choice
from keras_parcaps.data.image_set import ImageSet

# Code, full name and image count of each class, in the order of Table 2 of
# the paper (Vigueras-Guillen et al. 2021); counts use the original labels.
AML_CLASSES = (
    ("NGS", "Neutrophil (segmented)", 8484),
    ("NGB", "Neutrophil (band)", 109),
    ("LYT", "Lymphocyte (typical)", 3937),
    ("LYA", "Lymphocyte (atypical)", 11),
    ("MON", "Monocyte", 1789),
    ("EOS", "Eosinophil", 424),
    ("BAS", "Basophil", 79),
    ("MYO", "Myeloblast", 3268),
    ("PMO", "Promyelocyte", 70),
    ("PMB", "Promyelocyte (bilobed)", 18),
    ("MYB", "Myelocyte", 42),
    ("MMZ", "Metamyelocyte", 15),
    ("MOB", "Monoblast", 26),
    ("EBO", "Erythroblast", 78),
    ("KSC", "Smudge cell", 15),
)
AML_CODES = tuple(code for code, _, _ in AML_CLASSES)
AML_NAMES = {code: name for code, name, _ in AML_CLASSES}

# Which column of annotations.dat gives the label.
LABEL_SOURCES = ("original", "reannotation_1", "reannotation_2")
UNASSIGNABLE = "UNC"


def class_table(codes=None):
    """The class table: `[(code, full name), ...]` in the paper's order.

    Args:
        codes: Optional class codes to keep (their order is the paper's).

    Raises:
        ValueError: for an unknown code, listing the valid ones.

    Example:

        >>> class_table(["LYT", "NGS"])
        [('NGS', 'Neutrophil (segmented)'), ('LYT', 'Lymphocyte (typical)')]
        >>> len(class_table())
        15
    """
    codes = AML_CODES if codes is None else _check_codes(codes)
    return [(code, AML_NAMES[code]) for code in AML_CODES if code in codes]


def _check_codes(codes):
    codes = list(codes)
    for code in codes:
        if code not in AML_NAMES:
            raise ValueError(
                f"Unknown AML class code {code!r}. Valid codes: {', '.join(AML_CODES)}."
            )
    return codes


def read_annotations(path, labels: str = "original"):
    r"""Reads `annotations.dat`: one `path label reann_1 reann_2` line per image.

    With `labels="original"` every image keeps the label of its folder. With
    `"reannotation_1"` or `"reannotation_2"` an image takes that column's
    label where there is one (`nan` means "not re-annotated": the original
    stays) and images marked `UNC` (unassignable) are dropped.

    Args:
        path: The `annotations.dat` file.
        labels: `"original"`, `"reannotation_1"` or `"reannotation_2"`.

    Returns:
        A dict `{relative image path: class code}` in file order.

    Example:

        >>> import pathlib, tempfile
        >>> tmp = tempfile.TemporaryDirectory()
        >>> path = pathlib.Path(tmp.name) / "annotations.dat"
        >>> _ = path.write_text(
        ...     "NGS/NGS_0001.tiff NGS nan nan\n"
        ...     "LYT/LYT_0001.tiff LYT MON nan\n"
        ...     "MON/MON_0001.tiff MON UNC nan\n"
        ... )
        >>> read_annotations(path)
        {'NGS/NGS_0001.tiff': 'NGS', 'LYT/LYT_0001.tiff': 'LYT',
         'MON/MON_0001.tiff': 'MON'}
        >>> read_annotations(path, labels="reannotation_1")
        {'NGS/NGS_0001.tiff': 'NGS', 'LYT/LYT_0001.tiff': 'MON'}
    """
    check_choice("labels", labels, LABEL_SOURCES)
    column = LABEL_SOURCES.index(labels) + 1
    result = {}
    with open(path) as file:
        for number, line in enumerate(file, 1):
            fields = line.split()
            if not fields:
                continue
            if len(fields) != 4:
                raise ValueError(
                    f"{path}, line {number}: expected 4 fields (path, label, two "
                    f"re-annotations), got {len(fields)}: {line.strip()!r}"
                )
            label = fields[column]
            if label == "nan":
                label = fields[1]
            if label == UNASSIGNABLE:
                continue
            if label not in AML_NAMES:
                raise ValueError(
                    f"{path}, line {number}: unknown class code {label!r}. "
                    f"Valid codes: {', '.join(AML_CODES)}."
                )
            result[fields[0]] = label
    return result


def annotation_counts(path, labels: str = "original"):
    r"""Images per class code in `annotations.dat`, in the paper's order.

    Args:
        path: The `annotations.dat` file.
        labels: `"original"`, `"reannotation_1"` or `"reannotation_2"`
            (see `read_annotations`).

    Returns:
        A dict `{code: count}` over all 15 codes, zeros included.

    Example:

        >>> import pathlib, tempfile
        >>> tmp = tempfile.TemporaryDirectory()
        >>> path = pathlib.Path(tmp.name) / "annotations.dat"
        >>> _ = path.write_text(
        ...     "NGS/NGS_0001.tiff NGS nan nan\n"
        ...     "LYT/LYT_0001.tiff LYT MON nan\n"
        ...     "MON/MON_0001.tiff MON UNC nan\n"
        ... )
        >>> counts = annotation_counts(path, labels="reannotation_1")
        >>> {code: n for code, n in counts.items() if n}
        {'NGS': 1, 'MON': 1}
        >>> len(counts)
        15
    """
    counts = Counter(read_annotations(path, labels).values())
    return {code: counts.get(code, 0) for code in AML_CODES}


def load_aml(
    root,
    labels: str = "original",
    classes=None,
    image_size=(64, 64),
    cache: bool = True,
    on_error: str = "raise",
    annotations=None,
) -> ImageSet:
    r"""Loads the AML-Cytomorphology_LMU layout.

    `root` holds the 15 class folders (`NGS/NGS_0001.tiff`, ...) and
    `annotations.dat`. Labels come from `annotations.dat` (original or one of
    its two re-annotations, see `read_annotations`); images marked `UNC` are
    excluded; files not listed there are ignored, and listed files that are
    missing are an error unless `on_error="skip"`.

    Args:
        root: The dataset folder.
        labels: `"original"` (the paper's Table 2), `"reannotation_1"` or
            `"reannotation_2"`.
        classes: Optional class codes to keep; default all 15. Labels follow
            the paper's Table 2 order of the kept codes.
        image_size: Model input `(height, width)` or an int; default 64.
        cache: Whether to keep decoded images in memory.
        on_error: `"raise"` or `"skip"` for missing or undecodable images.
        annotations: Path of `annotations.dat`; default `root/annotations.dat`.

    Returns:
        An `ImageSet` whose `class_names` are codes and `full_names` the
        long names.

    Example:

        >>> # On the real download: load_aml("AML-Cytomorphology_LMU").
        >>> # Here a tiny tree of the same layout:
        >>> import pathlib, tempfile
        >>> from PIL import Image
        >>> tmp = tempfile.TemporaryDirectory()
        >>> root = pathlib.Path(tmp.name)
        >>> for code in ("NGS", "LYT"):
        ...     (root / code).mkdir()
        ...     Image.new("RGB", (40, 40)).save(root / code / f"{code}_0001.tiff")
        >>> _ = (root / "annotations.dat").write_text(
        ...     "NGS/NGS_0001.tiff NGS nan nan\n"
        ...     "LYT/LYT_0001.tiff LYT nan nan\n"
        ... )
        >>> data = load_aml(root, classes=["LYT", "NGS"], image_size=16)
        >>> data.class_names, data.full_names[0], data.labels.tolist()
        (['NGS', 'LYT'], 'Neutrophil (segmented)', [0, 1])
        >>> data.images().shape
        (2, 16, 16, 3)
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"Data directory not found: {root}")
    annotations = Path(annotations) if annotations else root / "annotations.dat"
    if not annotations.is_file():
        raise FileNotFoundError(
            f"No annotations file {annotations}: the AML-Cytomorphology_LMU "
            "layout has annotations.dat beside the class folders."
        )
    table = class_table(classes)
    codes = [code for code, _ in table]
    index = {code: i for i, code in enumerate(codes)}
    paths, label_ids, missing = [], [], []
    for relative, code in read_annotations(annotations, labels).items():
        if code not in index:
            continue
        path = root / relative
        # Lexically: class folders may be links to another disk.
        if Path(relative).is_absolute() or ".." in Path(relative).parts:
            raise ValueError(
                f"{annotations} lists {relative!r}, a path outside the dataset "
                f"folder {root}; annotation paths must stay inside it"
            )
        if not path.is_file():
            missing.append(str(path))
            continue
        paths.append(path)
        label_ids.append(index[code])
    if missing and on_error == "raise":
        raise FileNotFoundError(
            f"{len(missing)} image(s) listed in {annotations} are missing, "
            f"e.g. {missing[0]}. Use on_error='skip' to ignore them."
        )
    if not paths:
        raise ValueError(f"No image of classes {codes} found under {root}.")
    data = ImageSet(
        paths,
        np.asarray(label_ids),
        codes,
        image_size=image_size,
        cache=cache,
        on_error=on_error,
        full_names=[name for _, name in table],
    )
    data.skipped = missing + data.skipped
    return data
