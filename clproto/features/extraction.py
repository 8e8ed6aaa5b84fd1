"""Features of a whole dataset under a backbone (the typed result is :class:`~clproto.features.result.Extraction`)."""

from __future__ import annotations

import os
import time
from clproto.context import RunContext
from clproto.data.dataset import Dataset
from clproto.features.cache import cached_features
from clproto.features.device import extract_with
from clproto.features.result import Extraction


def extract_dataset_features(backbone, dataset: Dataset, *, progress: bool = True,
                             cache_dir: str | os.PathLike | None = None, use_cache: bool = True,
                             context: RunContext | None = None) -> Extraction:
    """The dataset with its images replaced by ``backbone``'s features, through the on-disk feature cache,
    extracted on ``context``'s device and precision (None: CPU, fp32; see :mod:`clproto.features.device`)."""
    if use_cache:
        return cached_features(backbone, dataset, progress=progress, cache_dir=cache_dir, context=context)
    t0 = time.perf_counter()
    train = extract_with(backbone, dataset.train_x, context=context, progress=progress,
                         desc=f"features {dataset.name} train")
    test = extract_with(backbone, dataset.test_x, context=context, progress=progress,
                        desc=f"features {dataset.name} test")
    return Extraction(features=dataset.with_inputs(train, test, suffix=f"[{backbone.spec}]"), cache_hit=False,
                      seconds=time.perf_counter() - t0, note="feature cache off: miss, computed")
