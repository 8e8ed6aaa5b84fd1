"""SLDA (Hayes & Kanan 2020): the batched update against the paper's per-sample rule, and whole runs against a
NumPy re-implementation written from the paper."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from clproto.config import load_strategy, strategy_from_dict
from clproto.errors import ConfigError
from clproto.scenarios import ScenarioConfig
from clproto.strategies import REGISTRY
from clproto.strategies.slda import SLDA, SLDAConfig
from conftest import make_tiny_dataset
from frozen_reference import assert_matrices_equal, feature_dataset, reference_matrix, run_on_features, scenario_on

ROOT = Path(__file__).resolve().parents[2]


class PaperSLDA:
    """Hayes & Kanan's update and LDA scores, one sample at a time, in NumPy float64."""

    def __init__(self, num_classes: int, dim: int, eps: float = 1e-4) -> None:
        self.mu = np.zeros((num_classes, dim))
        self.c = np.zeros(num_classes)
        self.sigma = np.ones((dim, dim))  # any start: it is multiplied by t = 0 in the first update
        self.t = 0
        self.eps = eps

    def fit_one(self, z: np.ndarray, k: int) -> None:
        d = z - self.mu[k]
        delta = self.t * np.outer(d, d) / (self.t + 1)
        self.sigma = (self.t * self.sigma + delta) / (self.t + 1)
        self.mu[k] = (self.c[k] * self.mu[k] + z) / (self.c[k] + 1)
        self.c[k] += 1
        self.t += 1

    def scores(self, x: np.ndarray, seen: list[int]) -> np.ndarray:
        lam = np.linalg.inv((1 - self.eps) * self.sigma + self.eps * np.eye(len(self.sigma)))
        mu = self.mu[seen]  # (S, D)
        w = lam @ mu.T  # (D, S)
        return x @ w - 0.5 * np.sum(mu.T * w, axis=0)


def test_batched_update_equals_the_per_sample_rule():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(157, 5)) * rng.uniform(0.5, 3, size=5) + 1.0
    y = rng.integers(0, 4, size=157)  # classes interleaved in the stream
    ref = PaperSLDA(4, 5)
    for z, k in zip(x, y):
        ref.fit_one(z, int(k))
    for cuts in ([157], [1, 1, 50, 105], [13] * 12 + [1]):  # the stream cut anywhere
        slda = SLDA(num_classes=4)
        start = 0
        for size in cuts:
            slda.partial_fit(torch.from_numpy(x[start:start + size]), torch.from_numpy(y[start:start + size]))
            start += size
        assert start == 157
        np.testing.assert_allclose(slda.covariance.numpy(), ref.sigma, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(slda.means.numpy(), ref.mu, rtol=1e-10, atol=1e-12)
        assert slda.num_updates == ref.t


@pytest.mark.parametrize("features,kind", [("projected", "class-incremental"), ("pixels", "class-incremental"),
                                            ("projected", "few-shot")])
def test_accuracy_matrix_equals_numpy_reference(features, kind):
    """"pixels": 12 raw pixel features (2x2x3 images), 6 samples per class: Σ is singular after the first
    experience (12 samples, one mean each for 2 classes); the shrinkage ε makes Λ exist."""
    if features == "pixels":
        images = make_tiny_dataset(train_per_class=6, test_per_class=10, size=2)
        feats = feature_dataset(images, dim=0)
        assert np.linalg.matrix_rank(np.cov(feats.train_x[feats.train_y < 2].T)) < feats.train_x.shape[1]
    else:
        images = make_tiny_dataset(train_per_class=30, test_per_class=8)
        feats = feature_dataset(images, dim=6)
    cfg = (ScenarioConfig(name="t", dataset="tiny", increment=2) if kind == "class-incremental" else
           ScenarioConfig(name="t", dataset="tiny", kind="few-shot", base_classes=2, ways=2, shots=3))
    result = run_on_features(images, feats, cfg, {"name": "slda", "implementation": "slda"})
    sc = scenario_on(feats, cfg)
    ref = PaperSLDA(sc.num_classes, feats.train_x.shape[1])

    def fit(exp):
        for i in exp.train_indices:  # the scenario's sample order, one at a time
            ref.fit_one(feats.train_x[i].astype(np.float64), int(feats.train_y[i]))

    want = reference_matrix(sc, fit, ref.scores)
    assert_matrices_equal(result.accuracy_matrix, want)
    assert result.seen_accuracy[0] > 0.6  # two separable classes are learnt


def test_unseen_classes_score_minus_inf_and_one_sample_is_enough(tiny_dataset):
    feats = feature_dataset(tiny_dataset)
    slda = SLDA(num_classes=6)
    slda.partial_fit(torch.from_numpy(feats.train_x[:1]), torch.from_numpy(feats.train_y[:1]))  # Σ = 0
    s = slda.predict_scores(torch.from_numpy(feats.test_x))
    assert torch.isfinite(s[:, 0]).all() and torch.isinf(s[:, 1:]).all()


def test_checkpoint_round_trip_with_weights_only_load(tiny_dataset, tmp_path):
    feats = feature_dataset(tiny_dataset)
    sc = scenario_on(feats, ScenarioConfig(name="t", dataset="tiny", increment=2))
    a, b = SLDA(num_classes=6), SLDA(num_classes=6)
    a.fit_experience(sc[0])
    torch.save(a.state_dict(), tmp_path / "s.pt")
    b.load_state_dict(torch.load(tmp_path / "s.pt", weights_only=True))
    for m in (a, b):
        m.fit_experience(sc[1])
    x = torch.from_numpy(feats.test_x)
    assert torch.equal(a.predict_scores(x), b.predict_scores(x))


@pytest.mark.parametrize("value", [0.0, -1e-4, 1.5, float("nan")])
def test_bad_shrinkage_is_config_error(value):
    with pytest.raises(ConfigError, match="shrinkage"):
        strategy_from_dict({"name": "s", "implementation": "slda", "params": {"shrinkage": value}}, REGISTRY, where="s.toml")


def test_definition_loads():
    st = load_strategy(ROOT / "strategies" / "slda.toml", REGISTRY)
    assert st.config.implementation == "slda" and st.params == SLDAConfig()
