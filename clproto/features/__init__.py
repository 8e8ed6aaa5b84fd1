"""Feature extraction, kept apart from classifier heads so frozen-feature strategies share it."""

from clproto.features.backbone import Backbone, PixelBackbone, extract_dataset_features, load_backbone, parse_backbone
from clproto.features.extraction import Extraction
from clproto.features.store import FeatureStore

__all__ = ["Backbone", "Extraction", "FeatureStore", "PixelBackbone", "extract_dataset_features", "load_backbone",
           "parse_backbone"]
