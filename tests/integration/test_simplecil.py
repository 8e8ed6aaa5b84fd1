"""SimpleCIL (Zhou et al. 2023) is a definition, not code: `nmc` with cosine scoring of raw-feature means."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from clproto.config import load_strategy, read_toml
from clproto.scenarios import ScenarioConfig
from clproto.strategies import REGISTRY
from conftest import make_tiny_dataset
from frozen_reference import assert_matrices_equal, feature_dataset, reference_matrix, run_on_features, scenario_on

ROOT = Path(__file__).resolve().parents[2]
DEFINITION = {k: v for k, v in read_toml(ROOT / "strategies" / "simplecil.toml")["strategy"].items() if k != "backbone"}


def test_definition_is_nmc_cosine_on_raw_means():
    st = load_strategy(ROOT / "strategies" / "simplecil.toml", REGISTRY)
    assert st.config.implementation == "nmc" and st.params.metric == "cosine" and st.params.normalize is False


@pytest.mark.parametrize("kind", ["class-incremental", "few-shot"])
def test_accuracy_matrix_equals_numpy_reference(kind):
    images = make_tiny_dataset(train_per_class=30, test_per_class=8)
    feats = feature_dataset(images, dim=6)
    cfg = (ScenarioConfig(name="t", dataset="tiny", increment=2) if kind == "class-incremental" else
           ScenarioConfig(name="t", dataset="tiny", kind="few-shot", base_classes=2, ways=2, shots=3))
    result = run_on_features(images, feats, cfg, DEFINITION)
    protos = {}

    def fit(exp):  # SimpleCIL: the prototype is the mean of the class's raw features
        for c in exp.classes:
            protos[c] = feats.train_x[exp.train_indices][feats.train_y[exp.train_indices] == c].astype(np.float64).mean(0)

    def scores(x, seen):  # cosine classifier with the prototypes as weights
        w = np.stack([protos[c] / np.linalg.norm(protos[c]) for c in seen])
        return (x / np.linalg.norm(x, axis=1, keepdims=True)) @ w.T

    want = reference_matrix(scenario_on(feats, cfg), fit, scores)
    assert_matrices_equal(result.accuracy_matrix, want)
    if kind == "few-shot":  # and it is TEEN's uncalibrated baseline (strategies/protonet.toml, alpha = 0)
        teen = run_on_features(images, feats, cfg, {"name": "protonet", "implementation": "teen", "params": {"alpha": 0.0}})
        assert_matrices_equal(teen.accuracy_matrix, want)
