"""FeCAM: per-class Mahalanobis distance to class prototypes over frozen features.

Goswami, Liu, Twardowski & van de Weijer, "FeCAM: Exploiting the Heterogeneity of Class
Distributions in Exemplar-Free Continual Learning", NeurIPS 2023 (official code
github.com/dipamgoswami/FeCAM, ``models/base.py``, ``utils/maha_utils.py``). Every class y keeps its
prototype μ_y and its own covariance Σ_y; a sample goes to the class at the smallest squared
Mahalanobis distance, so score_y(x) = −D_M(x, μ_y) (``_maha_dist`` / ``_mahalanobis`` in the code):

    D_M(x, μ_y) = (x̃ − μ̃_y)ᵀ Σ̂_y⁻¹ (x̃ − μ̃_y)

with, in the order the official code applies them:

* Tukey's ladder of powers (``_tukeys_transform``): T(v) = v^λ elementwise (λ = 0.5; λ = 1 turns it off), for
  non-negative (post-ReLU) features. x̃ = T(x) / ‖T(x)‖₂ and μ̃_y = T(μ_y) / ‖T(μ_y)‖₂ where μ_y is
  the mean of the *untransformed* features (the code L2-normalises test features before T and
  again after; the first normalisation cancels, so x̃ is as written).
* the covariance Σ_y = sample covariance (denominator n − 1) of T(features) of class y;
* shrinkage (``shrink_cov``): Σ_s = Σ + γ₁ V₁ I + γ₂ V₂ (1 − I), V₁ the mean of the diagonal,
  V₂ the mean of the non-zero off-diagonal entries (γ₁ = γ₂ = 1 in the code's ResNet configs);
* correlation normalisation (``normalize_cov``): Σ̂(i, j) = Σ_s(i, j) / (σ_i σ_j), σ_i = √Σ_s(i, i);
* the inverse is the pseudo-inverse, as in the code (computed by Cholesky when Σ̂ is positive definite).

Precision: statistics and inverses are float64. The quadratic forms at prediction (N·D² per class, the bulk
of the time) are evaluated in float32, like the float32 scores returned: twice as fast, and on the
synthetic CIFAR-10-sized features of ``benchmarks/frozen_family.py`` no prediction changed against
float64 (10 000 samples, 10 classes; largest relative score difference 2.4e-7).

The backbone here is frozen from the first experience on, so every experience, the first
included, is handled as the code handles experiences after the first (the code scores its first
task with its trained classifier's weights and no covariance; that path needs a trained backbone).

Singular input, without NaN: with n ≤ D samples Σ is singular and the shrinkage normally makes it full
rank (V₁ > 0 whenever the features vary at all; ``pinv`` covers the rest). A class with one sample (or no
variation) has Σ = 0, which neither shrinkage nor normalisation can repair; there Σ̂ = I (a
dimension without variance gets correlation 1 with itself, 0 with the others), i.e. the cosine
prototype classifier on T(features). n − 1 = 0 is read as 1 (the scatter is zero anyway).

Few-shot sessions (``novel_covariance``): the official repository has no few-shot code path; a
novel class's covariance comes from its own shots, made invertible by the shrinkage
(``"own"``, the default). ``"calibrated"`` adds the base classes' covariances as the same authors'
follow-up does (Goswami, Twardowski & van de Weijer, "Calibrating Higher-Order Statistics for
Few-Shot Class-Incremental Learning with Pre-trained Vision Transformers", CVPR-W 2024, code
github.com/dipamgoswami/FSCIL-Calibration): Σ_i ← Σ_i + Σ_b w_ib Σ_b, w_ib = softmax_b(τ cos(μ_i, μ_b))
over the base classes b (τ = 16, raw-feature means), before shrinkage and normalisation. Where it
differs from that code: it is applied inside FeCAM's pipeline (Tukey, FeCAM's shrinkage and
correlation normalisation) instead of a ridge of 100 and ``torch.corrcoef`` of the matrix, and the
prototypes are not calibrated (that part is TEEN, see ``teen``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from clproto.errors import ConfigError
from clproto.scenarios.scenario import Experience, Scenario

NOVEL_COVARIANCE = ("own", "calibrated")


def _number(value, field: str, *, low: float, low_open: bool, expected: str) -> None:
    bad = isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value)
    if bad or value < low or (low_open and value == low):
        raise ConfigError("out of range", field=field, value=value, expected=expected)


@dataclass(frozen=True)
class FeCAMConfig:
    tukey_lambda: float = 0.5  # λ of Tukey's v^λ (paper/code: 0.5); 1 = no transform (e.g. ViT features, which can be negative)
    gamma1: float = 1.0  # γ₁, weight of the mean variance added to the diagonal (code: 1)
    gamma2: float = 1.0  # γ₂, weight of the mean covariance added off the diagonal (code, ResNet configs: 1; ViT script: 0)
    normalize_covariance: bool = True  # correlation normalisation Σ(i,j)/(σ_i σ_j) (paper and code: on)
    novel_covariance: str = "own"  # few-shot sessions: "own" (FeCAM) or "calibrated" (Goswami et al. 2024)
    calibration_tau: float = 16.0  # τ of the base-class softmax for "calibrated" (follow-up code: 16)

    def __post_init__(self) -> None:
        _number(self.tukey_lambda, "tukey_lambda", low=0.0, low_open=True,
                expected="a number > 0 (0.5 in the paper; 1 = off; λ = 0, the log, is not supported: ReLU features have zeros)")
        _number(self.gamma1, "gamma1", low=0.0, low_open=False, expected="a number >= 0 (paper: 1)")
        _number(self.gamma2, "gamma2", low=0.0, low_open=False, expected="a number >= 0 (paper: 1)")
        _number(self.calibration_tau, "calibration_tau", low=0.0, low_open=True, expected="a number > 0 (16)")
        if self.novel_covariance not in NOVEL_COVARIANCE:
            raise ConfigError("unknown novel-class covariance rule", field="novel_covariance", value=self.novel_covariance,
                              expected=" or ".join(f'"{v}"' for v in NOVEL_COVARIANCE))


def tukey(v: torch.Tensor, lam: float) -> torch.Tensor:
    """Tukey's ladder of powers v^λ (λ > 0) of non-negative features; a ConfigError for negative ones."""
    if lam == 1.0:
        return v
    if bool((v < 0).any()):
        raise ConfigError("Tukey's transform needs non-negative features (e.g. after a ReLU); these have negative values",
                          field="tukey_lambda", value=lam, expected="1 (no transform) for features that can be negative")
    return v.pow(lam)


def shrink(cov: torch.Tensor, gamma1: float, gamma2: float) -> torch.Tensor:
    """FeCAM's shrinkage Σ + γ₁V₁I + γ₂V₂(1 − I) of a (D, D) covariance (V₂: mean of non-zero off-diagonal entries)."""
    eye = torch.eye(len(cov), dtype=cov.dtype)
    off = cov * (1 - eye)  # (D, D)
    nonzero = int((off != 0).sum())
    v1 = torch.diagonal(cov).mean()
    v2 = off.sum() / nonzero if nonzero else torch.zeros((), dtype=cov.dtype)
    return cov + gamma1 * v1 * eye + gamma2 * v2 * (1 - eye)


def correlation(cov: torch.Tensor) -> torch.Tensor:
    """Σ(i, j)/(σ_i σ_j); a dimension with σ_i = 0 gets correlation 1 with itself and 0 with the others."""
    sd = torch.diagonal(cov).clamp(min=0).sqrt()  # (D,)
    dead = sd == 0
    safe = torch.where(dead, torch.ones_like(sd), sd)
    out = cov / (safe[:, None] * safe[None, :])  # (D, D)
    out[dead, :] = 0.0
    out[:, dead] = 0.0
    out[dead, dead] = 1.0
    return out


def _inverse(cov: torch.Tensor) -> torch.Tensor:
    """The pseudo-inverse of a symmetric (D, D) matrix, by Cholesky when it is positive definite (the usual case
    after shrinkage: same result, ~10x faster than the eigendecomposition), else by ``pinv``."""
    chol, info = torch.linalg.cholesky_ex(cov)
    if int(info) == 0:
        return torch.cholesky_inverse(chol)
    return torch.linalg.pinv(cov, hermitian=True)


class FeCAM:
    """FeCAM: Mahalanobis distance with per-class shrunk, normalised covariances (Goswami et al. 2023)."""

    Config = FeCAMConfig
    input_kind = "features"
    checkpoint_runs = False  # training-free: refitting beats writing its statistics after every experience

    def __init__(self, *, config: FeCAMConfig = FeCAMConfig(), num_classes: int, seed: int = 0) -> None:
        self.config = config
        self.num_classes = num_classes
        self.prototypes: torch.Tensor | None = None  # (C, D) float64 μ̃_y = T(μ_y)/‖T(μ_y)‖
        self.precisions: torch.Tensor | None = None  # (C, D, D) float64 Σ̂_y⁻¹ (pseudo-inverse)
        self.seen = torch.zeros(num_classes, dtype=torch.bool)  # (C,)
        self.base_means: torch.Tensor | None = None  # (B, D) raw means of the base classes ("calibrated" only)
        self.base_covs: torch.Tensor | None = None  # (B, D, D) their T-covariances before shrinkage
        self._scoring: tuple[torch.Tensor, torch.Tensor] | None = None  # float32 (prototypes, precisions) of seen classes

    @staticmethod
    def check_scenario(scenario: Scenario, params: FeCAMConfig, *, where: str = "scenario") -> None:
        if params.novel_covariance == "calibrated" and not scenario.is_few_shot:
            raise ConfigError("novel_covariance = \"calibrated\" calibrates few-shot classes with the base session's "
                              "covariances; this scenario has no base session", where=where, field="kind",
                              value=scenario.kind, expected='"few-shot" (or novel_covariance = "own")')

    def _class_stats(self, feats: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Raw mean (D,) and the covariance (D, D) of T(features) of one class's (n, D) features."""
        t = tukey(feats, self.config.tukey_lambda)  # (n, D)
        centred = t - t.mean(0)  # (n, D)
        cov = centred.T @ centred / max(len(feats) - 1, 1)  # (D, D)
        return feats.mean(0), cov

    def fit_experience(self, experience: Experience) -> None:
        data, idx = experience.dataset, experience.train_indices
        labels = data.train_y[idx]
        cfg = self.config
        stats = {}
        for c in experience.classes:
            rows = idx[labels == c]
            if len(rows) == 0:
                raise ConfigError(f"experience {experience.index} has no training samples of class {c}",
                                  field="shots", value=0, expected="at least one training sample per class")
            stats[c] = self._class_stats(torch.from_numpy(data.train_x[rows]).reshape(len(rows), -1).double())
        dim = next(iter(stats.values()))[0].shape[0]
        if self.prototypes is None:
            self.prototypes = torch.zeros(self.num_classes, dim, dtype=torch.float64)
            self.precisions = torch.zeros(self.num_classes, dim, dim, dtype=torch.float64)
        elif dim != self.prototypes.shape[1]:
            raise ValueError(f"FeCAM: features have dimension {dim}, earlier ones had {self.prototypes.shape[1]}")
        assert self.precisions is not None
        calibrate = cfg.novel_covariance == "calibrated" and experience.index > 0
        if cfg.novel_covariance == "calibrated" and experience.index == 0:
            if not experience.base_classes:
                raise ConfigError('novel_covariance = "calibrated" needs a few-shot scenario (a base session)',
                                  field="novel_covariance", value=cfg.novel_covariance, expected='"own"')
            self.base_means = torch.stack([stats[c][0] for c in experience.classes])  # (B, D)
            self.base_covs = torch.stack([stats[c][1] for c in experience.classes])  # (B, D, D)
        for c, (mean, cov) in stats.items():
            if calibrate:
                assert self.base_means is not None and self.base_covs is not None
                w = torch.softmax(cfg.calibration_tau * (F.normalize(self.base_means, dim=1) @ F.normalize(mean, dim=0)), 0)  # (B,)
                cov = cov + (w[:, None, None] * self.base_covs).sum(0)  # (D, D)
            cov = shrink(cov, cfg.gamma1, cfg.gamma2)
            if cfg.normalize_covariance:
                cov = correlation(cov)
            self.precisions[c] = _inverse(cov)
            self.prototypes[c] = F.normalize(tukey(mean, cfg.tukey_lambda), dim=0)
            self.seen[c] = True
        self._scoring = None

    def predict_scores(self, x: torch.Tensor) -> torch.Tensor:
        assert self.prototypes is not None and self.precisions is not None, "FeCAM has not seen any data"
        if self._scoring is None:
            self._scoring = (self.prototypes[self.seen].float(), self.precisions[self.seen].float())
        mu, prec = self._scoring  # (S, D), (S, D, D)
        f = F.normalize(tukey(x.reshape(len(x), -1).double(), self.config.tukey_lambda), dim=1).float()  # (N, D) x̃
        dist = torch.empty(len(x), len(mu))  # (N, S)
        for k in range(len(mu)):
            d = f - mu[k]  # (N, D)
            dist[:, k] = ((d @ prec[k]) * d).sum(1)  # (N,) D_M
        out = torch.full((len(x), self.num_classes), float("-inf"))
        out[:, self.seen] = -dist
        return out

    def state_dict(self) -> dict:
        return {"prototypes": self.prototypes, "precisions": self.precisions, "seen": self.seen.clone(),
                "base_means": self.base_means, "base_covs": self.base_covs}

    def load_state_dict(self, state: dict) -> None:
        self.prototypes, self.precisions = state["prototypes"], state["precisions"]
        self.seen = state["seen"].clone()
        self.base_means, self.base_covs = state["base_means"], state["base_covs"]
        self._scoring = None
