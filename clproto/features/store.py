"""The runner's feature store: every backbone kind's features, computed once per process.

Each entry is one (dataset, backbone table) — plus, for a kind that ``needs_scenario`` (``base-trained``),
what of the scenario it depends on (the base session) — and holds an
:class:`~clproto.features.extraction.Extraction`. Underneath, the on-disk caches
(:mod:`clproto.features.cache`, and the base-trained weights) make a second process cheap too.
"""

from __future__ import annotations

import time
from typing import Any

from clproto.data.dataset import Dataset
from clproto.errors import ConfigError
from clproto.features.backbone.kinds import BuildContext, kind_of
from clproto.features.backbone.shorthand import shorthand
from clproto.features.extraction import Extraction, extract_dataset_features


class FeatureStore:
    """Features by (dataset, backbone table[, scenario part]); ``get`` computes what is missing."""

    def __init__(self) -> None:
        self._entries: dict[tuple, Extraction] = {}

    def key(self, dataset: Dataset, backbone: Any, *, scenario: Any = None, where: str | None = None) -> tuple:
        """The entry of ``backbone``'s features of ``dataset`` (a kind that needs_scenario: of ``scenario``'s)."""
        kind = kind_of(backbone)
        if not kind.needs_scenario:
            return (dataset.identity, backbone)
        if scenario is None:
            raise ConfigError(f"a {kind.name} backbone needs a scenario", where=where, field="backbone",
                              value=shorthand(backbone))
        return (scenario.dataset.identity, backbone, kind.scenario_key(backbone, scenario, where=where))

    def get(self, dataset: Dataset, backbone: Any, *, context: BuildContext) -> Extraction:
        """The features, from this store, else built and extracted (through the disk caches) and kept."""
        key = self.key(dataset, backbone, scenario=context.scenario, where=context.where)
        if key not in self._entries:
            self._entries[key] = self._compute(context.scenario.dataset if kind_of(backbone).needs_scenario else dataset,
                                               backbone, context)
        return self._entries[key]

    def put(self, dataset: Dataset, backbone: Any, extraction: Extraction, *, scenario: Any = None) -> None:
        """Features computed elsewhere (tests, benchmarks, an API user's own): later ``get`` calls return them."""
        self._entries[self.key(dataset, backbone, scenario=scenario)] = extraction

    def check(self, backbone: Any, *, context: BuildContext) -> None:
        """Load a pretrained backbone, so a bad file or architecture fails before any run.

        A kind that needs_scenario is built when its run starts (its table was checked when it was read).
        """
        kind = kind_of(backbone)
        if not kind.needs_scenario:
            kind.build(backbone, context)

    @staticmethod
    def _compute(dataset: Dataset, backbone: Any, context: BuildContext) -> Extraction:
        if not dataset.is_images:
            raise ConfigError("the dataset holds no images to extract features from", where=context.where,
                              field="backbone")
        t0 = time.perf_counter()
        built = kind_of(backbone).build(backbone, context)
        got = extract_dataset_features(built.backbone, dataset, progress=context.progress, cache_dir=context.cache_dir,
                                       context=context.run)
        return Extraction(features=got.features, cache_hit=got.cache_hit and not built.computed,
                          seconds=time.perf_counter() - t0,
                          note=f"{built.note}; {got.note}" if built.note else got.note)
