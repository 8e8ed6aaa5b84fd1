"""Backbones: uint8 images -> float32 feature vectors, each with its own preprocessing.

Backbone specs (the ``backbone`` field of a strategy definition, or ``--backbone``):

* ``pixels`` — flattened pixels scaled to [0, 1] (no learning; a sanity baseline).
"""

from __future__ import annotations

import hashlib
import os
from typing import Protocol, runtime_checkable

import numpy as np

from clproto.data.dataset import Dataset
from clproto.errors import ConfigError


@runtime_checkable
class Backbone(Protocol):
    spec: str  # as written by the user
    identity: str  # content hash of weights + preprocessing (cache key)

    def extract(self, images: np.ndarray, *, progress: bool = True, desc: str = "") -> np.ndarray:
        """(N, H, W, C) uint8 -> (N, D) float32."""
        ...


class PixelBackbone:
    """Flattened pixels in [0, 1]."""

    spec = "pixels"
    identity = hashlib.blake2b(b"pixels-v1", digest_size=20).hexdigest()

    def extract(self, images: np.ndarray, *, progress: bool = True, desc: str = "") -> np.ndarray:
        return images.reshape(len(images), -1).astype(np.float32) / 255.0  # (N, H*W*C)


def load_backbone(spec: str, *, models_root: str | os.PathLike | None = None, where: str | None = None) -> Backbone:
    """Resolve a backbone spec (see the module docstring)."""
    if spec == "pixels":
        return PixelBackbone()
    raise ConfigError("unknown backbone", where=where, field="backbone", value=spec, expected='"pixels"')


def extract_dataset_features(backbone: Backbone, dataset: Dataset, *, progress: bool = True, **_: object) -> tuple[Dataset, str]:
    """The dataset with its images replaced by backbone features; also returns a note for the run log."""
    train = backbone.extract(dataset.train_x, progress=progress, desc=f"features {dataset.name} train")
    test = backbone.extract(dataset.test_x, progress=progress, desc=f"features {dataset.name} test")
    return dataset.with_inputs(train, test, suffix=f"[{backbone.spec}]"), "features computed (no cache)"
