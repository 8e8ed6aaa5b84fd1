"""Features of a whole dataset under a backbone, and the typed result every extraction returns."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

from clproto.data.dataset import Dataset


@dataclass(frozen=True, kw_only=True)
class Extraction:
    """A dataset's features and how they were obtained."""

    features: Dataset  # the dataset with its images replaced by (N, D) float32 features
    cache_hit: bool  # True when nothing was computed: every part came from the on-disk caches
    seconds: float  # wall time spent getting them (building the backbone, extracting or reading the cache)
    note: str  # one line for the run's notes, e.g. "feature cache hit (<cache>/features)"


def extract_dataset_features(backbone, dataset: Dataset, *, progress: bool = True,
                             cache_dir: str | os.PathLike | None = None, use_cache: bool = True) -> Extraction:
    """The dataset with its images replaced by ``backbone``'s features, through the on-disk feature cache."""
    from clproto.features.cache import cached_features

    if use_cache:
        return cached_features(backbone, dataset, progress=progress, cache_dir=cache_dir)
    t0 = time.perf_counter()
    train = backbone.extract(dataset.train_x, progress=progress, desc=f"features {dataset.name} train")
    test = backbone.extract(dataset.test_x, progress=progress, desc=f"features {dataset.name} test")
    return Extraction(features=dataset.with_inputs(train, test, suffix=f"[{backbone.spec}]"), cache_hit=False,
                      seconds=time.perf_counter() - t0, note="feature cache off: miss, computed")
