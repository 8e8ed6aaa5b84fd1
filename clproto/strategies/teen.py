"""TEEN: training-free prototype calibration for few-shot class-incremental learning.

Wang, Zhou, Ye & Zhan, "Few-Shot Class-Incremental Learning via Training-Free Prototype
Calibration", NeurIPS 2023 (official code github.com/wangkiw/TEEN). The backbone is trained on the
base session only and then frozen (here: a ``base-trained:`` backbone, or frozen pretrained
features). Every class is represented by its prototype, the mean feature of its training samples
(the official ``update_fc_avg`` / ``replace_base_fc`` average the *unnormalised* features under the
test transform; so do we). New-class prototypes are biased toward the base classes, so each new
prototype is fused with a similarity-weighted mix of base prototypes (Sec. 4, Eq. 4-6; ``soft_calibration``
in ``models/teen/Network.py``):

    P_b = normalise(base prototypes),  p_i = normalise(new prototype i)
    w_ib = softmax_b(τ · cos(p_i, P_b))          (over the base classes only)
    Δ_i = normalise(Σ_b w_ib P_b)
    p̂_i = (1 − α) p_i + α Δ_i

Base prototypes are never calibrated, and a session's new prototypes are calibrated against the
base prototypes only (not against earlier new classes). Prediction is the cosine similarity between
a sample's feature and every seen class's prototype (Eq. 1 with the cosine classifier).
Defaults of the official scripts: τ = 16 (``softmax_t``); α (``shift_weight``) = 0.1 on CIFAR-100,
0.5 on miniImageNet and CUB-200. α = 0 is the uncalibrated prototype classifier (ProtoNet / NMC
with cosine scoring), the paper's baseline.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from clproto.errors import ConfigError
from clproto.features.base_trained import check_sessions
from clproto.scenarios.scenario import Experience, Scenario
from clproto.strategies.nmc import NMC, NMCConfig


def _check_tau_alpha(tau: float, alpha: float) -> None:
    if isinstance(tau, bool) or not isinstance(tau, (int, float)) or not math.isfinite(tau) or tau <= 0:
        raise ConfigError("the softmax temperature must be positive", field="tau", value=tau,
                          expected="a finite number > 0 (TEEN default 16)")
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0 <= alpha <= 1:
        raise ConfigError("the calibration weight must lie in [0, 1]", field="alpha", value=alpha,
                          expected="0 <= alpha <= 1 (0.1 for CIFAR-style, 0.5 for miniImageNet/CUB-style data)")


def calibrate(novel_prototypes: torch.Tensor, base_prototypes: torch.Tensor, *, tau: float, alpha: float) -> torch.Tensor:
    """TEEN's calibrated prototypes ``p̂_i = (1 − α) p_i + α normalise(Σ_b softmax_b(τ cos(p_i, P_b)) P_b)``.

    ``novel_prototypes`` (M, D) and ``base_prototypes`` (B, D) need not be normalised; the result
    (M, D) is not re-normalised (as in the official code; scoring is by cosine anyway). Pure function.
    """
    _check_tau_alpha(tau, alpha)
    if novel_prototypes.ndim != 2 or base_prototypes.ndim != 2 or novel_prototypes.shape[1] != base_prototypes.shape[1]:
        raise ValueError(f"calibrate: expected (M, D) and (B, D) prototypes, got {tuple(novel_prototypes.shape)} "
                         f"and {tuple(base_prototypes.shape)}")
    if len(base_prototypes) == 0:
        raise ValueError("calibrate: there are no base prototypes to calibrate with")
    p = F.normalize(novel_prototypes, dim=1)  # (M, D)
    base = F.normalize(base_prototypes, dim=1)  # (B, D)
    weights = torch.softmax(tau * (p @ base.T), dim=1)  # (M, B), rows sum to 1
    delta = F.normalize(weights @ base, dim=1)  # (M, D)
    return (1.0 - alpha) * p + alpha * delta  # (M, D)


@dataclass(frozen=True)
class TEENConfig:
    tau: float = 16.0  # softmax temperature τ over base-class similarities (official `softmax_t`: 16)
    alpha: float = 0.5  # calibration weight α (official `shift_weight`: 0.1 CIFAR-100, 0.5 miniImageNet/CUB); 0 = ProtoNet

    def __post_init__(self) -> None:
        _check_tau_alpha(self.tau, self.alpha)


class TEEN:
    """TEEN: prototype classifier with training-free calibration of new-class prototypes (Wang et al., NeurIPS 2023)."""

    Config = TEENConfig
    input_kind = "features"
    checkpoint_runs = False  # training-free: refitting beats writing its statistics after every experience
    scenario_kinds = ("few-shot",)  # calibrates toward the base session's prototypes: needs a base session

    def __init__(self, *, config: TEENConfig = TEENConfig(), num_classes: int, seed: int = 0) -> None:
        self.config = config
        self.num_classes = num_classes
        self.prototypes: torch.Tensor | None = None  # (C, D) float64; rows of unseen classes are unused
        self.seen = torch.zeros(num_classes, dtype=torch.bool)  # (C,)
        self.base = torch.zeros(num_classes, dtype=torch.bool)  # (C,) classes of the base session

    @staticmethod
    def check_scenario(scenario: Scenario, params: TEENConfig, *, where: str = "scenario") -> None:
        """Before any run: the base session has classes and every class of every session has shots."""
        check_sessions(scenario, where=where)

    def fit_experience(self, experience: Experience) -> None:
        """The first experience is the base session (its prototypes are kept as is); later ones are calibrated."""
        # this session's class means of unnormalised features, by NMC's chunked running sums
        session = NMC(config=NMCConfig(normalize=False), num_classes=self.num_classes)
        session.fit_experience(experience)
        classes = torch.tensor(experience.classes, dtype=torch.long)  # (M,)
        counts = session.counts[classes]  # (M,)
        if len(classes) == 0 or (counts == 0).any():
            empty = classes[counts == 0].tolist() if len(classes) else "all"
            raise ConfigError(f"experience {experience.index} has classes without training samples (shots)",
                              field="shots", value=empty, expected="at least one training sample per class")
        protos = session.means[classes]  # (M, D)
        if self.prototypes is None:
            self.prototypes = torch.zeros(self.num_classes, protos.shape[1], dtype=torch.float64)
        if not self.base.any():
            self.prototypes[classes] = F.normalize(protos, dim=1)
            self.base[classes] = True
        else:
            base = self.prototypes[self.base]  # (B, D)
            self.prototypes[classes] = calibrate(protos, base, tau=self.config.tau, alpha=self.config.alpha)
        self.seen[classes] = True

    def predict_scores(self, x: torch.Tensor) -> torch.Tensor:
        assert self.prototypes is not None, "TEEN has not seen any data"
        f = F.normalize(x.reshape(len(x), -1).double(), dim=1)  # (N, D)
        s = f @ F.normalize(self.prototypes[self.seen], dim=1).T  # (N, C_seen) cosine similarity
        out = torch.full((len(f), self.num_classes), float("-inf"), dtype=torch.float64)
        out[:, self.seen] = s
        return out.float()

    def state_dict(self) -> dict:
        return {"prototypes": self.prototypes, "seen": self.seen.clone(), "base": self.base.clone()}

    def load_state_dict(self, state: dict) -> None:
        self.prototypes = state["prototypes"]
        self.seen = state["seen"].clone()
        self.base = state["base"].clone()
