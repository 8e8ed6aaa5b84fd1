"""Data layer: a dataset is train/test images, integer labels and class names."""

from clproto.data.dataset import Dataset
from clproto.data.paths import cache_root, data_root, models_root
from clproto.data.sources import DATASET_KINDS, load_dataset

__all__ = ["Dataset", "DATASET_KINDS", "cache_root", "data_root", "load_dataset", "models_root"]
