"""What every backbone is: uint8 images -> float32 feature vectors, with an identity for the feature cache."""

from __future__ import annotations

import hashlib
from typing import Protocol, runtime_checkable

import numpy as np

FEATURE_VERSION = "1"  # bump when extraction changes numerically, to invalidate cached features


@runtime_checkable
class Backbone(Protocol):
    spec: str  # a label: the shorthand of its table (clproto.features.backbone.shorthand)
    identity: str  # content hash of weights + preprocessing (the feature cache key)

    def extract(self, images: np.ndarray, *, progress: bool = True, desc: str = "",
                out: np.ndarray | None = None) -> np.ndarray:
        """(N, H, W, C) uint8 -> (N, D) float32, written into ``out`` when given."""
        ...


def content_hash(*parts: str) -> str:
    return hashlib.blake2b("|".join(parts).encode(), digest_size=20).hexdigest()


class PixelBackbone:
    """Flattened pixels in [0, 1]."""

    spec = "pixels"
    identity = content_hash("pixels-v1")
    dim = None  # depends on the image size

    def extract(self, images: np.ndarray, *, progress: bool = True, desc: str = "",
                out: np.ndarray | None = None) -> np.ndarray:
        feats = images.reshape(len(images), -1).astype(np.float32) / 255.0  # (N, H*W*C)
        if out is None:
            return feats
        out[...] = feats
        return out
