"""The typed result every feature extraction returns (a leaf: the cache and the extractors both use it)."""

from __future__ import annotations

from dataclasses import dataclass

from clproto.data.dataset import Dataset


@dataclass(frozen=True, kw_only=True)
class Extraction:
    """A dataset's features and how they were obtained."""

    features: Dataset  # the dataset with its images replaced by (N, D) float32 features
    cache_hit: bool  # True when nothing was computed: every part came from the on-disk caches
    seconds: float  # wall time spent getting them (building the backbone, extracting or reading the cache)
    note: str  # one line for the run's notes, e.g. "feature cache hit (<cache>/features)"
