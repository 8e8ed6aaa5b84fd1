"""RanPAC: random projections of frozen features and a ridge-regression classifier, training-free.

McDonnell, Gong, Parvaneh, Abbasnejad & van den Hengel, "RanPAC: Random Projections and
Pre-trained Models for Continual Learning", NeurIPS 2023 (official code github.com/RanPAC/RanPAC).
Only the training-free part is implemented: no first-session adaptation of the backbone (no PETL),
the backbone is frozen from the start (Phase 2 of the paper, Algorithm 1 without Phase 1).

A fixed Gaussian matrix W ∈ ℝ^{D×M} (entries N(0, 1), drawn once from the run seed) lifts each
feature f(x) ∈ ℝ^D to h(x) = ReLU(f(x) W) ∈ ℝ^M (Sec. 4.2, Eq. 8). Over every sample seen so far the
strategy accumulates the Gram matrix and the class sums (Eq. 6-7, written here with one row per class),

    G = Σ_n h_n h_nᵀ   (M × M),        C = Σ_n y_n h_nᵀ   (classes × M, y_n one-hot),

and the classifier is the ridge solution — the "decorrelated class prototypes" of Eq. 5-6:

    W_o = (G + λ I)⁻¹ Cᵀ   (M × classes),         s(x) = h(x) W_o   (scores, Eq. 5).

λ is re-chosen at every experience as in the official ``optimise_ridge_parameter``: the current
experience's training samples (shuffled; here a seeded permutation) are split into the first
⌊n (1 − holdout)⌋ for fitting and the rest for validation; for every λ on the grid 10⁻⁸ … 10⁸ a
ridge model is fitted on the *current experience's* fit part alone and scored by the mean squared
error of its outputs against the one-hot targets of the held-out part; the smallest error wins
(the first of equal ones). Note that the official code validates on the current experience only,
not on all data seen so far; so does this implementation. The final W_o uses all data seen so far.
An experience too small to split (no sample on one side) keeps the previous λ (at the first
experience: the largest value of the grid).

Numerics. G and C are sums over the whole stream, so they are accumulated in float64 by default
(``precision = "float32"`` is the official code's choice: half the memory, faster, and less exact
— G + 10⁻⁸I is numerically singular in float32). Every (G + λI) X = Cᵀ is solved by a Cholesky
factorisation (G + λI is symmetric positive definite for λ > 0), never an explicit inverse; a λ
whose factorisation fails (positive definiteness lost to rounding) is skipped. At M = 10 000 the
Gram matrix alone is 800 MB in float64 and every factorisation costs ~M³/3 flops: the cost of the
method grows with M³ (17 + 1 solves per experience) and N·M² (Gram): see benchmarks/ranpac_fetril_speed.py.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from clproto.errors import ConfigError
from clproto.scenarios.scenario import Experience

FIT_CHUNK = 2048  # samples projected at once when accumulating G and C
DTYPES = {"float64": torch.float64, "float32": torch.float32}
OFFICIAL_GRID = tuple(10.0 ** k for k in range(-8, 9))  # official `ridges = 10.0 ** np.arange(-8, 9)`


@dataclass(frozen=True)
class RanPACConfig:
    projection_dim: int = 10_000  # M, width of the random ReLU projection (paper and official default 10 000); 0 = none
    ridge_grid: tuple[float, ...] = OFFICIAL_GRID  # candidate λ values (official: 10^-8, 10^-7, ..., 10^8)
    holdout_fraction: float = 0.2  # share of each experience's shuffled training samples used to choose λ (official 0.2)
    precision: str = "float64"  # dtype of the projection, G, C and the solves: "float64" or "float32" (official code)

    def __post_init__(self) -> None:
        m = self.projection_dim
        if isinstance(m, bool) or not isinstance(m, int) or m < 0:
            raise ConfigError("the projection width must be a non-negative integer", field="projection_dim", value=m,
                              expected="an integer >= 0 (official 10000; 0 = no random projection)")
        grid = self.ridge_grid
        if (not isinstance(grid, (list, tuple)) or not grid
                or any(isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0
                       for v in grid)):
            raise ConfigError("the ridge grid must be a non-empty list of positive numbers", field="ridge_grid",
                              value=grid, expected="finite λ > 0, e.g. the official 1e-8 ... 1e8")
        object.__setattr__(self, "ridge_grid", tuple(float(v) for v in grid))
        h = self.holdout_fraction
        if isinstance(h, bool) or not isinstance(h, (int, float)) or not 0 < h < 1:
            raise ConfigError("the held-out share must lie strictly between 0 and 1", field="holdout_fraction",
                              value=h, expected="0 < holdout_fraction < 1 (official 0.2)")
        if self.precision not in DTYPES:
            raise ConfigError("unknown precision", field="precision", value=self.precision,
                              expected='"float64" or "float32"')


def ridge_solve(gram: torch.Tensor, targets: torch.Tensor, lam: float) -> torch.Tensor | None:
    """(G + λI)⁻¹ T by Cholesky for ``gram`` (M, M) and ``targets`` (M, K); None if G + λI is not numerically PD."""
    a = gram.clone()  # (M, M)
    a.diagonal().add_(lam)
    factor, info = torch.linalg.cholesky_ex(a)
    if int(info) != 0 or not torch.isfinite(factor).all():
        return None
    return torch.cholesky_solve(targets, factor)  # (M, K)


def choose_ridge(gram: torch.Tensor, sums: torch.Tensor, h_val: torch.Tensor, y_val: torch.Tensor,
                 grid: tuple[float, ...]) -> tuple[float, list[float]]:
    """The λ of ``grid`` whose ridge model on (``gram`` (M, M), class ``sums`` (K, M)) has the smallest
    mean squared error on the held-out ``h_val`` (n, M) against one-hot ``y_val`` (n,) targets in 0..K-1.

    Returns (λ, losses); a λ whose factorisation fails scores +inf; if every one fails: ConfigError.
    """
    onehot = torch.zeros(len(y_val), sums.shape[0], dtype=h_val.dtype)  # (n, K)
    onehot[torch.arange(len(y_val)), y_val] = 1.0
    losses = []
    for lam in grid:
        w = ridge_solve(gram, sums.T.contiguous(), lam)  # (M, K)
        losses.append(math.inf if w is None else float(((h_val @ w - onehot) ** 2).mean()))
    if all(math.isinf(v) for v in losses):
        raise ConfigError("no λ of the ridge grid makes G + λI positive definite (numerically)", field="ridge_grid",
                          value=list(grid), expected="larger values (or precision = \"float64\")")
    return grid[int(np.argmin(losses))], losses


class RanPAC:
    """RanPAC: random ReLU projection + ridge-regression class prototypes, training-free (McDonnell et al., NeurIPS 2023)."""

    Config = RanPACConfig
    input_kind = "features"
    checkpoint_runs = False  # training-free: refitting beats writing its statistics after every experience

    def __init__(self, *, config: RanPACConfig = RanPACConfig(), num_classes: int, seed: int = 0) -> None:
        self.config = config
        self.num_classes = num_classes
        self.seed = seed
        self.dtype = DTYPES[config.precision]
        self.projection: torch.Tensor | None = None  # (D, M) fixed Gaussian W, drawn at the first experience
        self.gram: torch.Tensor | None = None  # (M, M) G = Σ h hᵀ over every sample seen
        self.sums: torch.Tensor | None = None  # (C, M) class sums Σ_{n: y_n = c} h_n
        self.weights: torch.Tensor | None = None  # (M, C) W_o = (G + λI)⁻¹ sumsᵀ
        self.seen = torch.zeros(num_classes, dtype=torch.bool)  # (C,)
        self.ridge = math.nan  # λ of the latest solve

    # ------------------------------------------------------------------ projection
    def _init_projection(self, dim: int) -> None:
        m = self.config.projection_dim
        if m == 0:  # official M = 0: no projection, h = f (decorrelation of the raw features only)
            self.projection = torch.empty(0, dtype=self.dtype)
            m = dim
        else:
            g = torch.Generator().manual_seed(self.seed)
            self.projection = torch.randn(dim, m, generator=g, dtype=torch.float64).to(self.dtype)  # (D, M)
        self.gram = torch.zeros(m, m, dtype=self.dtype)
        self.sums = torch.zeros(self.num_classes, m, dtype=self.dtype)

    def project(self, x: torch.Tensor) -> torch.Tensor:
        """h = ReLU(f W): (N, D) features -> (N, M)."""
        f = x.reshape(len(x), -1).to(self.dtype)  # (N, D)
        assert self.projection is not None, "RanPAC has not seen any data"
        if self.projection.numel() == 0:
            return f
        if f.shape[1] != self.projection.shape[0]:
            raise ValueError(f"RanPAC: features have dimension {f.shape[1]}, earlier ones had {self.projection.shape[0]}")
        return torch.relu(f @ self.projection)  # (N, M)

    def _accumulate(self, x: np.ndarray, y: np.ndarray, rows: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """Gram (M, M) and class sums (C, M) of the samples ``rows`` of ``x``, chunk by chunk."""
        m = self.gram.shape[0]
        gram = torch.zeros(m, m, dtype=self.dtype)
        sums = torch.zeros(self.num_classes, m, dtype=self.dtype)
        for start in range(0, len(rows), FIT_CHUNK):
            part = rows[start:start + FIT_CHUNK]
            h = self.project(torch.from_numpy(x[part]))  # (n, M)
            gram.addmm_(h.T, h)
            sums.index_add_(0, torch.from_numpy(y[part]).long(), h)
        return gram, sums

    # ------------------------------------------------------------------ learning
    def fit_experience(self, experience: Experience) -> None:
        data, idx = experience.dataset, experience.train_indices
        if len(idx) == 0:
            raise ConfigError(f"experience {experience.index} has no training samples", field="train_indices")
        if self.projection is None:
            self._init_projection(int(np.prod(data.train_x.shape[1:])))
        # the official code shuffles the experience, fits on the first 80 % and validates on the rest
        order = idx[np.random.default_rng([self.seed, experience.index]).permutation(len(idx))]  # (n,)
        n_fit = int(len(order) * (1.0 - self.config.holdout_fraction))
        fit_gram, fit_sums = self._accumulate(data.train_x, data.train_y, order[:n_fit])  # (M, M), (C, M)
        val_rows = order[n_fit:]
        h_val = self.project(torch.from_numpy(data.train_x[val_rows]))  # (n_val, M), kept for the λ search
        y_val = torch.from_numpy(data.train_y[val_rows]).long()  # (n_val,)
        if n_fit > 0 and len(val_rows) > 0:
            self.ridge, _ = choose_ridge(fit_gram, fit_sums, h_val, y_val, self.config.ridge_grid)
        elif math.isnan(self.ridge):
            self.ridge = max(self.config.ridge_grid)
        # every sample of the experience enters the final model
        self.gram.add_(fit_gram).addmm_(h_val.T, h_val)
        self.sums.add_(fit_sums).index_add_(0, y_val, h_val)
        self.seen[list(experience.classes)] = True
        self.weights = ridge_solve(self.gram, self.sums.T.contiguous(), self.ridge)  # (M, C)
        if self.weights is None:
            raise ConfigError(f"G + λI is not numerically positive definite at λ = {self.ridge:g}",
                              field="ridge_grid", value=list(self.config.ridge_grid),
                              expected="larger values (or precision = \"float64\")")

    def predict_scores(self, x: torch.Tensor) -> torch.Tensor:
        assert self.weights is not None, "RanPAC has not seen any data"
        s = self.project(x) @ self.weights[:, self.seen]  # (N, C_seen)
        out = torch.full((len(x), self.num_classes), float("-inf"), dtype=torch.float64)
        out[:, self.seen] = s.double()
        return out.float()

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict:
        return {"projection": self.projection, "gram": self.gram, "sums": self.sums, "weights": self.weights,
                "seen": self.seen.clone(), "ridge": float(self.ridge)}

    def load_state_dict(self, state: dict) -> None:
        self.projection, self.gram, self.sums = state["projection"], state["gram"], state["sums"]
        self.weights, self.seen, self.ridge = state["weights"], state["seen"].clone(), float(state["ridge"])
