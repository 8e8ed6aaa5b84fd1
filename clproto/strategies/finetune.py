"""Fine-tuning: the lower bound of class-incremental learning.

A network trained from scratch with a single linear head over all classes and plain
cross-entropy on each new experience, nothing protecting earlier classes (the "Fine-tune" /
"SGD" row of e.g. Mammoth, Buzzega et al., NeurIPS 2020, and of PRD's tables, Asadi et al.,
ICML 2023). The loss of a sample ``(x, y)`` is

    L = − log softmax_{c ∈ seen}( W f(x) + b )_y

with the softmax over the classes seen so far (unseen classes' logits are masked out, so they
receive no push-down before they appear). Prediction: the logits of seen classes, ``-inf`` for
the others. Same backbone, optimiser and budget as PRD and joint training (:mod:`clproto.training.loop`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from clproto.context import RunContext
from clproto.data.rows import ImageRows
from clproto.errors import ConfigError
from clproto.nets import build_network
from clproto.scenarios.scenario import Experience
from clproto.training.loop import TrainingConfig, TrainingLoop, maybe_compile, seeded


@dataclass(frozen=True)
class FineTuneConfig(TrainingConfig):
    """Only the shared training fields (architecture, epochs, optimiser, schedule, augmentation)."""


class FineTune:
    """Fine-tuning with cross-entropy and no protection against forgetting (lower bound)."""

    Config = FineTuneConfig
    input_kind = "images"

    def __init__(self, *, config: FineTuneConfig = FineTuneConfig(), num_classes: int, seed: int = 0,
                 context: RunContext | None = None) -> None:
        self.config = config
        self.num_classes = num_classes
        self.seed = seed
        # progress bars and listeners from the run's context; shuffles and augmentation seeded by the run seed
        self.loop = TrainingLoop(config=config, seed=seed, context=context if context is not None else RunContext(seed=seed))
        self.backbone: nn.Module | None = None  # built at the first experience (input channels known then)
        self.classifier: nn.Linear | None = None  # (feature_dim -> num_classes)
        self.in_channels = 0
        self.device = self.loop.device  # the run's device: the network and the masks live there
        self.seen = torch.zeros(num_classes, dtype=torch.bool, device=self.device)  # (C,) classes trained on so far
        self.train_backbone: nn.Module | None = None  # the backbone for training steps: itself, or torch.compile of it

    def _build(self, in_channels: int) -> None:
        with seeded(self.seed, self.device):  # drawn on the CPU (the same on every device), then placed
            self.backbone = self.loop.place(build_network(self.config.architecture, in_channels=in_channels))
            self.classifier = self.loop.place(nn.Linear(self.backbone.feature_dim, self.num_classes))
        self.train_backbone = maybe_compile(self.backbone, self.config.compile)
        self.in_channels = in_channels
        self.backbone.eval()

    def fit_experience(self, experience: Experience) -> None:
        if len(experience.train_indices) == 0:
            raise ConfigError(f"experience {experience.index} has no training samples", field="dataset")
        self.train_on(experience.train_rows, experience.train_y, classes=experience.classes,
                      experience=experience.index, desc="finetune")

    def train_on(self, x: "torch.Tensor | ImageRows", y: torch.Tensor, *, classes, experience: int,
                 desc: str) -> list[float]:
        """Cross-entropy training on uint8 images ``x`` (N, H, W, C; a tensor or rows of the store, streamed) with
        labels ``y`` (N,); ``classes`` become seen."""
        if self.backbone is None:
            self._build(int(x.shape[-1]))
        self.seen[list(classes)] = True
        unseen = ~self.seen  # (C,)

        def loss_fn(views: list[torch.Tensor], yb: torch.Tensor) -> torch.Tensor:
            logits = self.classifier(self.train_backbone(views[0])).masked_fill(unseen, float("-inf"))  # (B, C)
            return F.cross_entropy(logits, yb), logits.detach()  # scores for the loop's listeners

        params = list(self.backbone.parameters()) + list(self.classifier.parameters())
        return self.loop.run(modules=[self.backbone, self.classifier], groups=[{"params": params}], x=x, y=y,
                             loss_fn=loss_fn, views=1, experience=experience, desc=desc)

    def predict_scores(self, x: torch.Tensor) -> torch.Tensor:
        assert self.backbone is not None, "FineTune has not been trained"
        with self.loop.context.autocast():  # on the run's device, at its precision; scores in float32
            logits = self.classifier(self.backbone(self.loop.to_input(x))).float()  # (N, C)
        return logits.masked_fill(~self.seen, float("-inf"))

    def state_dict(self) -> dict:
        return {
            "in_channels": self.in_channels,
            "backbone": self.backbone.state_dict() if self.backbone is not None else None,
            "classifier": self.classifier.state_dict() if self.classifier is not None else None,
            "seen": self.seen.clone(),
            "loop": self.loop.state_dict(),
        }

    def load_state_dict(self, state: dict) -> None:
        if state["backbone"] is not None:
            self._build(state["in_channels"])
            self.backbone.load_state_dict(state["backbone"])
            self.classifier.load_state_dict(state["classifier"])
        self.seen = state["seen"].to(self.device).clone()
        self.loop.load_state_dict(state["loop"])
