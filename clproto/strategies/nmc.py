"""NMC: nearest-mean classifier over frozen features.

Janson, Zhang, Aljundi & Elhoseiny, "A Simple Baseline that Questions the Use of
Pretrained-Models in Continual Learning", NeurIPS 2022 Workshop (arXiv:2210.04428), Sec. 3:
features of a frozen pretrained network are L2-normalised, each class is represented by the
mean of its normalised features, and a sample is assigned to the nearest class mean,

    ŷ(x) = argmin_c ‖ f̂(x) − μ_c ‖₂,   f̂(x) = f(x) / ‖f(x)‖₂,   μ_c = (1/n_c) Σ_{i: y_i = c} f̂(x_i).

SimpleCIL (Zhou et al., "Revisiting Class-Incremental Learning with Pre-Trained Models", 2023)
is this classifier with ``metric = "cosine"`` and ``normalize = false``: prototypes are means of the
*unnormalised* features and a sample is scored by ``cos(f(x), μ_c)`` (LAMDA-PILOT's SimpleCIL puts
the raw means into a cosine classifier). It is therefore not new code but a definition,
``strategies/simplecil.toml``. ``metric = "cosine"`` with ``normalize = true`` (``nmc-cosine``)
averages normalised features instead.
Means are kept as running sums and counts, so :meth:`partial_fit` works task-free on any
stream of mini-batches and the result does not depend on how the stream is cut.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from clproto.errors import ConfigError
from clproto.scenarios.scenario import Experience

FIT_CHUNK = 2048  # samples per partial_fit call inside fit_experience


@dataclass(frozen=True)
class NMCConfig:
    metric: str = "euclidean"  # "euclidean" (Janson et al.) or "cosine" (SimpleCIL)
    normalize: bool = True  # L2-normalise features before averaging (Janson et al. do)

    def __post_init__(self) -> None:
        if self.metric not in ("euclidean", "cosine"):
            raise ConfigError("unknown metric", field="metric", value=self.metric, expected='"euclidean" or "cosine"')


class NMC:
    """Nearest-mean classifier on frozen features (Janson et al. 2022; SimpleCIL)."""

    Config = NMCConfig
    input_kind = "features"
    checkpoint_runs = False  # state_dict() is for --keep-model; refitting is cheaper than a per-experience checkpoint

    def __init__(self, *, config: NMCConfig = NMCConfig(), num_classes: int, seed: int = 0) -> None:
        self.config = config
        self.num_classes = num_classes
        self.sums: torch.Tensor | None = None  # (C, D) float64 running sums of (normalised) features
        self.counts = torch.zeros(num_classes, dtype=torch.float64)  # (C,)

    def _prepare(self, x: torch.Tensor) -> torch.Tensor:
        x = x.reshape(len(x), -1).double()  # (N, D)
        return F.normalize(x, dim=1) if self.config.normalize else x

    def partial_fit(self, x: torch.Tensor, y: torch.Tensor) -> None:
        """Add samples ``x`` (N, D) with labels ``y`` (N,) to the running class sums."""
        f = self._prepare(x)  # (N, D)
        if self.sums is None:
            self.sums = torch.zeros(self.num_classes, f.shape[1], dtype=torch.float64)
        elif f.shape[1] != self.sums.shape[1]:
            raise ValueError(f"NMC: features have dimension {f.shape[1]}, earlier ones had {self.sums.shape[1]}")
        self.sums.index_add_(0, y.long(), f)
        self.counts += torch.bincount(y.long(), minlength=self.num_classes).double()

    def fit_experience(self, experience: Experience) -> None:
        # in chunks read straight from the (memory-mapped) features: the float64 working copies stay
        # a few MB however large the experience (sums are order-independent up to float64 rounding)
        for x, y in experience.train_chunks(FIT_CHUNK):
            self.partial_fit(x, y)

    @property
    def means(self) -> torch.Tensor:
        """(C, D) class means; rows of unseen classes are NaN (never zero: a zero mean would score)."""
        assert self.sums is not None, "NMC has not seen any data"
        return self.sums / self.counts[:, None]

    def predict_scores(self, x: torch.Tensor) -> torch.Tensor:
        seen = self.counts > 0  # (C,)
        f = self._prepare(x)  # (N, D)
        mu = self.means[seen]  # (C_seen, D)
        if self.config.metric == "euclidean":
            s = -torch.cdist(f, mu).pow(2)  # (N, C_seen)
        else:
            s = F.normalize(f, dim=1) @ F.normalize(mu, dim=1).T  # (N, C_seen)
        out = torch.full((len(f), self.num_classes), float("-inf"), dtype=torch.float64)
        out[:, seen] = s
        return out.float()

    def state_dict(self) -> dict:
        """The running sums (C, D) (None before any data) and counts (C,): all an NMC knows."""
        return {"sums": None if self.sums is None else self.sums.clone(), "counts": self.counts.clone()}

    def load_state_dict(self, state: dict) -> None:
        if state["counts"].shape != (self.num_classes,):
            raise ValueError(f"NMC: state for {tuple(state['counts'].shape)} classes, this NMC has {self.num_classes}")
        self.sums = None if state["sums"] is None else state["sums"].clone()
        self.counts = state["counts"].clone()
