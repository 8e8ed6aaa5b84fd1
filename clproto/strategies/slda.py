"""SLDA: streaming linear discriminant analysis over frozen features.

Hayes & Kanan, "Lifelong Machine Learning with Deep Streaming Linear Discriminant Analysis",
CVPR Workshops 2020 (official code github.com/tyler-hayes/Deep_SLDA). Every class keeps a running
mean of its (raw, unnormalised) features and all classes share one covariance matrix, both updated
one sample at a time (the paper's update rules; ``StreamingLDA.fit`` in the code). For the t-th sample z_t (t = 0, 1, ...) of class k, with
c_k samples of k seen before it:

    Δ_t = t / (t + 1) · (z_t − μ_k)(z_t − μ_k)ᵀ          (μ_k: the running mean *before* z_t; 0 if c_k = 0)
    Σ_{t+1} = (t Σ_t + Δ_t) / (t + 1)
    μ_k ← (c_k μ_k + z_t) / (c_k + 1),   c_k ← c_k + 1

Prediction is the LDA linear classifier with shrinkage ε (``predict``; ε = 1e-4 in the paper and code):

    Λ = ((1 − ε) Σ + ε I)⁻¹,   w_k = Λ μ_k,   b_k = −½ μ_kᵀ Λ μ_k,   score_k(x) = w_kᵀ x + b_k.

Notes on the reading. The weight t/(t+1) uses the global sample count t (as in the paper and the
official ``fit``), not the class count, so Σ is not exactly the pooled within-class covariance,
and a class's first sample adds z zᵀ (its mean starts at zero) -- kept as published. The initial
Σ never matters: it is multiplied by t = 0 in the first update (the official code starts from a
matrix of ones, we from zeros). The official experiments first fit a base-initialisation set in
batch (class means plus an OAS covariance, ``fit_base``); this class implements the streaming
rule only, from the first sample on.

Speed: :meth:`partial_fit` applies the per-sample rule to a whole mini-batch at once, exactly (up
to float64 rounding): the running mean before each sample is the prefix sum of its class within
the batch plus the class sum before the batch, so Σ_t Δ_t is one weighted ``Dᵀ diag(w) D``
product. The result depends on the sample order (the weights do), not on how the stream is cut.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from clproto.errors import ConfigError
from clproto.scenarios.scenario import Experience

FIT_CHUNK = 4096  # samples per partial_fit call inside fit_experience


@dataclass(frozen=True)
class SLDAConfig:
    shrinkage: float = 1e-4  # ε in Λ = ((1 − ε)Σ + εI)⁻¹ (paper and official code: 1e-4)

    def __post_init__(self) -> None:
        eps = self.shrinkage
        if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not math.isfinite(eps) or not 0 < eps <= 1:
            raise ConfigError("the shrinkage must lie in (0, 1]", field="shrinkage", value=eps,
                              expected="0 < shrinkage <= 1 (paper: 1e-4); 0 would leave Σ singular")


class SLDA:
    """Streaming LDA: running class means and one shared streaming covariance (Hayes & Kanan 2020)."""

    Config = SLDAConfig
    input_kind = "features"
    checkpoint_runs = False  # training-free: refitting beats writing its statistics after every experience

    def __init__(self, *, config: SLDAConfig = SLDAConfig(), num_classes: int, seed: int = 0) -> None:
        self.config = config
        self.num_classes = num_classes
        self.sums: torch.Tensor | None = None  # (C, D) float64 per-class feature sums (μ_k = sums_k / counts_k)
        self.counts = torch.zeros(num_classes, dtype=torch.float64)  # (C,) c_k
        self.scatter: torch.Tensor | None = None  # (D, D) float64 Σ_t Δ_t, so Σ = scatter / t
        self.num_updates = 0  # t: samples seen so far
        self._precision: torch.Tensor | None = None  # (D, D) cached Λ, reset by partial_fit

    def partial_fit(self, x: torch.Tensor, y: torch.Tensor) -> None:
        """Apply the per-sample update to ``x`` (N, D) with labels ``y`` (N,), in row order."""
        z = x.reshape(len(x), -1).double()  # (N, D)
        y = y.long()
        if self.sums is None:
            self.sums = torch.zeros(self.num_classes, z.shape[1], dtype=torch.float64)
            self.scatter = torch.zeros(z.shape[1], z.shape[1], dtype=torch.float64)
        elif z.shape[1] != self.sums.shape[1]:
            raise ValueError(f"SLDA: features have dimension {z.shape[1]}, earlier ones had {self.sums.shape[1]}")
        assert self.scatter is not None
        before = torch.empty_like(z)  # (N, D) each sample's class mean just before its own update
        for k in torch.unique(y).tolist():
            rows = torch.nonzero(y == k).squeeze(1)  # (m,) positions of class k, in stream order
            zk = z[rows]  # (m, D)
            prefix = torch.cumsum(zk, 0) - zk + self.sums[k]  # (m, D) class sum before each sample
            n_before = self.counts[k] + torch.arange(len(rows), dtype=torch.float64)  # (m,)
            before[rows] = prefix / n_before.clamp(min=1)[:, None]  # zero mean for the class's first sample
        t = self.num_updates + torch.arange(len(z), dtype=torch.float64)  # (N,) global index of each sample
        d = z - before  # (N, D)
        self.scatter += (d * (t / (t + 1))[:, None]).T @ d  # Σ_t Δ_t
        self.sums.index_add_(0, y, z)
        self.counts += torch.bincount(y, minlength=self.num_classes).double()
        self.num_updates += len(z)
        self._precision = None

    def fit_experience(self, experience: Experience) -> None:
        """The experience's training samples, in the scenario's order, streamed through :meth:`partial_fit`."""
        for x, y in experience.train_chunks(FIT_CHUNK):
            self.partial_fit(x, y)

    @property
    def covariance(self) -> torch.Tensor:
        """(D, D) the shared streaming covariance Σ_t."""
        assert self.scatter is not None, "SLDA has not seen any data"
        return self.scatter / self.num_updates

    @property
    def means(self) -> torch.Tensor:
        """(C, D) class means; rows of unseen classes are NaN."""
        assert self.sums is not None, "SLDA has not seen any data"
        return self.sums / self.counts[:, None]

    def precision(self) -> torch.Tensor:
        """(D, D) Λ = ((1 − ε)Σ + εI)⁻¹, computed once per change of Σ."""
        if self._precision is None:
            eps = self.config.shrinkage
            sigma = self.covariance
            shrunk = (1 - eps) * sigma + eps * torch.eye(len(sigma), dtype=torch.float64)  # (D, D) positive definite
            self._precision = torch.cholesky_inverse(torch.linalg.cholesky(shrunk))
        return self._precision

    def predict_scores(self, x: torch.Tensor) -> torch.Tensor:
        seen = self.counts > 0  # (C,)
        mu = self.means[seen]  # (C_seen, D)
        w = mu @ self.precision()  # (C_seen, D) rows Λμ_k (Λ symmetric)
        b = -0.5 * (w * mu).sum(1)  # (C_seen,)
        s = x.reshape(len(x), -1).double() @ w.T + b  # (N, C_seen)
        out = torch.full((len(x), self.num_classes), float("-inf"), dtype=torch.float64)
        out[:, seen] = s
        return out.float()

    def state_dict(self) -> dict:
        return {"sums": self.sums, "counts": self.counts.clone(), "scatter": self.scatter, "num_updates": self.num_updates}

    def load_state_dict(self, state: dict) -> None:
        self.sums, self.scatter = state["sums"], state["scatter"]
        self.counts = state["counts"].clone()
        self.num_updates = int(state["num_updates"])
        self._precision = None
