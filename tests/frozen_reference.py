"""Helpers for checking frozen-feature strategies against reference implementations written in the tests.

``feature_dataset`` turns the tiny synthetic images into small non-negative feature vectors (a fixed
random projection of the pixels, absolute value: ReLU-like features in a few dimensions, so class
covariances are meaningful); ``run_on_features`` runs a strategy definition through clproto's Runner
on them; ``reference_matrix`` builds the accuracy matrix A[t][j] of a reference from its scores.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from clproto.config import strategy_from_dict
from clproto.data.dataset import Dataset
from clproto.features.extraction import Extraction
from clproto.runner import Runner
from clproto.scenarios import ScenarioConfig
from clproto.scenarios.scenario import Experience, Scenario, build_scenario
from clproto.strategies import REGISTRY


def feature_dataset(images: Dataset, *, dim: int = 6, seed: int = 0) -> Dataset:
    """(N, dim) float32 features |pixels/255 @ R| with R seeded Gaussian; dim = 0 keeps all pixels."""
    flat_tr = images.train_x.reshape(len(images.train_x), -1).astype(np.float64) / 255.0
    flat_te = images.test_x.reshape(len(images.test_x), -1).astype(np.float64) / 255.0
    if dim == 0:
        return images.with_inputs(flat_tr.astype(np.float32), flat_te.astype(np.float32))
    r = np.random.default_rng(seed).normal(size=(flat_tr.shape[1], dim)) / np.sqrt(flat_tr.shape[1])
    return images.with_inputs(np.abs(flat_tr @ r).astype(np.float32), np.abs(flat_te @ r).astype(np.float32))


def run_on_features(images: Dataset, feats: Dataset, scenario: ScenarioConfig, definition: dict, *, seed: int = 0):
    """A clproto run of ``definition`` on ``scenario`` (dataset "tiny") whose backbone features are ``feats``."""
    strategy = strategy_from_dict({"backbone": "pixels", **definition}, REGISTRY)
    runner = Runner(progress=False, datasets={"tiny": images})
    runner.feature_store.put(images, strategy.backbone,
                             Extraction(features=feats, cache_hit=False, seconds=0.0, note="features given by the test"))
    return runner.run(scenario, strategy, seed=seed)


def scenario_on(feats: Dataset, config: ScenarioConfig, *, seed: int = 0) -> Scenario:
    return build_scenario(config, feats, seed=seed)


def reference_matrix(sc: Scenario, fit: Callable[[Experience], None],
                     scores: Callable[[np.ndarray, list[int]], np.ndarray]) -> list[list[float | None]]:
    """A[t][j]: after ``fit`` on experience t, accuracy on experience j's test set of argmax over seen classes.

    ``scores(x, seen)`` returns (N, len(seen)) scores of the rows of ``x`` for the classes ``seen``.
    """
    out = []
    for t, exp in enumerate(sc):
        fit(exp)
        seen = list(exp.seen_classes)
        row: list[float | None] = [None] * len(sc)
        for j in range(t + 1):
            idx = sc[j].test_indices
            pred = np.asarray(seen)[np.argmax(scores(sc.dataset.test_x[idx].astype(np.float64), seen), axis=1)]
            row[j] = float(np.mean(pred == sc.dataset.test_y[idx]))
        out.append(row)
    return out


def assert_matrices_equal(got: list, want: list, tol: float = 1e-6) -> None:
    assert len(got) == len(want)
    for g_row, w_row in zip(got, want):
        assert [v is None for v in g_row] == [v is None for v in w_row], (g_row, w_row)
        for g, w in zip(g_row, w_row):
            if w is not None:
                assert abs(g - w) <= tol, (got, want)
