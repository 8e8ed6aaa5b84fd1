"""The strategy protocol and the registry of implementations.

A strategy is any class with

* ``Config`` — a dataclass of its hyperparameters (each with a default and a comment);
* ``input_kind`` — ``"features"`` (it consumes backbone features, which the runner computes
  once and caches) or ``"images"`` (it trains its own network on uint8 images);
* ``__init__(*, config, num_classes, seed)`` — keyword-only; a constructor that also takes a
  ``context`` keyword receives the run's :class:`~clproto.context.RunContext` (progress bars,
  listeners, device, precision), which it hands to the training loops and extractors it builds;
  one without it works as before (:func:`accepts_context`);
* ``fit_experience(experience)`` — learn from one :class:`~clproto.scenarios.Experience`;
* ``predict_scores(x) -> (N, num_classes)`` — higher is more likely; classes the strategy has
  not seen should score ``-inf`` (the evaluator also restricts class-IL argmax to seen classes).

Optional: ``state_dict()`` / ``load_state_dict(state)`` (the runner checkpoints after every
experience and resumes from it), ``check_scenario(scenario, params)`` (reject a scenario before any
training), and ``loop`` — a :class:`~clproto.training.loop.TrainingLoop` for strategies that train
with SGD, whose listeners see every step's loss (the Avalanche adapter feeds its loss metrics so), and
``begin_scenario(description)`` — called by the runner once, right after the strategy is built and
before the first experience, with the scenario's :class:`ScenarioDescription`: its public shape
(class count and order, each experience's classes and training-set size, the input shape), never
samples. Strategies that must know the whole stream up front (Avalanche's iCaRL reads
``benchmark.n_classes_per_exp``) take it from there; a strategy without the hook never sees it.
``checkpoint_runs = False`` — a class attribute: the runner does not checkpoint it after every experience
(training-free strategies refit faster than they would write their statistics); ``state_dict`` then serves
``--keep-model`` only.
``scores_unseen_classes = True`` — a class attribute promising that ``predict_scores`` works before the
first experience and gives finite scores to classes not trained on yet (a randomly initialised
classifier head): the runner then measures the untrained model and the accuracy on each experience
before training on it, and reports forward transfer (GEM's FWT); without it forward transfer is ``None``.

Implementations are registered by name in an explicit :class:`Registry`; a duplicate name is an
error, and nothing registers itself by being imported.
"""

from __future__ import annotations

import dataclasses
import inspect
from dataclasses import dataclass
from typing import Any, ClassVar, Optional, Protocol, runtime_checkable

import torch

from clproto.context import RunContext
from clproto.errors import ConfigError
from clproto.scenarios.scenario import Experience

INPUT_KINDS = ("features", "images")
SCENARIO_KINDS = ("class-incremental", "few-shot")


@dataclass(frozen=True)
class ScenarioDescription:
    """What a strategy may know of the whole stream before its first experience: no samples, no labels."""

    name: str  # the scenario's name
    kind: str  # "class-incremental" or "few-shot"
    num_classes: int  # width of every score vector (classes of the dataset)
    class_order: tuple[int, ...]  # every class in arrival order
    experience_classes: tuple[tuple[int, ...], ...]  # the classes each experience introduces
    train_sizes: tuple[int, ...]  # training samples of each experience
    input_shape: tuple[int, ...]  # one sample's input, e.g. (H, W, C) for uint8 images

    @classmethod
    def of(cls, scenario: Any) -> "ScenarioDescription":
        return cls(name=scenario.name, kind=scenario.kind, num_classes=scenario.num_classes,
                   class_order=tuple(scenario.class_order), experience_classes=tuple(e.classes for e in scenario),
                   train_sizes=tuple(len(e.train_indices) for e in scenario),
                   input_shape=tuple(scenario.dataset.train_x.shape[1:]))


@runtime_checkable
class Strategy(Protocol):
    Config: ClassVar[type]
    input_kind: ClassVar[str]

    def fit_experience(self, experience: Experience) -> None: ...

    def predict_scores(self, x: torch.Tensor) -> torch.Tensor: ...


@dataclass(frozen=True)
class Registered:
    name: str
    cls: type
    description: str
    scenario_kinds: tuple[str, ...]  # scenario kinds the default run (`clproto run`) uses it for


class Registry:
    """Name -> strategy class. ``register`` refuses duplicates and malformed classes."""

    def __init__(self) -> None:
        self._entries: dict[str, Registered] = {}

    def register(self, name: str, cls: type, *, description: str = "", scenario_kinds: tuple[str, ...] = SCENARIO_KINDS) -> type:
        if name in self._entries:
            raise ValueError(f"a strategy named {name!r} is already registered ({self._entries[name].cls.__qualname__})")
        config_cls = getattr(cls, "Config", None)
        if config_cls is None or not dataclasses.is_dataclass(config_cls):
            raise TypeError(f"strategy {name!r}: class {cls.__qualname__} needs a dataclass attribute `Config`")
        if getattr(cls, "input_kind", None) not in INPUT_KINDS:
            raise TypeError(f"strategy {name!r}: `input_kind` must be one of {INPUT_KINDS}")
        for meth in ("fit_experience", "predict_scores"):
            if not callable(getattr(cls, meth, None)):
                raise TypeError(f"strategy {name!r}: class {cls.__qualname__} has no method {meth}()")
        doc = description or ((cls.__doc__ or "").strip().splitlines() or [""])[0]
        self._entries[name] = Registered(name, cls, doc, tuple(scenario_kinds))
        return cls

    def get(self, name: str, *, where: str | None = None) -> Registered:
        try:
            return self._entries[name]
        except KeyError:
            raise ConfigError(
                "unknown strategy implementation",
                where=where,
                field="implementation",
                value=name,
                expected="one of " + ", ".join(sorted(self._entries)),
            ) from None

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self):
        return iter(self._entries.values())

    def copy(self) -> "Registry":
        new = Registry()
        new._entries = dict(self._entries)
        return new


def accepts_context(cls: type) -> bool:
    """Whether ``cls``'s constructor takes a ``context`` keyword (then it is given the run's RunContext)."""
    try:
        param = inspect.signature(cls).parameters.get("context")
    except (TypeError, ValueError):  # no introspectable signature
        return False
    return param is not None and param.kind in (param.KEYWORD_ONLY, param.POSITIONAL_OR_KEYWORD)


def build_strategy(entry: Registered, params: Any, *, num_classes: int, seed: int,
                   context: Optional[RunContext] = None) -> Strategy:
    """Instantiate ``entry.cls`` with a validated Config instance; ``context`` reaches classes that take one."""
    extra = {"context": context} if context is not None and accepts_context(entry.cls) else {}
    return entry.cls(config=params, num_classes=num_classes, seed=seed, **extra)
