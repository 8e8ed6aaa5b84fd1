"""The training loop shared by every network clproto trains on uint8 images.

One call of :meth:`TrainingLoop.run` trains for ``epochs`` passes over one experience's
training set: a seeded shuffle, mini-batches of ``batch_size``, ``views`` independently
augmented copies of each batch (random crop with zero padding + horizontal flip, done batched
on the uint8 tensor before a single conversion to float: :mod:`clproto.training.inputs`), the
caller's loss, one optimiser step. The optimiser (SGD, SGD with Nesterov momentum, or Adam) and
its learning-rate schedule are rebuilt for every experience from the caller's
:class:`TrainingConfig`; the only state carried between experiences is the random generator, so a
checkpoint after an experience resumes exactly. The strategies (fine-tuning, joint, PRD) and
base-session training (:mod:`clproto.training.base_session`, the loop plus a cosine head) use it.

How the loop runs — progress bars, listeners — comes from the :class:`~clproto.context.RunContext`
it is given; the input scaling from the :class:`~clproto.training.inputs.Normalization` of the
network it trains. The loop creates no threads of its own: ``torch.set_num_threads`` (the CLI's
``--threads``) decides the parallelism. A non-finite loss stops training at once with
:class:`DivergedError` naming the experience, epoch and step; the runner's checkpoint of the
previous experience is left untouched.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass, field
from typing import Callable, Iterable

import torch
import torch.nn as nn

from clproto.context import RunContext
from clproto.errors import ConfigError
from clproto.progress import progress_bar
from clproto.training.inputs import Normalization, augment, to_input

OPTIMIZERS = ("sgd", "nesterov", "adam")  # "nesterov": SGD with Nesterov momentum
# per experience: "cosine" sets the lr once per epoch, "cosine-steps" after every step (torch's CosineAnnealingLR)
SCHEDULES = ("constant", "cosine", "cosine-steps", "step")

# (views of (B,C,H,W), labels (B,)) -> scalar loss, or (scalar loss, detached scores (B, C)) for listeners
LossFn = Callable[[list[torch.Tensor], torch.Tensor], "torch.Tensor | tuple[torch.Tensor, torch.Tensor]"]


@dataclass(frozen=True)
class TrainingEvent:
    """What :attr:`TrainingLoop.listeners` are told, in order: per epoch ``epoch_start``, one ``step``
    after every optimiser step, ``epoch_end``. Used by the Avalanche adapter to feed its loss metrics."""

    kind: str  # "epoch_start" | "step" | "epoch_end"
    experience: int  # index of the experience being trained
    epoch: int  # epoch within this experience, from 0
    step: int  # optimiser steps taken so far in this experience (after this one, for "step")
    loss: float = float("nan")  # step: the batch's loss; epoch_end: the epoch's sample-weighted mean loss
    inputs: "torch.Tensor | None" = None  # step: first augmented view (B, C, H, W)
    targets: "torch.Tensor | None" = None  # step: labels (B,)
    scores: "torch.Tensor | None" = None  # step: the strategy's detached training scores (B, C), if it gives them
    lr: float = float("nan")  # epoch_start: the learning rate of the first parameter group for this epoch


class DivergedError(ConfigError):
    """The loss became NaN or infinite; usually a learning rate that is too high."""


@dataclass(frozen=True)
class TrainingConfig:
    """Optimisation fields every trained strategy's ``Config`` extends."""

    architecture: str = "resnet18-reduced"  # network from clproto.nets: resnet20, resnet18, resnet18-reduced
    epochs: int = 1  # passes over each experience's training set
    batch_size: int = 64  # samples per step (before the views are made)
    optimizer: str = "sgd"  # "sgd" (with momentum), "nesterov" (SGD with Nesterov momentum) or "adam"
    lr: float = 0.05  # initial learning rate of the network
    momentum: float = 0.9  # SGD momentum (ignored by Adam)
    weight_decay: float = 1e-4  # L2 penalty on the network's weights
    schedule: str = "cosine"  # per experience: "constant", "cosine" (to 0 over the epochs), "cosine-steps" or "step"
    milestones: list = field(default_factory=list)  # "step": epochs after which lr is multiplied by gamma
    gamma: float = 0.1  # "step": decay factor
    crop_padding: int = 4  # random crop after zero padding by this many pixels (0 = no crop)
    flip: bool = True  # random horizontal flip (turn off for digits)

    def __post_init__(self) -> None:
        from clproto.nets import ARCHITECTURES

        if self.architecture not in ARCHITECTURES:
            raise ConfigError("unknown architecture", field="architecture", value=self.architecture,
                              expected="one of " + ", ".join(ARCHITECTURES))
        for name in ("epochs", "batch_size"):
            if getattr(self, name) < 1:
                raise ConfigError("must be at least 1", field=name, value=getattr(self, name))
        if self.optimizer not in OPTIMIZERS:
            raise ConfigError("unknown optimizer", field="optimizer", value=self.optimizer, expected=" or ".join(OPTIMIZERS))
        if self.schedule not in SCHEDULES:
            raise ConfigError("unknown schedule", field="schedule", value=self.schedule, expected=", ".join(SCHEDULES))
        if not self.lr > 0:
            raise ConfigError("must be positive", field="lr", value=self.lr)
        if self.optimizer == "nesterov" and not self.momentum > 0:
            raise ConfigError("Nesterov momentum needs a positive momentum", field="momentum", value=self.momentum,
                              expected='a momentum > 0, or optimizer = "sgd"')
        for name in ("momentum", "weight_decay", "crop_padding"):
            if getattr(self, name) < 0:
                raise ConfigError("must not be negative", field=name, value=getattr(self, name))
        if not 0 < self.gamma <= 1:
            raise ConfigError("must lie in (0, 1]", field="gamma", value=self.gamma)
        if any(isinstance(m, bool) or not isinstance(m, int) or m < 1 for m in self.milestones):
            raise ConfigError("milestones must be positive epoch numbers", field="milestones", value=self.milestones)


# --------------------------------------------------------------------------- optimisation
def lr_factor(config: TrainingConfig, epoch: int) -> float:
    """Multiplier of the initial learning rate during ``epoch`` (0-based) of an experience ("cosine-steps"
    changes the rate after every step instead: :meth:`TrainingLoop.run` applies it, this gives 1)."""
    if config.schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * epoch / config.epochs))
    if config.schedule == "step":
        return config.gamma ** sum(1 for m in config.milestones if epoch >= m)
    return 1.0


def build_optimizer(config: TrainingConfig, groups: Iterable[dict]) -> torch.optim.Optimizer:
    """``groups`` are torch parameter groups; a group may override lr, momentum, weight_decay."""
    groups = [dict(g) for g in groups]  # never mutate the caller's dicts
    if config.optimizer == "adam":
        for g in groups:
            g.pop("momentum", None)
        return torch.optim.Adam(groups, lr=config.lr, weight_decay=config.weight_decay)
    return torch.optim.SGD(groups, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay,
                           nesterov=config.optimizer == "nesterov")


def batch_count(n: int, batch_size: int, *, merge_lone: bool = True) -> int:
    """How many batches :func:`batches` cuts ``n`` samples into."""
    count = math.ceil(n / batch_size)
    return count - 1 if merge_lone and count > 1 and n % batch_size == 1 else count


def batches(n: int, batch_size: int, generator: torch.Generator, *, merge_lone: bool = True) -> list[torch.Tensor]:
    """A seeded shuffle of ``range(n)`` cut into batches; with ``merge_lone`` a trailing batch of one sample
    joins the previous one (a one-sample batch breaks batch norm after pooling and contrastive pairs)."""
    order = torch.randperm(n, generator=generator)  # (n,)
    parts = list(order.split(batch_size))
    if merge_lone and len(parts) > 1 and len(parts[-1]) == 1:
        parts[-2] = torch.cat(parts[-2:])
        parts.pop()
    return parts


# --------------------------------------------------------------------------- the loop
class TrainingLoop:
    """Runs the epochs of one experience; holds the seeded generator (its only state). Keyword-only."""

    def __init__(self, *, config: TrainingConfig, seed: int, context: RunContext = RunContext(),
                 normalization: Normalization = Normalization(), merge_lone_batch: bool = True) -> None:
        self.config = config
        self.context = context  # progress bars and the run's listeners
        self.normalization = normalization  # input scaling of the trained network (predictions must use it too)
        # a trailing one-sample batch joins the previous one; base-session training keeps it alone (as it always did)
        self.merge_lone_batch = merge_lone_batch
        self.generator = torch.Generator().manual_seed(seed)  # shuffles and augmentation; seed: the caller's
        # called with a TrainingEvent at every epoch start/end and after every step; public on purpose
        # (ClprotoTemplate attaches one for the duration of a fit); not part of the checkpoint. The
        # context's listeners are told first.
        self.listeners: list[Callable[[TrainingEvent], None]] = []

    def _tell(self, event: TrainingEvent) -> None:
        for listener in (*self.context.listeners, *self.listeners):
            listener(event)

    def state_dict(self) -> dict:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["generator"])

    def to_input(self, x: torch.Tensor) -> torch.Tensor:
        """uint8 ``(B, H, W, C)`` -> the network's float input ``(B, C, H, W)``, no augmentation (predictions)."""
        return to_input(x, self.normalization)

    def views(self, x: torch.Tensor, count: int) -> list[torch.Tensor]:
        """``count`` augmented float views ``(B, C, H, W)`` of uint8 images ``(B, H, W, C)``."""
        cfg = self.config
        if cfg.crop_padding == 0 and not cfg.flip:
            return [self.to_input(x)] * count
        return [self.to_input(augment(x, padding=cfg.crop_padding, flip=cfg.flip, generator=self.generator))
                for _ in range(count)]

    def run(self, *, modules: list[nn.Module], groups: list[dict], x: torch.Tensor, y: torch.Tensor,
            loss_fn: LossFn, views: int = 1, experience: int = 0, desc: str = "train") -> list[float]:
        """Train ``modules`` (put in train mode at every epoch) on uint8 images ``x`` (N, H, W, C), labels ``y`` (N,).

        ``groups`` are the optimiser's parameter groups. Returns the mean loss of every epoch.
        """
        cfg = self.config
        optimizer = build_optimizer(cfg, groups)
        base_lrs = [g["lr"] for g in optimizer.param_groups]
        per_step = None  # "cosine-steps": torch's cosine annealing over every step of this experience, to 0
        if cfg.schedule == "cosine-steps":
            steps = cfg.epochs * batch_count(len(y), cfg.batch_size, merge_lone=self.merge_lone_batch)
            per_step = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps)
        epoch_losses: list[float] = []
        step = 0
        for epoch in progress_bar(range(cfg.epochs), desc=f"{desc} exp {experience}", enabled=self.context.progress,
                                  unit="epoch"):
            for m in modules:  # listeners may have evaluated them between epochs
                m.train()
            if per_step is None:
                factor = lr_factor(cfg, epoch)
                for g, lr in zip(optimizer.param_groups, base_lrs):
                    g["lr"] = lr * factor
            total, count = 0.0, 0
            self._tell(TrainingEvent("epoch_start", experience, epoch, step, lr=optimizer.param_groups[0]["lr"]))
            for idx in batches(len(y), cfg.batch_size, self.generator, merge_lone=self.merge_lone_batch):
                inputs = self.views(x[idx], views)  # views × (B, C, H, W)
                out = loss_fn(inputs, y[idx])
                loss, scores = out if isinstance(out, tuple) else (out, None)
                value = loss.item()
                if not math.isfinite(value):
                    raise DivergedError(
                        f"training diverged: the loss is {value} at experience {experience}, epoch {epoch}, "
                        f"step {step}; the run stopped and the checkpoint of the previous experience is kept",
                        field="params.lr", value=cfg.lr, expected="a smaller learning rate (or check the inputs)",
                    )
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                if per_step is not None:
                    per_step.step()
                total += value * len(idx)
                count += len(idx)
                step += 1
                if self.listeners or self.context.listeners:
                    self._tell(TrainingEvent("step", experience, epoch, step, value, inputs[0], y[idx], scores))
            epoch_losses.append(total / max(count, 1))
            self._tell(TrainingEvent("epoch_end", experience, epoch, step, epoch_losses[-1]))
        optimizer.zero_grad(set_to_none=True)  # leave no stale gradients on the strategy's parameters
        for m in modules:
            m.eval()
        return epoch_losses


@contextlib.contextmanager
def seeded(seed: int):
    """Draw parameter initialisations from ``seed`` alone, leaving the global torch RNG untouched."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield
