"""Data: loaders, the one-image-per-class sampler, augmentation and folds.

Knows no model: everything here works on numpy arrays and files.
"""

from keras_parcaps.data.aml import (
    AML_CLASSES,
    AML_CODES,
    annotation_counts,
    class_table,
    load_aml,
    read_annotations,
)
from keras_parcaps.data.augment import augment_images, dihedral_orientations
from keras_parcaps.data.folders import load_class_folders, scan_class_folders
from keras_parcaps.data.folds import fold_split, small_data_split, stratified_folds
from keras_parcaps.data.image_set import ImageSet, decode_image
from keras_parcaps.data.load import load
from keras_parcaps.data.paths import data_dir
from keras_parcaps.data.sampling import (
    OnePerClassBatches,
    ShuffledBatches,
    to_model_input,
)
from keras_parcaps.data.synthetic_cells import (
    SYNTHETIC_CLASSES,
    SYNTHETIC_CODES,
    draw_cell,
    synthetic_cells,
)

__all__ = [
    "AML_CLASSES",
    "AML_CODES",
    "ImageSet",
    "OnePerClassBatches",
    "SYNTHETIC_CLASSES",
    "SYNTHETIC_CODES",
    "ShuffledBatches",
    "annotation_counts",
    "augment_images",
    "class_table",
    "data_dir",
    "decode_image",
    "dihedral_orientations",
    "draw_cell",
    "fold_split",
    "load",
    "load_aml",
    "load_class_folders",
    "read_annotations",
    "scan_class_folders",
    "small_data_split",
    "stratified_folds",
    "synthetic_cells",
    "to_model_input",
]
