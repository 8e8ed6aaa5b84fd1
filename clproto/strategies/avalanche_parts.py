"""The parts an Avalanche row assembles: its network, its own plugins, the benchmark view, the seeding.

See :mod:`clproto.strategies.avalanche_strategy` for what each part does in a run.
"""

from __future__ import annotations

import contextlib
import math
import random
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from clproto.nets import build_network
from clproto.strategies.base import ScenarioDescription
from clproto.training.inputs import Normalization, augment
from clproto.training.loop import DivergedError


class Network(nn.Module):
    """uint8 ``(B, C, H, W)`` images -> clproto architecture -> linear head -> ``(B, num_classes)`` logits."""

    def __init__(self, *, architecture: str, in_channels: int, num_classes: int,
                 normalization: Normalization = Normalization()) -> None:
        super().__init__()
        backbone = build_network(architecture, in_channels=in_channels)
        self.feature_extractor = nn.Sequential(_Scale(normalization), backbone)  # (B, C, H, W) uint8 -> (B, D)
        self.classifier = nn.Linear(backbone.feature_dim, num_classes)  # (B, D) -> (B, num_classes)

    def get_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.feature_extractor(x)  # (B, D)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.feature_extractor(x))  # (B, num_classes)


class _Scale(nn.Module):
    """The network's input scaling (by default clproto's fixed ``(x/255 − 0.5)/0.25``) on channel-first images."""

    def __init__(self, normalization: Normalization) -> None:
        super().__init__()
        self.normalization = normalization

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.normalization.apply(x, channel_dim=1)  # (B, C, H, W) float32


def _own_plugins() -> tuple[type, type]:
    """The wrapper's two plugins, defined on first use (importing Avalanche takes seconds)."""
    from avalanche.training.plugins import SupervisedPlugin

    class Augment(SupervisedPlugin):
        """clproto's batched random crop + flip on every training mini-batch, replayed samples included."""

        def __init__(self, *, padding: int, flip: bool) -> None:
            super().__init__()
            self.padding, self.flip = padding, flip
            self.generator = torch.Generator()

        def before_forward(self, strategy, **kwargs) -> None:
            x = strategy.mbatch[0]  # (B, C, H, W) uint8
            hwc = augment(x.permute(0, 2, 3, 1), padding=self.padding, flip=self.flip, generator=self.generator)
            strategy.mbatch[0] = hwc.permute(0, 3, 1, 2).contiguous()  # (B, C, H, W)

    class StopOnDivergence(SupervisedPlugin):
        """A non-finite training loss stops the run with clproto's :class:`DivergedError`."""

        def __init__(self, *, lr: float) -> None:
            super().__init__()
            self.lr = lr

        def before_backward(self, strategy, **kwargs) -> None:
            value = float(strategy.loss.detach())
            if not math.isfinite(value):
                raise DivergedError(
                    f"training diverged: the loss is {value} at experience "
                    f"{strategy.experience.current_experience}, epoch {strategy.clock.train_exp_epochs}",
                    field="params.lr", value=self.lr, expected="a smaller learning rate (or check the inputs)")

    return Augment, StopOnDivergence


@dataclass(frozen=True)
class BenchmarkView:
    """The part of Avalanche's benchmark API strategies read (iCaRL: ``n_classes_per_exp``, ``classes_order``)."""

    n_classes: int  # classes of the dataset (width of the score vectors)
    n_experiences: int
    n_classes_per_exp: list  # classes introduced by each experience
    classes_order: list  # classes in arrival order
    original_classes_order: list  # the same (clproto orders classes itself)
    classes_in_experience: dict  # {"train": [set of classes of each experience]}


def _view(description: ScenarioDescription) -> BenchmarkView:
    order = list(description.class_order)
    return BenchmarkView(n_classes=description.num_classes, n_experiences=len(description.experience_classes),
                         n_classes_per_exp=[len(c) for c in description.experience_classes], classes_order=order,
                         original_classes_order=order,
                         classes_in_experience={"train": [set(c) for c in description.experience_classes]})


def _silent_evaluator(cls: type) -> Any:
    """An EvaluationPlugin without metrics or loggers (clproto's evaluator scores the run), without its warning."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="No loggers specified")
        return cls(loggers=[])


def experience_seed(seed: int, index: int) -> int:
    """The seed of every global generator while experience ``index`` of a run with ``seed`` trains."""
    return int(np.random.SeedSequence([seed, index]).generate_state(1)[0] % (2 ** 31))


@contextlib.contextmanager
def seeded_globals(seed: int):
    """Seed Python's, NumPy's and torch's global generators (as Avalanche's RNGManager does); restore them after."""
    from avalanche.training.determinism.rng_manager import RNGManager

    state = (random.getstate(), np.random.get_state(), torch.get_rng_state())
    RNGManager.set_random_seeds(seed)
    try:
        yield
    finally:
        random.setstate(state[0])
        np.random.set_state(state[1])
        torch.set_rng_state(state[2])
