"""Base-session training: the few-shot class-incremental protocol trains the backbone on the base classes only.

TOPIC (Tao et al., CVPR 2020), CEC and TEEN (Wang et al., "Few-Shot Class-Incremental Learning via
Training-Free Prototype Calibration", NeurIPS 2023, Sec. 3 and App. B) train a CIFAR-style ResNet-20
(CIFAR-100) or a ResNet-18 (miniImageNet, CUB) on the base session with a *cosine classifier*
and cross-entropy,

    logits_k(x) = s · cos(f(x), w_k),   L = CE(logits(x), y),

then freeze the network for every later session. Optimiser and schedule follow TEEN's scripts: SGD with
Nesterov momentum 0.9, weight decay 5e-4, cosine learning-rate decay (``schedule``: after every step by
default; TEEN's CIFAR-100 and miniImageNet scripts decay once per epoch, ``"cosine"``; its CUB-200 script
multiplies the rate by ``gamma`` 0.25 after epochs 50, 100, ..., 300, ``"step"`` with ``milestones``); random
crop (zero padding) and horizontal flip, done on uint8 tensors. TEEN's CIFAR-100 setting is 600 epochs,
lr 0.1, batch 256, s = 16; the defaults below are far shorter so that a base session fits a 2-core CPU.
The training itself is the shared :class:`~clproto.training.loop.TrainingLoop` (same shuffles,
augmentation and input scaling as every trained strategy) with the cosine head's cross-entropy as its
loss; a listener validates after every epoch.

Checkpoint selection: TEEN's code keeps the epoch with the best accuracy on the *test* set of the base
classes. We do not: a stratified ``val_fraction`` of the base *training* images is held out, the best
epoch on it is kept, and the test set is never looked at during training.

Images are optionally resized to ``image_size`` (bilinear, antialiased); the same resize is part of the trained
backbone's preprocessing. The base session is read from the store batch by batch (:class:`ImageRows`): resized
once into memory when the resized images take at most ``resident_bytes`` (1 GiB by default; what a CIFAR- or
Tiny-ImageNet-sized base session needs), else left in the store and resized as each batch is read, every epoch
(bounded memory for any size, at the cost of resizing again). The same numbers either way. Inputs are scaled to [0, 1] and standardised
with the per-channel mean/std of the base training images: the backbone's
:class:`~clproto.training.inputs.Normalization`, kept with its weights.

Fine-tuning a pretrained network (TEEN's CUB-200 protocol: an ImageNet-pretrained backbone trained further
on the base classes): ``architecture = "torchscript:PATH"`` starts from a TorchScript feature extractor
(:mod:`clproto.training.pretrained`) fed ``x / 255`` (its own input scaling, no dataset statistics), and
``network_lr`` may give the network a smaller learning rate than the new cosine head's ``lr``, and
``train_from`` keeps the layers before a named one frozen (their parameters, not batch-norm statistics): the
early, high-resolution layers cost most of a backward pass, so training only the top of the network is the
cheap route on CPU.

The settings, :class:`~clproto.training.base_config.BaseTrainingConfig`, live in
:mod:`clproto.training.base_config` (importable from here too).
"""

from __future__ import annotations

import copy
import math
import os
import time
from fractions import Fraction
from typing import Iterator
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from clproto.context import RunContext
from clproto.data.rows import ImageRows, resize
from clproto.errors import ConfigError
from clproto.nets import build_network
from clproto.progress import progress_bar
from clproto.training.base_config import BASE_SCHEDULES, OMIT_DEFAULT, BaseTrainingConfig, config_identity
from clproto.training.inputs import Normalization, to_input
from clproto.training.loop import (DivergedError, TrainingConfig, TrainingEvent, TrainingLoop, seeded,
                                   without_step_loss)
from clproto.training.pretrained import IDENTITY_SCALING, file_hash, is_pretrained, load_pretrained, resolve

# BaseTrainingConfig and config_identity (and the two constants) were defined here before the split (issue 11):
# they stay importable from clproto.training.base_session
__all__ = ["BASE_SCHEDULES", "OMIT_DEFAULT", "BaseTrainingConfig", "CosineClassifier", "TrainedBase", "config_identity",
           "encode", "loop_config", "resize_images", "train_base_session", "validation_split"]


@dataclass
class TrainedBase:
    """What base training produces: the network's weights and its input preprocessing."""

    config: BaseTrainingConfig
    state_dict: dict  # weights of the network at the best epoch (clproto.nets.<architecture>, or a PretrainedNetwork)
    in_channels: int
    mean: list  # per-channel mean of the base training images, in [0, 1]
    std: list  # per-channel std
    classes: list  # dataset labels of the base classes, in logit order
    history: list = field(default_factory=list)  # one dict per epoch: epoch, loss, train_acc, val_acc, lr, seconds
    best_epoch: int = -1  # 0-based epoch whose weights are kept
    best_val_accuracy: float | None = None  # None when val_fraction = 0 (the last epoch is kept)
    init_hash: str = ""  # "torchscript:" architectures: content hash of the TorchScript file fine-tuned; "" otherwise

    def network(self, *, models_root: str | os.PathLike | None = None, where: str | None = None) -> nn.Module:
        """The trained network in eval mode: built (a pretrained one: loaded from its TorchScript file under
        ``models_root``, which must be the file it was trained from), then given the trained weights."""
        if is_pretrained(self.config.architecture):
            path = resolve(self.config.architecture, models_root=models_root, where=where)
            if self.init_hash and file_hash(path) != self.init_hash:
                raise ConfigError(f"{str(path)!r} is not the file these weights were fine-tuned from (its content "
                                  "changed)", where=where, field="backbone.architecture", value=self.config.architecture)
            net = load_pretrained(self.config.architecture, side=self.config.image_size or 32, models_root=models_root,
                                  where=where)
        else:
            with torch.random.fork_rng(devices=[]):  # the initialisation, overwritten below, leaves the caller's RNG alone
                net = build_network(self.config.architecture, in_channels=self.in_channels)
        net.load_state_dict(self.state_dict)
        return net.eval()

    @property
    def normalization(self) -> Normalization:
        """The input scaling the network was trained with (its base images' per-channel statistics)."""
        return Normalization(mean=tuple(self.mean), std=tuple(self.std))


class CosineClassifier(nn.Module):
    """``s · cos(f, w_k)`` for every class k."""

    def __init__(self, *, in_features: int, num_classes: int, scale: float) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(num_classes, in_features))
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        self.scale = scale

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        return self.scale * F.normalize(f, dim=1) @ F.normalize(self.weight, dim=1).T  # (N, K)


# --------------------------------------------------------------------------- image tensors
def resize_images(images: np.ndarray, size: int) -> torch.Tensor:
    """(N, H, W, C) uint8 -> (N, size, size, C) uint8 tensor (bilinear, antialiased); size 0 keeps H, W.
    :func:`clproto.data.rows.resize` on the whole array (it works a few images at a time)."""
    return resize(torch.from_numpy(np.ascontiguousarray(images)), size)


def pixel_statistics(rows: "ImageRows | torch.Tensor", *, batch: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and standard deviation (``n - 1``) of ``x / 255`` over every pixel of ``rows`` (uint8
    images ``(N, H, W, C)``): ``(C,)`` float32 each, std at least 1e-3. Counted exactly (a histogram of the 256
    values per channel, one chunk at a time: the images are never in memory together, whatever their number),
    then rounded once to float64 and once to float32."""
    channels = rows.shape[-1]
    counts = torch.zeros(channels, 256, dtype=torch.int64)  # (C, 256) pixels of each value
    for x in _chunks(rows, batch):  # x: (B, H, W, C) uint8
        for c in range(channels):
            counts[c] += torch.bincount(x[..., c].reshape(-1), minlength=256)
    values = torch.arange(256, dtype=torch.int64)
    n = int(counts[0].sum())
    s1, s2 = (counts * values).sum(1).tolist(), (counts * values * values).sum(1).tolist()  # exact Python ints
    mean = [float(Fraction(a, n * 255)) if n else 0.0 for a in s1]
    var = [float(Fraction(n * b - a * a, n * (n - 1) * 255 ** 2)) if n > 1 else 0.0 for a, b in zip(s1, s2)]
    return (torch.tensor(mean, dtype=torch.float32),
            torch.tensor([math.sqrt(v) for v in var], dtype=torch.float32).clamp_min(1e-3))


def validation_split(labels: np.ndarray, fraction: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Stratified split of positions ``0..N-1``: ``fraction`` of each class (at least one sample left to train on)."""
    train, val = [], []
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        n_val = min(int(round(fraction * len(idx))), len(idx) - 1)
        val.append(idx[:n_val])
        train.append(idx[n_val:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(val))


# --------------------------------------------------------------------------- training
@torch.no_grad()
def _chunks(x: "ImageRows | torch.Tensor", batch: int) -> Iterator[torch.Tensor]:
    """uint8 images ``(B, S, S, C)``, ``batch`` at a time, in order: read from the store, or views of a tensor."""
    return x.chunks(batch) if isinstance(x, ImageRows) else iter(x.split(batch))


def _accuracy(net: nn.Module, head: nn.Module, x: "ImageRows | torch.Tensor", y: torch.Tensor,
              normalization: Normalization, batch: int) -> float:
    net.eval()
    device = next(head.parameters()).device  # where the network is trained
    correct = torch.zeros((), dtype=torch.long, device=device)  # summed on the device, read once
    for i, chunk in zip(range(0, len(x), batch), _chunks(x, batch)):  # chunk: (B, S, S, C) uint8
        pred = head(net(to_input(chunk.to(device), normalization))).argmax(1)  # (B,)
        correct += (pred == y[i:i + batch].to(device)).sum()
    return int(correct) / max(len(x), 1)


def loop_config(config: BaseTrainingConfig) -> TrainingConfig:
    """The shared loop's settings for base training: SGD (Nesterov when there is momentum), the config's schedule."""
    return TrainingConfig(epochs=config.epochs, batch_size=config.batch_size,  # the loop builds no network: no architecture
                          optimizer="nesterov" if config.momentum > 0 else "sgd", lr=config.lr,
                          momentum=config.momentum, weight_decay=config.weight_decay, schedule=config.schedule,
                          milestones=list(config.milestones), gamma=config.gamma,
                          crop_padding=config.crop_padding, flip=config.flip)


@without_step_loss
class _EpochRecord:
    """A listener of the loop: training accuracy per step (counted on the device, read once per epoch); after
    every epoch, validation and the best weights so far."""

    def __init__(self, *, net: nn.Module, head: nn.Module, x_va: "ImageRows | torch.Tensor", y_va: torch.Tensor,
                 normalization: Normalization, n_train: int) -> None:
        self.net, self.head, self.x_va, self.y_va = net, head, x_va, y_va
        self.normalization = normalization
        self.n_train = n_train
        self.history: list[dict] = []  # one dict per epoch: epoch, loss, train_acc, val_acc, lr, seconds
        self.best: tuple[float, int, dict | None] = (-1.0, -1, None)  # (val accuracy, epoch, weights)
        self._correct, self._lr, self._t0 = 0, float("nan"), 0.0

    def __call__(self, event: TrainingEvent) -> None:
        if event.kind == "epoch_start":
            self._correct, self._lr, self._t0 = 0, event.lr, time.perf_counter()
        elif event.kind == "step":
            self._correct = self._correct + (event.scores.argmax(1) == event.targets).sum()  # no host read
        elif event.kind == "epoch_end":
            val_acc = (_accuracy(self.net, self.head, self.x_va, self.y_va, self.normalization, 512)
                       if len(self.x_va) else None)
            self.history.append({"epoch": event.epoch, "loss": event.loss, "train_acc": int(self._correct) / self.n_train,
                                 "val_acc": val_acc, "lr": self._lr, "seconds": time.perf_counter() - self._t0})
            score = val_acc if val_acc is not None else float(event.epoch)  # without validation: keep the last epoch
            if score >= self.best[0]:
                self.best = (score, event.epoch, copy.deepcopy(self.net.state_dict()))


def _trained_parameters(net: nn.Module, train_from: str, *, where: str | None) -> list[nn.Parameter]:
    """The parameters to train: all, or those from the first named ``train_from...`` on (the rest frozen in place)."""
    named = list(net.named_parameters())
    if not train_from:
        return [p for _, p in named]
    first = next((i for i, (name, _) in enumerate(named) if name == train_from or name.startswith(train_from + ".")),
                 None)
    if first is None:
        tops = list(dict.fromkeys(".".join(name.split(".")[:2]) for name, _ in named))
        raise ConfigError("no parameter of the network has this name prefix", where=where, field="backbone.train_from",
                          value=train_from, expected="one of " + ", ".join(tops[:40]) + (" ..." if len(tops) > 40 else ""))
    for _, p in named[:first]:
        p.requires_grad_(False)  # no gradient computed below the first trained layer: the cheap part of the pass
    return [p for _, p in named[first:]]


def train_base_session(images: "np.ndarray | ImageRows", labels: np.ndarray, *,
                       config: BaseTrainingConfig = BaseTrainingConfig(), context: RunContext = RunContext(),
                       models_root: str | os.PathLike | None = None, where: str | None = None,
                       resident_bytes: int = 1 << 30) -> TrainedBase:
    """Train ``config.architecture`` with a cosine classifier on base-session images ``(N, H, W, C)`` uint8.

    ``images``: an array, or :class:`~clproto.data.rows.ImageRows` of the dataset's memory-mapped store, read batch
    by batch; ``resident_bytes``: resized images up to this size are resized once into memory, a larger set is
    resized as it is read, every epoch (module docstring). The same numbers either way.

    ``labels`` are dataset labels (any integers); the global torch RNG is left untouched. ``context``
    gives the progress bars and listeners of the training loop (``config.seed`` seeds it, not the run seed).
    A ``torchscript:PATH`` architecture is fine-tuned from that file under ``models_root``.
    """
    array = images.array if isinstance(images, ImageRows) else images
    if array.ndim != 4 or array.dtype != np.uint8:
        raise ConfigError("base training needs uint8 images (N, H, W, C)", where=where, field="backbone",
                          value=f"array of shape {array.shape} and dtype {array.dtype}")
    if len(images) == 0 or len(np.unique(labels)) == 0:
        raise ConfigError("the base session has no classes to train on", where=where, field="base_classes",
                          expected="a base session with at least one class")
    cfg = config
    classes = sorted(int(c) for c in np.unique(labels))
    y_all = torch.from_numpy(np.searchsorted(classes, labels)).long()  # (N,) in 0..K-1
    rows = images if isinstance(images, ImageRows) else ImageRows(images, np.arange(len(images)))
    if rows.size not in (0, cfg.image_size):
        raise ValueError(f"images are read at {rows.size} pixels but the base training resizes to {cfg.image_size}")
    x_all = ImageRows(rows.array, rows.rows, cfg.image_size)  # (N, S, S, C) uint8 when read
    rng = np.random.default_rng([cfg.seed, 1])
    tr, va = validation_split(labels, cfg.val_fraction, rng)
    x_tr, y_tr, x_va, y_va = x_all.subset(tr), y_all[tr], x_all.subset(va), y_all[va]
    resized = x_all.shape[1] != rows.array.shape[1] or x_all.shape[2] != rows.array.shape[2]
    if resized and math.prod(x_all.shape) <= resident_bytes:  # resize once, not every epoch
        x_tr, x_va = x_tr.materialise(), x_va.materialise()
    channels = int(x_all.shape[-1])
    pretrained = is_pretrained(cfg.architecture)
    if pretrained:  # the model scales [0, 1] input itself: x / 255, no dataset statistics
        mean, std = torch.full((channels,), IDENTITY_SCALING[0]), torch.full((channels,), IDENTITY_SCALING[1])
    else:
        mean, std = pixel_statistics(x_tr)  # (C,), (C,)
    normalization = Normalization(mean=tuple(mean.tolist()), std=tuple(std.tolist()))  # float32 values, exactly

    init_hash = ""
    if pretrained:
        if channels not in (1, 3):
            raise ConfigError(f"a pretrained RGB network cannot take {channels}-channel images", where=where,
                              field="backbone.architecture", value=cfg.architecture, expected="RGB or greyscale images")
        init_hash = file_hash(resolve(cfg.architecture, models_root=models_root, where=where))
        net = load_pretrained(cfg.architecture, side=int(x_all.shape[1]), models_root=models_root, where=where)
    device = context.resolved().torch_device  # where the network trains (initialisations drawn on the CPU)
    with seeded(cfg.seed, device):
        if not pretrained:
            net = build_network(cfg.architecture, in_channels=channels, where=where)
        net = net.to(memory_format=torch.channels_last).to(device)
        head = CosineClassifier(in_features=net.feature_dim, num_classes=len(classes), scale=cfg.scale).to(device)
    loop = TrainingLoop(config=loop_config(cfg), seed=cfg.seed, context=context, normalization=normalization,
                        merge_lone_batch=False)
    record = _EpochRecord(net=net, head=head, x_va=x_va, y_va=y_va, normalization=normalization, n_train=len(x_tr))
    loop.listeners.append(record)

    def loss_fn(views: list[torch.Tensor], yb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits = head(net(views[0]))  # (B, K)
        return F.cross_entropy(logits, yb), logits.detach()

    trained_params = _trained_parameters(net.module if pretrained else net, cfg.train_from, where=where)
    if cfg.network_lr is None:  # one group: the network and its head share lr
        groups = [{"params": trained_params + list(head.parameters())}]
    else:  # the network at its own (usually smaller) rate; history's lr is the network's (the first group)
        groups = [{"params": trained_params, "lr": cfg.network_lr}, {"params": list(head.parameters())}]
    try:
        loop.run(modules=[net, head], groups=groups, x=x_tr, y=y_tr, loss_fn=loss_fn,
                 desc=f"base training {cfg.architecture}")
    except DivergedError as exc:
        what = exc.message.split(";")[0]  # "training diverged: the loss is nan at experience 0, epoch e, step s"
        raise DivergedError(f"base {what}; nothing was cached", where=where, field="backbone", value=f"lr={cfg.lr}",
                            expected="a smaller lr in the base-trained backbone") from None

    best_val, best_epoch, best_state = record.best
    state = {k: v.detach().cpu().contiguous() for k, v in best_state.items()}  # cached on the CPU, any device
    return TrainedBase(config=cfg, state_dict=state, in_channels=channels, mean=mean.tolist(),
                       std=std.tolist(), classes=classes, history=record.history, best_epoch=best_epoch,
                       best_val_accuracy=best_val if len(x_va) else None, init_hash=init_hash)


@torch.no_grad()
def encode(trained: TrainedBase, images: np.ndarray, *, net: nn.Module | None = None, batch: int = 512,
           progress: bool = True, desc: str = "", models_root: str | os.PathLike | None = None) -> np.ndarray:
    """Features of the trained network under the test transform: (N, H, W, C) uint8 -> (N, D) float32."""
    net = net if net is not None else trained.network(models_root=models_root)
    net = net.eval().to(memory_format=torch.channels_last)
    normalization = trained.normalization
    out = []
    rows = ImageRows(images, np.arange(len(images)), trained.config.image_size)  # read (and resized) per batch
    for x in progress_bar(rows.chunks(batch), desc=desc or "base-trained features", enabled=progress,
                          total=math.ceil(len(images) / batch), unit="batch"):  # x: (B, S, S, C) uint8
        out.append(net(to_input(x, normalization)).float().numpy())  # (B, D)
    if not out:
        return np.zeros((0, net.feature_dim), np.float32)
    return np.concatenate(out).astype(np.float32)
