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

Choosing α and τ. The paper's values were tuned per dataset for backbones trained on the base session;
on other backbones they are often not the best and can be worse than α = 0 (measured in
``reports/teen-sensitivity/``, ``benchmarks/teen_sensitivity.py``: on frozen post-ReLU features every
novel-to-base cosine is high, so at τ = 16 the softmax spreads over most base classes and a large α pulls
every novel prototype toward one base centroid). clproto's default is therefore ``alpha = tau = "auto"``:
the pair is chosen once per run, at the base session, by simulated few-shot sessions on the base
session's *training* data (never the test set; :mod:`clproto.strategies.teen_validation`), from
``alpha_grid`` × ``tau_grid``. A number fixes the value (``alpha = 0.5, tau = 16`` is the official
miniImageNet setting, ``strategies/teen-official.toml``); the pair used is written to the run's notes.
The trade-off: "auto" costs a few seconds at the base session and follows the backbone, but it optimises
the pseudo-sessions' harmonic mean of base and novel accuracy, which can differ from the metric a table reports.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from clproto.errors import ConfigError
from clproto.features.base_trained import check_sessions
from clproto.scenarios.scenario import Experience, Scenario
from clproto.strategies.base import ScenarioDescription
from clproto.strategies.teen_calibration import check_tau_alpha, calibrate  # noqa: F401 (calibrate is public here)
from clproto.strategies.nmc import NMC, NMCConfig
from clproto.strategies.teen_validation import select_alpha_tau


AUTO = "auto"  # a value of alpha / tau: chosen per run on the base session's training data (teen_validation.py)


@dataclass(frozen=True)
class TEENConfig:
    alpha: float | str = AUTO  # calibration weight α; "auto" = chosen on the base session from alpha_grid (official `shift_weight`: 0.1 CIFAR-100, 0.5 miniImageNet/CUB); 0 = ProtoNet
    tau: float | str = AUTO  # softmax temperature τ over base-class similarities; "auto" = chosen from tau_grid (official `softmax_t`: 16)
    alpha_grid: tuple[float, ...] = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)  # α candidates of "auto"
    tau_grid: tuple[float, ...] = (1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0)  # τ candidates of "auto"
    episodes: int = 10  # simulated few-shot sessions on the base session averaged by "auto"

    def __post_init__(self) -> None:
        for name, default in (("alpha", 0.5), ("tau", 16.0)):
            v = getattr(self, name)
            if isinstance(v, str):
                if v != AUTO:
                    raise ConfigError("expected a number or \"auto\"", field=name, value=v,
                                      expected=f'"auto" (chosen on the base session) or a number, e.g. {default}')
                continue
            check_tau_alpha(v if name == "tau" else 16.0, v if name == "alpha" else 0.5)
            object.__setattr__(self, name, float(v))
        for name in ("alpha_grid", "tau_grid"):
            grid = getattr(self, name)
            if not isinstance(grid, (list, tuple)) or not grid:
                raise ConfigError("must be a non-empty list of numbers", field=name, value=grid)
            for v in grid:
                check_tau_alpha(16.0 if name == "alpha_grid" else v, v if name == "alpha_grid" else 0.5)
            object.__setattr__(self, name, tuple(float(v) for v in grid))
        if isinstance(self.episodes, bool) or not isinstance(self.episodes, int) or self.episodes < 1:
            raise ConfigError("must be a positive integer", field="episodes", value=self.episodes,
                              expected="an integer >= 1 (default 10)")

    def candidates(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """The α values and τ values to choose from: a grid where "auto", else the one given value."""
        alphas = self.alpha_grid if self.alpha == AUTO else (self.alpha,)
        taus = self.tau_grid if self.tau == AUTO else (self.tau,)
        return alphas, taus


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
        self.seed = seed
        self.session_shape = (5, 5)  # (ways, shots) of the few-shot sessions; begin_scenario reads the real one
        alphas, taus = config.candidates()
        self.alpha, self.tau = alphas[0], taus[0]  # the pair in use (chosen at the base session where "auto")
        self.selection = None  # teen_validation.Selection of an "auto" choice, after the base session

    def begin_scenario(self, description: ScenarioDescription) -> None:
        """Remember the few-shot sessions' shape (ways, shots) for the base-session validation."""
        if len(description.experience_classes) > 1 and description.experience_classes[1]:
            ways = len(description.experience_classes[1])
            self.session_shape = (ways, max(1, description.train_sizes[1] // ways))

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
            alphas, taus = self.config.candidates()
            if len(alphas) * len(taus) > 1 and alphas != (0.0,) and len(classes) > 1:  # α = 0 ignores τ
                ways, shots = self.session_shape
                self.selection = select_alpha_tau(experience.train_x, experience.train_y, alphas=alphas, taus=taus,
                                                  ways=ways, shots=shots, episodes=self.config.episodes, seed=self.seed)
                self.alpha, self.tau = self.selection.alpha, self.selection.tau
        else:
            base = self.prototypes[self.base]  # (B, D)
            self.prototypes[classes] = calibrate(protos, base, tau=self.tau, alpha=self.alpha)
        self.seen[classes] = True

    def predict_scores(self, x: torch.Tensor) -> torch.Tensor:
        assert self.prototypes is not None, "TEEN has not seen any data"
        f = F.normalize(x.reshape(len(x), -1).double(), dim=1)  # (N, D)
        s = f @ F.normalize(self.prototypes[self.seen], dim=1).T  # (N, C_seen) cosine similarity
        out = torch.full((len(f), self.num_classes), float("-inf"), dtype=torch.float64)
        out[:, self.seen] = s
        return out.float()

    def run_notes(self) -> list[str]:
        """What the runner records in results.json ``notes``: the pair used, and how it was chosen."""
        if self.selection is None:
            return [f"teen: alpha = {self.alpha:g}, tau = {self.tau:g} (as configured)"]
        return [f"teen: alpha = {self.alpha:g}, tau = {self.tau:g} chosen on the base session "
                f"(pseudo-session harmonic mean {100 * self.selection.score:.2f} %, {self.config.episodes} episodes)"]

    def state_dict(self) -> dict:
        return {"prototypes": self.prototypes, "seen": self.seen.clone(), "base": self.base.clone(),
                "alpha": float(self.alpha), "tau": float(self.tau)}

    def load_state_dict(self, state: dict) -> None:
        self.prototypes = state["prototypes"]
        self.seen = state["seen"].clone()
        self.base = state["base"].clone()
        self.alpha = float(state.get("alpha", self.config.alpha))
        self.tau = float(state.get("tau", self.config.tau))
