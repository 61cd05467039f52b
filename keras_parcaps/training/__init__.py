"""Training: iteration epochs, checkpoints, resume, CV and small-data runs."""

from keras_parcaps.callbacks.precise_batch_norm import (
    batch_norm_layers,
    recalibrate_batch_norm,
)
from keras_parcaps.training import builders, experiments, saving
from keras_parcaps.training.averaged_weights import averaged_weights
from keras_parcaps.training.builders import get_builder
from keras_parcaps.training.callbacks import training_callbacks
from keras_parcaps.training.diagnose import diagnose, format_diagnosis
from keras_parcaps.training.distribution_backend import (
    data_parallel,
    initialize_processes,
    is_chief,
    process_count,
    process_index,
    replica_batch_multiple,
)
from keras_parcaps.training.experiments import (
    cross_validate,
    small_data,
    train_and_evaluate,
)
from keras_parcaps.training.run_folder import RunFolder
from keras_parcaps.training.sharded_predictor import ShardedPredictor
from keras_parcaps.training.trainer import compile_for_training, train

__all__ = [
    "RunFolder",
    "ShardedPredictor",
    "averaged_weights",
    "batch_norm_layers",
    "builders",
    "compile_for_training",
    "cross_validate",
    "data_parallel",
    "diagnose",
    "experiments",
    "format_diagnosis",
    "get_builder",
    "initialize_processes",
    "is_chief",
    "process_count",
    "process_index",
    "recalibrate_batch_norm",
    "replica_batch_multiple",
    "saving",
    "small_data",
    "train",
    "train_and_evaluate",
    "training_callbacks",
]
