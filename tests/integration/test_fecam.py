"""FeCAM (Goswami et al. 2023): whole runs against a NumPy/SciPy re-implementation written from the paper, few-shot
sessions (own and base-calibrated covariances), singular covariances, one-sample classes and bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.special
import torch

from clproto.config import load_strategy, strategy_from_dict
from clproto.errors import ConfigError
from clproto.scenarios import ScenarioConfig
from clproto.strategies import REGISTRY
from clproto.strategies.fecam import FeCAM, FeCAMConfig
from conftest import make_tiny_dataset
from frozen_reference import assert_matrices_equal, feature_dataset, reference_matrix, run_on_features, scenario_on

ROOT = Path(__file__).resolve().parents[2]
CI = ScenarioConfig(name="t", dataset="tiny", increment=2)
FS = ScenarioConfig(name="t", dataset="tiny", kind="few-shot", base_classes=2, ways=2, shots=3)


class PaperFeCAM:
    """FeCAM in NumPy: Tukey v^λ, per-class covariance, shrinkage, correlation normalisation,
    pseudo-inverse, squared Mahalanobis distance between L2-normalised transformed vectors; optionally the
    base-covariance calibration of novel classes (Goswami et al. 2024)."""

    def __init__(self, lam=0.5, g1=1.0, g2=1.0, norm=True, calibrated=False, tau=16.0):
        self.lam, self.g1, self.g2, self.norm, self.calibrated, self.tau = lam, g1, g2, norm, calibrated, tau
        self.mu, self.prec, self.base = {}, {}, None

    def _unit(self, v):
        return v / np.linalg.norm(v, axis=-1, keepdims=True)

    def _cov(self, x):
        t = x ** self.lam
        if len(x) == 1:
            return np.zeros((x.shape[1], x.shape[1]))
        return np.cov(t, rowvar=False)

    def _finish(self, s):
        d = s.shape[0]
        off = s[~np.eye(d, dtype=bool)]
        v2 = off[off != 0].mean() if np.any(off != 0) else 0.0
        s = s + self.g1 * np.mean(np.diag(s)) * np.eye(d) + self.g2 * v2 * (1 - np.eye(d))
        if self.norm:
            sd = np.sqrt(np.diag(s))
            s = np.eye(d) if np.all(sd == 0) else s / np.outer(sd, sd)
        return np.linalg.pinv(s, rcond=d * np.finfo(float).eps, hermitian=True)  # torch.linalg.pinv's default cutoff

    def fit(self, exp):
        x, y = exp.dataset.train_x.astype(np.float64), exp.dataset.train_y
        stats = {c: (x[exp.train_indices][y[exp.train_indices] == c]) for c in exp.classes}
        if self.calibrated and exp.index == 0:
            self.base = (np.stack([v.mean(0) for v in stats.values()]), np.stack([self._cov(v) for v in stats.values()]))
        for c, xc in stats.items():
            s = self._cov(xc)
            if self.calibrated and exp.index > 0:
                w = scipy.special.softmax(self.tau * self._unit(self.base[0]) @ self._unit(xc.mean(0)))
                s = s + np.tensordot(w, self.base[1], axes=1)
            self.prec[c] = self._finish(s)
            self.mu[c] = self._unit(xc.mean(0) ** self.lam)

    def scores(self, x, seen):
        f = self._unit(x ** self.lam)
        return np.stack([-np.einsum("nd,de,ne->n", f - self.mu[c], self.prec[c], f - self.mu[c]) for c in seen], 1)


CASES = {  # name: (make_tiny_dataset kwargs, feature_dataset dim, scenario, FeCAM params)
    "projected": (dict(train_per_class=30, test_per_class=8), 6, CI, {}),
    "singular-pixels": (dict(train_per_class=6, test_per_class=10, size=2), 0, CI, {}),  # 6 samples, 12 dims
    "no-tukey-no-norm": (dict(train_per_class=30, test_per_class=8), 6, CI,
                         {"tukey_lambda": 1.0, "gamma2": 0.0, "normalize_covariance": False}),
    "unshrunk-singular-pixels": (dict(train_per_class=6, test_per_class=10, size=2), 0, CI,  # pinv of rank-5 matrices
                                 {"gamma1": 0.0, "gamma2": 0.0}),
    "few-shot-own": (dict(train_per_class=30, test_per_class=8), 6, FS, {}),  # 3 shots, 6 dims: singular
    "few-shot-calibrated": (dict(train_per_class=30, test_per_class=8), 6, FS, {"novel_covariance": "calibrated"}),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_accuracy_matrix_equals_numpy_reference(case):
    kwargs, dim, scenario, params = CASES[case]
    images = make_tiny_dataset(**kwargs)
    feats = feature_dataset(images, dim=dim)
    result = run_on_features(images, feats, scenario, {"name": "fecam", "implementation": "fecam", "params": params})
    cfg = FeCAMConfig(**params)
    ref = PaperFeCAM(cfg.tukey_lambda, cfg.gamma1, cfg.gamma2, cfg.normalize_covariance,
                     cfg.novel_covariance == "calibrated", cfg.calibration_tau)
    want = reference_matrix(scenario_on(feats, scenario), ref.fit, ref.scores)
    assert_matrices_equal(result.accuracy_matrix, want)
    assert all(np.isfinite(v) for row in result.accuracy_matrix for v in row if v is not None)


def test_calibration_changes_only_novel_classes():
    images = make_tiny_dataset(train_per_class=30, test_per_class=8)
    sc = scenario_on(feature_dataset(images), FS)
    own, cal = FeCAM(num_classes=6), FeCAM(config=FeCAMConfig(novel_covariance="calibrated"), num_classes=6)
    for exp in sc:
        own.fit_experience(exp)
        cal.fit_experience(exp)
    base, novel = list(sc[0].classes), [c for e in sc[1:] for c in e.classes]
    assert torch.equal(own.precisions[base], cal.precisions[base])
    assert torch.equal(own.prototypes, cal.prototypes)
    assert not torch.allclose(own.precisions[novel], cal.precisions[novel])


def test_one_sample_class_is_the_cosine_prototype_classifier():
    images = make_tiny_dataset(train_per_class=30, test_per_class=8)
    feats = feature_dataset(images)
    sc = scenario_on(feats, ScenarioConfig(name="t", dataset="tiny", kind="few-shot", base_classes=2, ways=2, shots=1))
    fecam = FeCAM(num_classes=6)
    for exp in sc:
        fecam.fit_experience(exp)
    x = torch.from_numpy(feats.test_x)
    s = fecam.predict_scores(x)
    assert torch.isfinite(s).all()
    c = sc[1].classes[0]
    assert torch.equal(fecam.precisions[c], torch.eye(6, dtype=torch.float64))  # Σ = 0 falls back to the identity
    xt = torch.nn.functional.normalize(x.double().sqrt(), dim=1)
    np.testing.assert_allclose(s[:, c].numpy(), (-(xt - fecam.prototypes[c]).pow(2).sum(1)).float().numpy(), rtol=1e-6)


def test_negative_features_need_tukey_off(tiny_dataset):
    images = tiny_dataset
    feats = feature_dataset(images)
    signed = images.with_inputs(feats.train_x - 0.5, feats.test_x - 0.5)
    with pytest.raises(ConfigError, match="non-negative"):
        run_on_features(images, signed, CI, {"name": "fecam", "implementation": "fecam"})
    result = run_on_features(images, signed, CI, {"name": "fecam", "implementation": "fecam", "params": {"tukey_lambda": 1.0}})
    assert len(result.accuracy_matrix) == 3


@pytest.mark.parametrize("params,field", [({"tukey_lambda": 0.0}, "tukey_lambda"), ({"gamma1": -1.0}, "gamma1"),
                                          ({"gamma2": float("inf")}, "gamma2"), ({"novel_covariance": "base"}, "novel_covariance"),
                                          ({"calibration_tau": 0}, "calibration_tau")])
def test_bad_params_are_config_errors(params, field):
    with pytest.raises(ConfigError, match=field):
        strategy_from_dict({"name": "f", "implementation": "fecam", "params": params}, REGISTRY, where="f.toml")


def test_calibration_on_a_class_incremental_scenario_is_rejected_before_running(tiny_dataset):
    sc = scenario_on(feature_dataset(tiny_dataset), CI)
    with pytest.raises(ConfigError, match="few-shot"):
        FeCAM.check_scenario(sc, FeCAMConfig(novel_covariance="calibrated"), where="split.toml")
    with pytest.raises(ConfigError, match="few-shot"):
        FeCAM(config=FeCAMConfig(novel_covariance="calibrated"), num_classes=6).fit_experience(sc[0])


def test_checkpoint_round_trip_with_weights_only_load(tmp_path):
    images = make_tiny_dataset(train_per_class=30, test_per_class=8)
    feats = feature_dataset(images)
    sc = scenario_on(feats, FS)
    a = FeCAM(config=FeCAMConfig(novel_covariance="calibrated"), num_classes=6)
    b = FeCAM(config=FeCAMConfig(novel_covariance="calibrated"), num_classes=6)
    a.fit_experience(sc[0])
    torch.save(a.state_dict(), tmp_path / "f.pt")
    b.load_state_dict(torch.load(tmp_path / "f.pt", weights_only=True))
    for m in (a, b):
        m.fit_experience(sc[1])
    x = torch.from_numpy(feats.test_x)
    assert torch.equal(a.predict_scores(x), b.predict_scores(x))


def test_definition_loads():
    st = load_strategy(ROOT / "strategies" / "fecam.toml", REGISTRY)
    assert st.config.implementation == "fecam" and st.params == FeCAMConfig()
