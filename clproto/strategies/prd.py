"""PRD: replay-free continual learning by prototype-sample relation distillation.

Asadi, Davari, Mudur, Aljundi & Belilovsky, "Prototype-Sample Relation Distillation: Towards
Replay-Free Continual Learning", ICML 2023 (arXiv:2303.14771); checked against the official code,
github.com/naderAsadi/Probing-Continual-Learning, ``methods/repe.py`` (class ``RePE``).

A backbone f (trained from scratch) with an MLP projection head g, and one learnable prototype
p_c per class living in f's feature space. On experience t, with two augmented views of every
sample and no stored samples of earlier experiences, the loss is

    L = L_supcon + λ_p · L_p + λ_d · L_d

* L_supcon — supervised contrastive loss (Khosla et al. 2020) on ``normalize(g(f(x)))`` over both
  views, temperature τ = 0.1 (:func:`clproto.losses.supcon_loss`);
* L_p — prototype loss on the current experience's classes, mean of ``1 − cos(sg[f(x)], p_y)``
  with the features detached (sg = stop-gradient), so L_p moves only the new prototypes
  (:func:`clproto.losses.prototype_loss`);
* L_d — relation distillation, summed over every earlier experience k with prototypes P_k:
  ``KL( softmax(s_old / T) ‖ softmax(s / T) )`` where ``s = f(x) · p / ‖p‖`` are the current
  model's scores of the current batch against the current P_k and ``s_old`` those of the frozen
  model and prototypes saved after experience t−1 (:func:`clproto.losses.relation_distillation`).
  Its gradient reaches the backbone and the *old* prototypes, which is how the old prototypes
  keep up with the drifting feature space without any old data.

Defaults: λ_p = 2, λ_d = 4, T = 1, separate prototype learning rate 0.01 with no momentum or
weight decay (as the code's optimiser groups). Class-incremental prediction: cosine similarity
between f(x) and the prototypes of the classes **seen so far**; the official ``_classify_CI``
scores every task's prototypes including not-yet-trained ones (randomly initialised heads of
future tasks), which we do not copy: unseen classes score ``-inf``. Task-incremental accuracy
(the evaluator's argmax within a task's classes) is then the code's ``_classify``.

Paper vs. code. The code's softmax in L_d runs over a task's prototypes for each sample
(``relation_axis = "prototypes"``, the default here); our reading of the paper's formulation is a
distribution over the batch's samples for each prototype (``relation_axis = "samples"``,
selectable). The code computes cross-entropy ``−Σ q log p`` rather than KL; the two differ by
the teacher's entropy, a constant, so the gradients are identical — we report the KL. The code
keeps the frozen teacher network in training mode (batch-norm batch statistics), and so do we.
The code builds one SGD optimiser for the whole stream; ours (the shared loop) is rebuilt per
experience with the configured schedule.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from clproto.context import RunContext
from clproto.errors import ConfigError
from clproto.losses import RELATION_AXES, prototype_loss, relation_distillation, relation_scores, supcon_loss
from clproto.nets import build_network
from clproto.scenarios.scenario import Experience
from clproto.training.loop import TrainingConfig, TrainingLoop, maybe_compile, seeded


@dataclass(frozen=True)
class PRDConfig(TrainingConfig):
    lambda_prototype: float = 2.0  # λ_p, weight of the prototype loss (paper: 2)
    lambda_distill: float = 4.0  # λ_d, weight of relation distillation (paper: 4); 0 = the no-distillation ablation
    supcon_temperature: float = 0.1  # τ of the supervised contrastive loss
    base_temperature: float = 0.07  # τ_b: SupCon's reference code scales the loss by τ/τ_b (PRD's code keeps it)
    distill_temperature: float = 1.0  # T of the relation softmax
    relation_axis: str = "prototypes"  # softmax over "prototypes" per sample (code) or over "samples" per prototype (paper)
    prototype_lr: float = 0.01  # learning rate of the prototypes (code: --prototypes_lr 0.01, no momentum/decay)
    projection_hidden: int = 512  # hidden width of the projection MLP (code: 512)
    projection_dim: int = 128  # output width of the projection MLP (code: 128)

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("lambda_prototype", "supcon_temperature", "base_temperature", "distill_temperature", "prototype_lr"):
            if not getattr(self, name) > 0:
                raise ConfigError("must be positive", field=name, value=getattr(self, name), expected="a number > 0")
        if not self.lambda_distill >= 0:
            raise ConfigError("must not be negative", field="lambda_distill", value=self.lambda_distill,
                              expected="a number >= 0 (0 switches relation distillation off)")
        if self.relation_axis not in RELATION_AXES:
            raise ConfigError("unknown relation axis", field="relation_axis", value=self.relation_axis,
                              expected='"prototypes" (official code) or "samples" (paper)')
        for name in ("projection_hidden", "projection_dim"):
            if getattr(self, name) < 1:
                raise ConfigError("must be at least 1", field=name, value=getattr(self, name))


class PRD:
    """Prototype-sample relation distillation (Asadi et al., ICML 2023), replay-free."""

    Config = PRDConfig
    input_kind = "images"

    def __init__(self, *, config: PRDConfig = PRDConfig(), num_classes: int, seed: int = 0,
                 context: RunContext | None = None) -> None:
        self.config = config
        self.num_classes = num_classes
        self.seed = seed
        # progress bars and listeners from the run's context; shuffles and augmentation seeded by the run seed
        self.loop = TrainingLoop(config=config, seed=seed, context=context if context is not None else RunContext(seed=seed))
        self.in_channels = 0
        self.backbone: nn.Module | None = None  # f, built at the first experience
        self.head: nn.Module | None = None  # g, projection MLP for SupCon
        self.prototypes: nn.Parameter | None = None  # (C, D) one prototype per class, in f's feature space
        self.teacher: nn.Module | None = None  # frozen copy of f after the previous experience
        self.teacher_prototypes: torch.Tensor | None = None  # (C, D) prototypes after the previous experience
        self.tasks: list[tuple[int, ...]] = []  # classes of every finished experience
        self.device = self.loop.device  # the run's device: networks, prototypes and masks live there
        self.seen = torch.zeros(num_classes, dtype=torch.bool, device=self.device)  # (C,)
        self.train_backbone: nn.Module | None = None  # f for training steps: f itself, or torch.compile(f)
        self._last_terms: dict[str, torch.Tensor] = {}  # detached loss terms of the last step (read on demand)

    @property
    def last_losses(self) -> dict[str, float]:
        """Loss terms of the last step (for inspection; reading them synchronises with the device)."""
        return {k: float(v) for k, v in self._last_terms.items()}

    def _build(self, in_channels: int) -> None:
        cfg = self.config
        with seeded(self.seed, self.device):  # drawn on the CPU (the same on every device), then placed
            self.backbone = self.loop.place(build_network(cfg.architecture, in_channels=in_channels))
            d = self.backbone.feature_dim
            self.head = self.loop.place(nn.Sequential(nn.Linear(d, cfg.projection_hidden), nn.ReLU(),
                                                      nn.Linear(cfg.projection_hidden, cfg.projection_dim)))
            bound = 1.0 / d ** 0.5  # nn.Linear's default range, as the code's bias-free linear heads
            self.prototypes = nn.Parameter(torch.empty(self.num_classes, d).uniform_(-bound, bound).to(self.device))
        self.train_backbone = maybe_compile(self.backbone, cfg.compile)
        self.in_channels = in_channels
        self.backbone.eval()
        self.head.eval()

    # ------------------------------------------------------------------ training
    def loss(self, views: list[torch.Tensor], y: torch.Tensor, *, current: torch.Tensor, local: torch.Tensor) -> torch.Tensor:
        """Total PRD loss of one batch: two views (B, C, H, W), labels y (B,).

        ``current`` (K,) are the current experience's classes, ``local`` (C,) maps a label to its
        position in ``current``.
        """
        return self.training_loss(views, y, current=current, local=local)[0]

    def training_loss(self, views: list[torch.Tensor], y: torch.Tensor, *, current: torch.Tensor,
                      local: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`loss` and the batch's detached scores (B, C) for the training loop's listeners:
        cosine of the first view's features to the prototypes of the classes seen so far (current
        ones included), ``-inf`` for the others."""
        cfg = self.config
        B = len(y)
        x = torch.cat(views)  # (2B, C, H, W)
        f = self.train_backbone(x)  # (2B, D)
        z = F.normalize(self.head(f), dim=1)  # (2B, P)
        z = torch.stack(z.split(B), dim=1)  # (B, 2, P)
        l_sup = supcon_loss(z, y, temperature=cfg.supcon_temperature, base_temperature=cfg.base_temperature)
        y2 = y.repeat(2)  # (2B,) labels of both views
        l_p = prototype_loss(f.detach(), self.prototypes[current], local[y2])
        l_d = torch.zeros((), device=f.device)
        if self.tasks and cfg.lambda_distill > 0:
            with torch.no_grad():
                f_old = self.teacher(x)  # (2B, D)
            for classes in self.tasks:
                idx = torch.tensor(classes, device=f.device)
                s = relation_scores(f, self.prototypes[idx])  # (2B, K_k)
                s_old = relation_scores(f_old, self.teacher_prototypes[idx])  # (2B, K_k)
                l_d = l_d + relation_distillation(s, s_old, temperature=cfg.distill_temperature, axis=cfg.relation_axis)
        self._last_terms = {"supcon": l_sup.detach(), "prototype": l_p.detach(), "distill": l_d.detach()}
        with torch.no_grad():
            known = self.seen.clone()  # (C,)
            known[current] = True
            cos = F.normalize(f[:B].detach(), dim=1) @ F.normalize(self.prototypes.detach(), dim=1).T  # (B, C)
            scores = cos.masked_fill(~known, float("-inf"))  # (B, C)
        return l_sup + cfg.lambda_prototype * l_p + cfg.lambda_distill * l_d, scores

    @staticmethod
    def check_scenario(scenario, params: PRDConfig, *, where: str = "scenario") -> None:
        """Reject, before any training, experiences too small for contrastive pairs (called by Runner.check)."""
        for experience in scenario:
            _check_experience(experience, where=where)

    def fit_experience(self, experience: Experience) -> None:
        _check_experience(experience, where="scenario")
        x, y = experience.train_rows, experience.train_y  # (N, H, W, C) uint8 rows of the store (streamed), (N,)
        if self.backbone is None:
            self._build(int(x.shape[-1]))
        current = torch.tensor(experience.classes, device=self.device)  # (K,)
        local = torch.full((self.num_classes,), -1, dtype=torch.long, device=self.device)  # (C,)
        local[current] = torch.arange(len(current), device=self.device)
        cfg = self.config
        groups = [
            {"params": list(self.backbone.parameters()) + list(self.head.parameters())},
            {"params": [self.prototypes], "lr": cfg.prototype_lr, "momentum": 0.0, "weight_decay": 0.0},
        ]
        self.loop.run(modules=[self.backbone, self.head], groups=groups, x=x, y=y, views=2,
                      loss_fn=lambda v, yb: self.training_loss(v, yb, current=current, local=local),
                      experience=experience.index, desc="prd")
        self.seen[current] = True
        self.tasks.append(tuple(experience.classes))
        self._freeze_teacher()

    def _freeze_teacher(self) -> None:
        self.teacher = copy.deepcopy(self.backbone)
        self.teacher.requires_grad_(False)
        self.teacher.train()  # as the official code: the teacher normalises with batch statistics
        self.teacher_prototypes = self.prototypes.detach().clone()

    # ------------------------------------------------------------------ prediction
    def predict_scores(self, x: torch.Tensor) -> torch.Tensor:
        """Cosine similarity of f(x) to the prototypes of seen classes; -inf for unseen classes."""
        assert self.backbone is not None, "PRD has not been trained"
        with self.loop.context.autocast():  # on the run's device, at its precision; scores in float32
            f = F.normalize(self.backbone(self.loop.to_input(x)).float(), dim=1)  # (N, D)
        p = F.normalize(self.prototypes.detach(), dim=1)  # (C, D)
        return (f @ p.T).masked_fill(~self.seen, float("-inf"))  # (N, C)

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict:
        built = self.backbone is not None
        return {
            "in_channels": self.in_channels,
            "backbone": self.backbone.state_dict() if built else None,
            "head": self.head.state_dict() if built else None,
            "prototypes": self.prototypes.detach().clone() if built else None,
            "teacher": self.teacher.state_dict() if self.teacher is not None else None,
            "teacher_prototypes": self.teacher_prototypes,
            "tasks": [list(t) for t in self.tasks],
            "seen": self.seen.clone(),
            "loop": self.loop.state_dict(),
        }

    def load_state_dict(self, state: dict) -> None:
        if state["backbone"] is not None:
            self._build(state["in_channels"])
            self.backbone.load_state_dict(state["backbone"])
            self.head.load_state_dict(state["head"])
            with torch.no_grad():
                self.prototypes.copy_(state["prototypes"])
        self.tasks = [tuple(t) for t in state["tasks"]]
        if state["teacher"] is not None:
            self._freeze_teacher()
            self.teacher.load_state_dict(state["teacher"])
            self.teacher_prototypes = state["teacher_prototypes"].to(self.device).clone()
        self.seen = state["seen"].to(self.device).clone()
        self.loop.load_state_dict(state["loop"])


def _check_experience(experience: Experience, *, where: str) -> None:
    n = len(experience.train_indices)
    if n < 2:
        raise ConfigError(
            f"experience {experience.index} has {n} training sample(s), but PRD's supervised contrastive loss "
            "needs pairs", where=where, field="shots" if experience.base_classes else "train_per_class", value=n,
            expected="at least 2 training samples in every experience")
