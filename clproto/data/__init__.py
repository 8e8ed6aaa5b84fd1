"""Data layer: a dataset is train/test images, integer labels and class names; dataset kinds load them."""

from clproto.data.dataset import Dataset
from clproto.data.paths import cache_root, data_root, download_allowed, models_root
from clproto.data.registry import DatasetKind, DatasetKinds, DatasetRequest
from clproto.data.sources import DATASET_KINDS, DATASETS, default_dataset_kinds, load_dataset

__all__ = ["DATASETS", "DATASET_KINDS", "Dataset", "DatasetKind", "DatasetKinds", "DatasetRequest", "cache_root",
           "data_root", "default_dataset_kinds", "download_allowed", "load_dataset", "models_root"]
