"""Base-session training: the few-shot class-incremental protocol trains the backbone on the base classes only.

TOPIC (Tao et al., CVPR 2020), CEC and TEEN (Wang et al., "Few-Shot Class-Incremental Learning via
Training-Free Prototype Calibration", NeurIPS 2023, Sec. 3 and App. B) train a CIFAR-style ResNet-20
(CIFAR-100) or a ResNet-18 (miniImageNet, CUB) on the base session with a *cosine classifier*
and cross-entropy,

    logits_k(x) = s · cos(f(x), w_k),   L = CE(logits(x), y),

then freeze the network for every later session. Optimiser and schedule follow TEEN's scripts: SGD with
Nesterov momentum 0.9, weight decay 5e-4, cosine learning-rate decay over the epochs; random crop
(zero padding) and horizontal flip, done here on uint8 tensors. TEEN's CIFAR-100 setting is 600 epochs,
lr 0.1, batch 256, s = 16; the defaults below are far shorter so that a base session fits a 2-core CPU.

Checkpoint selection: TEEN's code keeps the epoch with the best accuracy on the *test* set of the base
classes. We do not: a stratified ``val_fraction`` of the base *training* images is held out, the best
epoch on it is kept, and the test set is never looked at during training.

Images are optionally resized to ``image_size`` (bilinear, antialiased) once, before training; the same
resize is part of the trained backbone's preprocessing. Inputs are scaled to [0, 1] and standardised
with the per-channel mean/std of the base training images.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from clproto.errors import ConfigError
from clproto.nets import ARCHITECTURES, build_network
from clproto.progress import progress_bar


@dataclass(frozen=True)
class BaseTrainingConfig:
    architecture: str = "resnet20"  # clproto.nets architecture (TEEN: resnet20 on CIFAR, resnet18 on mini/CUB)
    epochs: int = 10  # passes over the base training split (TEEN CIFAR-100: 600)
    batch_size: int = 128  # samples per SGD step (TEEN: 256)
    lr: float = 0.1  # initial learning rate, decayed to 0 by a cosine schedule (TEEN: 0.1)
    momentum: float = 0.9  # Nesterov momentum (TEEN: 0.9)
    weight_decay: float = 5e-4  # L2 weight decay (TEEN: 5e-4)
    scale: float = 16.0  # cosine-classifier temperature s (TEEN `temperature`: 16)
    image_size: int = 32  # resize images to image_size² before training and extraction; 0 keeps their size
    crop_padding: int = 4  # random crop after zero padding by this many pixels; 0 disables cropping
    flip: bool = True  # random horizontal flip
    val_fraction: float = 0.1  # per-class share of base training images held out to pick the best epoch
    seed: int = 0  # training seed (init, validation split, batches, augmentation), not the run seed

    def __post_init__(self) -> None:
        if self.architecture not in ARCHITECTURES:
            raise ConfigError("unknown architecture", field="architecture", value=self.architecture,
                              expected="one of " + ", ".join(ARCHITECTURES))
        for name in ("epochs", "batch_size"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
                raise ConfigError("must be a positive integer", field=name, value=v)
        for name in ("image_size", "crop_padding", "seed"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise ConfigError("must be a non-negative integer", field=name, value=v)
        if not self.lr > 0 or not self.scale > 0:
            field_ = "lr" if not self.lr > 0 else "scale"
            raise ConfigError("must be positive", field=field_, value=getattr(self, field_))
        if not 0 <= self.momentum < 1 or not self.weight_decay >= 0:
            raise ConfigError("momentum must lie in [0, 1) and weight_decay be >= 0", field="momentum",
                              value=(self.momentum, self.weight_decay))
        if not 0 <= self.val_fraction < 1:
            raise ConfigError("must lie in [0, 1)", field="val_fraction", value=self.val_fraction)


@dataclass
class TrainedBase:
    """What base training produces: the network's weights and its input preprocessing."""

    config: BaseTrainingConfig
    state_dict: dict  # weights of clproto.nets.<architecture> at the best epoch
    in_channels: int
    mean: list  # per-channel mean of the base training images, in [0, 1]
    std: list  # per-channel std
    classes: list  # dataset labels of the base classes, in logit order
    history: list = field(default_factory=list)  # one dict per epoch: epoch, loss, train_acc, val_acc, lr, seconds
    best_epoch: int = -1  # 0-based epoch whose weights are kept
    best_val_accuracy: float | None = None  # None when val_fraction = 0 (the last epoch is kept)

    def network(self) -> nn.Module:
        net = build_network(self.config.architecture, in_channels=self.in_channels)
        net.load_state_dict(self.state_dict)
        return net.eval()


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
def resize_images(images: np.ndarray, size: int, *, batch: int = 2048) -> torch.Tensor:
    """(N, H, W, C) uint8 -> (N, size, size, C) uint8 tensor (bilinear, antialiased); size 0 keeps H, W."""
    x = torch.from_numpy(np.ascontiguousarray(images))
    if size == 0 or (x.shape[1] == size and x.shape[2] == size):
        return x
    out = torch.empty((len(x), size, size, x.shape[3]), dtype=torch.uint8)
    for i in range(0, len(x), batch):
        chunk = x[i:i + batch].permute(0, 3, 1, 2).float()  # (B, C, H, W)
        r = F.interpolate(chunk, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
        out[i:i + batch] = r.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1)
    return out


def augment(x: torch.Tensor, *, padding: int, flip: bool, generator: torch.Generator) -> torch.Tensor:
    """Random crop after zero padding and random horizontal flip of a (B, H, W, C) uint8 batch."""
    B, H, W, _ = x.shape
    if padding > 0:
        xp = F.pad(x, (0, 0, padding, padding, padding, padding))  # (B, H+2p, W+2p, C)
        oy = torch.randint(0, 2 * padding + 1, (B,), generator=generator)
        ox = torch.randint(0, 2 * padding + 1, (B,), generator=generator)
        rows = oy[:, None] + torch.arange(H)  # (B, H)
        cols = ox[:, None] + torch.arange(W)  # (B, W)
        x = xp[torch.arange(B)[:, None, None], rows[:, :, None], cols[:, None, :]]  # (B, H, W, C)
    if flip:
        mirror = torch.rand(B, generator=generator) < 0.5
        x = torch.where(mirror[:, None, None, None], x.flip(2), x)
    return x


def to_input(x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """(B, H, W, C) uint8 -> (B, C, H, W) standardised float32 in channels-last memory (faster convs on CPU)."""
    f = (x.float() / 255.0 - mean) / std  # (B, H, W, C)
    return f.permute(0, 3, 1, 2).contiguous(memory_format=torch.channels_last)


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
def _accuracy(net: nn.Module, head: nn.Module, x: torch.Tensor, y: torch.Tensor, mean, std, batch: int) -> float:
    net.eval()
    correct = 0
    for i in range(0, len(x), batch):
        pred = head(net(to_input(x[i:i + batch], mean, std))).argmax(1)
        correct += int((pred == y[i:i + batch]).sum())
    return correct / max(len(x), 1)


def train_base_session(images: np.ndarray, labels: np.ndarray, *, config: BaseTrainingConfig = BaseTrainingConfig(),
                       progress: bool = True, where: str | None = None) -> TrainedBase:
    """Train ``config.architecture`` with a cosine classifier on base-session images ``(N, H, W, C)`` uint8.

    ``labels`` are dataset labels (any integers); the global torch RNG is left untouched.
    """
    if images.ndim != 4 or images.dtype != np.uint8:
        raise ConfigError("base training needs uint8 images (N, H, W, C)", where=where, field="backbone",
                          value=f"array of shape {images.shape} and dtype {images.dtype}")
    if len(images) == 0 or len(np.unique(labels)) == 0:
        raise ConfigError("the base session has no classes to train on", where=where, field="base_classes",
                          expected="a base session with at least one class")
    cfg = config
    classes = sorted(int(c) for c in np.unique(labels))
    y_all = torch.from_numpy(np.searchsorted(classes, labels)).long()  # (N,) in 0..K-1
    x_all = resize_images(images, cfg.image_size)  # (N, S, S, C) uint8
    rng = np.random.default_rng([cfg.seed, 1])
    tr, va = validation_split(labels, cfg.val_fraction, rng)
    x_tr, y_tr, x_va, y_va = x_all[tr], y_all[tr], x_all[va], y_all[va]
    pixels = x_tr.reshape(-1, x_tr.shape[-1]).double() / 255.0  # (N*S*S, C)
    mean, std = pixels.mean(0).float(), pixels.std(0).float().clamp_min(1e-3)  # (C,), (C,)
    del pixels

    with torch.random.fork_rng():
        torch.manual_seed(cfg.seed)
        net = build_network(cfg.architecture, in_channels=x_all.shape[-1], where=where).to(memory_format=torch.channels_last)
        head = CosineClassifier(in_features=net.feature_dim, num_classes=len(classes), scale=cfg.scale)
    gen = torch.Generator().manual_seed(cfg.seed)
    params = list(net.parameters()) + list(head.parameters())
    opt = torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.momentum > 0,
                          weight_decay=cfg.weight_decay)
    steps_per_epoch = math.ceil(len(x_tr) / cfg.batch_size)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg.epochs * steps_per_epoch)

    history: list[dict] = []
    best = (-1.0, -1, None)  # (val accuracy, epoch, weights)
    bar = progress_bar(range(cfg.epochs), desc=f"base training {cfg.architecture}", enabled=progress, unit="epoch")
    for epoch in bar:
        net.train()
        head.train()
        perm = torch.randperm(len(x_tr), generator=gen)
        total_loss, correct, lr, t0 = 0.0, 0, opt.param_groups[0]["lr"], time.perf_counter()
        for s in progress_bar(range(steps_per_epoch), desc=f"epoch {epoch + 1}/{cfg.epochs}", enabled=progress,
                              unit="step"):
            idx = perm[s * cfg.batch_size:(s + 1) * cfg.batch_size]
            xb = augment(x_tr[idx], padding=cfg.crop_padding, flip=cfg.flip, generator=gen)  # (B, S, S, C)
            logits = head(net(to_input(xb, mean, std)))  # (B, K)
            loss = F.cross_entropy(logits, y_tr[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total_loss += loss.item() * len(idx)
            correct += int((logits.argmax(1) == y_tr[idx]).sum())
        val_acc = _accuracy(net, head, x_va, y_va, mean, std, 512) if len(x_va) else None
        history.append({"epoch": epoch, "loss": total_loss / len(x_tr), "train_acc": correct / len(x_tr),
                        "val_acc": val_acc, "lr": lr, "seconds": time.perf_counter() - t0})
        score = val_acc if val_acc is not None else float(epoch)  # without validation: keep the last epoch
        if score >= best[0]:
            best = (score, epoch, copy.deepcopy(net.state_dict()))
        if hasattr(bar, "set_postfix"):
            bar.set_postfix(loss=f"{history[-1]['loss']:.3f}", val=f"{val_acc if val_acc is not None else float('nan'):.3f}")

    state = {k: v.contiguous() for k, v in best[2].items()}
    return TrainedBase(config=cfg, state_dict=state, in_channels=int(x_all.shape[-1]), mean=mean.tolist(),
                       std=std.tolist(), classes=classes, history=history, best_epoch=best[1],
                       best_val_accuracy=best[0] if len(x_va) else None)


@torch.no_grad()
def encode(trained: TrainedBase, images: np.ndarray, *, net: nn.Module | None = None, batch: int = 512,
           progress: bool = True, desc: str = "") -> np.ndarray:
    """Features of the trained network under the test transform: (N, H, W, C) uint8 -> (N, D) float32."""
    net = net if net is not None else trained.network()
    net = net.eval().to(memory_format=torch.channels_last)
    mean, std = torch.tensor(trained.mean), torch.tensor(trained.std)
    out = []
    for i in progress_bar(range(0, len(images), batch), desc=desc or "base-trained features", enabled=progress,
                          total=math.ceil(len(images) / batch), unit="batch"):
        x = resize_images(images[i:i + batch], trained.config.image_size)  # (B, S, S, C)
        out.append(net(to_input(x, mean, std)).float().numpy())  # (B, D)
    if not out:
        return np.zeros((0, net.feature_dim), np.float32)
    return np.concatenate(out).astype(np.float32)
