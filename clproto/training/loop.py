"""The training loop shared by every network clproto trains on uint8 images.

One call of :meth:`TrainingLoop.run` trains for ``epochs`` passes over one experience's training set:
a seeded shuffle, mini-batches of ``batch_size``, ``views`` augmented copies of each batch (random crop
after zero padding + horizontal flip on the uint8 batch: :mod:`clproto.training.inputs`), the caller's
loss, one optimiser step. The optimiser (SGD, SGD with Nesterov momentum, or Adam) and its schedule are
rebuilt for every experience from the caller's :class:`TrainingConfig`; the only state carried between
experiences is the random generator, so a checkpoint after an experience resumes exactly. The strategies
(fine-tuning, joint, PRD) and base-session training (:mod:`clproto.training.base_session`) use it.

The training set is a tensor, or the rows of the memory-mapped store (:class:`~clproto.data.rows.ImageRows`,
what the strategies pass): then each shuffled batch is gathered by one read-ahead thread while the previous
one trains (:func:`clproto.features.batches.read_ahead`; the set is never in memory whole); the same numbers
either way. Besides that thread, ``torch.set_num_threads`` (the CLI's ``--threads``) decides the parallelism.
Progress bars and listeners come from the :class:`~clproto.context.RunContext`; the input scaling from the
network's :class:`~clproto.training.inputs.Normalization`. A non-finite loss stops training with
:class:`DivergedError` naming the experience, epoch and step (the previous checkpoint is left untouched).

Devices (:mod:`clproto.devices`): the loop runs where its context says (``context.torch_device``): a tensor
training set is moved there once, streamed batches as they come (pinned, asynchronous on CUDA); the modules
are placed there (channels-last on CUDA), augmentation runs there (its random draws still come from the CPU
generator: the same shuffles and crops on every device), and the loss is computed under ``context.autocast()``
(fp16 with a :class:`torch.amp.GradScaler`, bf16 without). The loss is read back to the host every
``check_every`` steps (1 on the CPU, 8 on accelerators), or every step when a listener wants step events: a
non-finite loss is caught at most ``check_every - 1`` steps late, and the error names the step where it first
appeared. ``compile``: the caller may pass a network through :func:`maybe_compile` (``torch.compile``).
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass, field
from typing import Callable, Iterable

import torch
import torch.nn as nn

from clproto.context import RunContext
from clproto.data.rows import ImageRows
from clproto.devices import fork_rng, place
from clproto.errors import ConfigError
from clproto.features.batches import read_ahead
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
    # torch.compile the strategy's network (faster steps on CUDA after a compilation pause; numbers may differ in
    # the last bits); left out of the run identity while false, so identities recorded before it existed hold
    compile: bool = field(default=False, metadata={"omit_when_default": True})

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
        if not isinstance(self.compile, bool):
            raise ConfigError("must be true or false", field="compile", value=self.compile)


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
def epochs_only(listener: Callable[[TrainingEvent], None]) -> Callable[[TrainingEvent], None]:
    """Mark ``listener`` as wanting no ``step`` events: without a step listener the loop reads the loss back to
    the host only every ``check_every`` steps (no per-step synchronisation on an accelerator)."""
    listener.wants_steps = False
    return listener


def without_step_loss(listener: Callable[[TrainingEvent], None]) -> Callable[[TrainingEvent], None]:
    """Mark ``listener`` as wanting ``step`` events but not their ``loss`` (it reads inputs, targets or scores):
    the loss is then not read back every step, and a step event carries ``nan`` unless it was read anyway."""
    listener.wants_step_loss = False
    return listener


def maybe_compile(module: nn.Module, enabled: bool) -> nn.Module:
    """``torch.compile(module)`` when ``enabled`` (the strategy's ``compile = true``), else ``module`` itself.
    The compiled module shares the parameters of ``module`` (train it, checkpoint ``module``)."""
    return torch.compile(module) if enabled else module


class TrainingLoop:
    """Runs the epochs of one experience; holds the seeded generator (its only state). Keyword-only."""

    def __init__(self, *, config: TrainingConfig, seed: int, context: RunContext = RunContext(),
                 normalization: Normalization = Normalization(), merge_lone_batch: bool = True) -> None:
        self.config = config
        self.context = context.resolved()  # device, precision, progress bars and the run's listeners
        self.device = self.context.torch_device  # where the modules, batches and augmentation live
        # asynchronous host -> device copies on CUDA only (its pinned batches are safe to let go of; an MPS copy may
        # still read a host batch after it is freed)
        self.non_blocking = self.device.type == "cuda"
        self.normalization = normalization  # input scaling of the trained network (predictions must use it too)
        # a trailing one-sample batch joins the previous one; base-session training keeps it alone (as it always did)
        self.merge_lone_batch = merge_lone_batch
        self.generator = torch.Generator().manual_seed(seed)  # shuffles and augmentation; seed: the caller's
        # steps between reads of the loss on the host (divergence check); every step on the CPU, where it is free
        self.check_every = 1 if self.device.type == "cpu" else 8
        # called with a TrainingEvent at every epoch start/end and after every step; public on purpose
        # (ClprotoTemplate attaches one for the duration of a fit); not part of the checkpoint. The
        # context's listeners are told first.
        self.listeners: list[Callable[[TrainingEvent], None]] = []

    def _tell(self, event: TrainingEvent) -> None:
        for listener in (*self.context.listeners, *self.listeners):
            listener(event)

    def _wants_steps(self) -> tuple[bool, bool]:
        """(tell step events at all, read the loss back every step for them)."""
        steps = [f for f in (*self.context.listeners, *self.listeners) if getattr(f, "wants_steps", True)]
        return bool(steps), any(getattr(f, "wants_step_loss", True) for f in steps)

    def state_dict(self) -> dict:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["generator"])

    def place(self, module: nn.Module) -> nn.Module:
        """``module`` on the loop's device (channels-last conv nets on CUDA): strategies place what they build."""
        return place(module, self.device)

    def to_input(self, x: torch.Tensor) -> torch.Tensor:
        """uint8 ``(B, H, W, C)`` -> the network's float input ``(B, C, H, W)`` on the loop's device, no
        augmentation (predictions)."""
        return to_input(x.to(self.device, non_blocking=self.non_blocking), self.normalization)

    def views(self, x: torch.Tensor, count: int) -> list[torch.Tensor]:
        """``count`` augmented float views ``(B, C, H, W)`` of uint8 images ``(B, H, W, C)`` (on x's device)."""
        cfg = self.config
        if cfg.crop_padding == 0 and not cfg.flip:
            return [to_input(x, self.normalization)] * count
        return [to_input(augment(x, padding=cfg.crop_padding, flip=cfg.flip, generator=self.generator),
                         self.normalization) for _ in range(count)]

    def _step(self, loss: torch.Tensor, optimizer: torch.optim.Optimizer, scaler) -> None:
        optimizer.zero_grad(set_to_none=True)
        if scaler is None:
            loss.backward()
            optimizer.step()
        else:  # fp16: scaled loss, unscaled gradients before the step (skipped on inf/nan gradients)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()

    def run(self, *, modules: list[nn.Module], groups: list[dict], x: "torch.Tensor | ImageRows", y: torch.Tensor,
            loss_fn: LossFn, views: int = 1, experience: int = 0, desc: str = "train") -> list[float]:
        """Train ``modules`` (put in train mode at every epoch) on uint8 images ``x`` (N, H, W, C), labels ``y`` (N,).

        ``x``: a tensor (moved to the device once) or :class:`~clproto.data.rows.ImageRows` (each shuffled batch
        gathered from the store while the previous one trains, pinned for CUDA): the same numbers either way.
        ``groups``: the optimiser's parameter groups (on the loop's device: see :meth:`place`). Returns the mean
        loss of every epoch."""
        cfg = self.config
        device = self.device
        if len(x) != len(y):
            raise ValueError(f"{len(x)} images but {len(y)} labels")
        if not isinstance(x, ImageRows):
            x = x.to(device, non_blocking=self.non_blocking)  # the experience, moved once
        y = y.to(device, non_blocking=self.non_blocking)
        optimizer = build_optimizer(cfg, groups)
        scaler = torch.amp.GradScaler(device.type) if self.context.precision == "fp16" else None
        base_lrs = [g["lr"] for g in optimizer.param_groups]
        per_step = None  # "cosine-steps": torch's cosine annealing over every step of this experience, to 0
        if cfg.schedule == "cosine-steps":
            steps = cfg.epochs * batch_count(len(y), cfg.batch_size, merge_lone=self.merge_lone_batch)
            per_step = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps)
        epoch_losses: list[float] = []
        step = 0
        step_events, step_loss = self._wants_steps()
        for epoch in progress_bar(range(cfg.epochs), desc=f"{desc} exp {experience}", enabled=self.context.progress,
                                  unit="epoch"):
            for m in modules:  # listeners may have evaluated them between epochs
                m.train()
            if per_step is None:
                factor = lr_factor(cfg, epoch)
                for g, lr in zip(optimizer.param_groups, base_lrs):
                    g["lr"] = lr * factor
            sums = [0.0, 0]  # sample-weighted loss, samples
            pending: list[tuple[int, torch.Tensor, int]] = []  # (step, detached loss, batch size) not read yet
            self._tell(TrainingEvent("epoch_start", experience, epoch, step, lr=optimizer.param_groups[0]["lr"]))
            parts = batches(len(y), cfg.batch_size, self.generator, merge_lone=self.merge_lone_batch)
            with self._images(x, parts) as stream:
                for idx, xb in stream:  # (B,) positions on the device, (B, H, W, C) uint8 images there
                    inputs = self.views(xb, views)  # views × (B, C, H, W)
                    with self.context.autocast():
                        out = loss_fn(inputs, y[idx])
                    loss, scores = out if isinstance(out, tuple) else (out, None)
                    pending.append((step, loss.detach().float(), len(idx)))
                    value = float("nan")  # this step's loss, when read now
                    if step_loss or len(pending) >= self.check_every:
                        value = self._read(pending, sums, experience=experience, epoch=epoch)
                    self._step(loss, optimizer, scaler)
                    if per_step is not None:
                        per_step.step()
                    step += 1
                    if step_events:
                        self._tell(TrainingEvent("step", experience, epoch, step, value, inputs[0], y[idx], scores))
            self._read(pending, sums, experience=experience, epoch=epoch)
            epoch_losses.append(sums[0] / max(sums[1], 1))
            self._tell(TrainingEvent("epoch_end", experience, epoch, step, epoch_losses[-1]))
        optimizer.zero_grad(set_to_none=True)  # leave no stale gradients on the strategy's parameters
        for m in modules:
            m.eval()
        return epoch_losses

    @contextlib.contextmanager
    def _images(self, x: "torch.Tensor | ImageRows", parts: list[torch.Tensor]):
        """``(positions on the device, uint8 images (B, H, W, C) on the device)`` for each batch of positions in
        ``parts``: indexed from the tensor already there, or gathered from ``ImageRows`` by a read-ahead thread."""
        device = self.device
        if not isinstance(x, ImageRows):
            yield ((idx, x[idx]) for idx in (p.to(device, non_blocking=self.non_blocking) for p in parts))
            return
        with read_ahead(parts, lambda idx: x.read(idx.numpy()), pin_memory=device.type == "cuda") as stream:
            copy = self.non_blocking
            yield ((idx.to(device, non_blocking=copy), host.to(device, non_blocking=copy)) for idx, host in stream)

    def _read(self, pending: list, sums: list, *, experience: int, epoch: int) -> float:
        """Read the pending losses to the host (one synchronisation), add them to ``sums`` in step order and
        return the last; the first non-finite one is a DivergedError naming its step."""
        if not pending:
            return float("nan")
        values = torch.stack([p[1] for p in pending]).tolist()
        for i, ((step, _, n), value) in enumerate(zip(pending, values)):
            if not math.isfinite(value):
                late = len(pending) - 1 - i
                raise DivergedError(
                    f"training diverged: the loss is {value} at experience {experience}, epoch {epoch}, "
                    f"step {step}; the run stopped and the checkpoint of the previous experience is kept"
                    + (f" (noticed {late} step(s) later: the loss is read every {self.check_every} steps)"
                       if late else ""),
                    field="params.lr", value=self.config.lr, expected="a smaller learning rate (or check the inputs)",
                )
            sums[0] += value * n
            sums[1] += n
        pending.clear()
        return values[-1]


@contextlib.contextmanager
def seeded(seed: int, device=None):
    """Draw parameter initialisations from ``seed`` alone, leaving the global torch RNG (and, on CUDA, the
    generator of ``device``) untouched. Initialisations are drawn on the CPU, then moved: the same on every device."""
    with fork_rng(device if device is not None else "cpu"):
        torch.manual_seed(seed)
        yield
