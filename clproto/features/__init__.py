"""Feature extraction, kept apart from classifier heads so frozen-feature strategies share it."""

from clproto.features.backbone import Backbone, PixelBackbone, extract_dataset_features, load_backbone

__all__ = ["Backbone", "PixelBackbone", "extract_dataset_features", "load_backbone"]
