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
``run_notes() -> list[str]`` — what the strategy decided while fitting (e.g. TEEN's α and τ chosen on the base
session), appended to the run's ``notes`` in results.json.
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
    """What the runner needs of a continual-learning method: learn one experience, then score inputs.

    A structural type (``typing.Protocol``): a strategy inherits from nothing, it only has

    * ``Config`` — a dataclass of its hyperparameters, each with a default; the ``[strategy.params]``
      table of a definition file is checked against it and handed over as ``config``;
    * ``input_kind`` — ``"features"`` (the runner extracts and caches backbone features once) or
      ``"images"`` (uint8 ``(N, H, W, C)`` images; the strategy trains its own network);
    * ``__init__(*, config, num_classes, seed)`` — keyword-only: a ``Config`` instance, the width of
      every score vector (classes of the whole dataset) and the run seed (its only source of randomness);
    * ``fit_experience(experience)`` — learn from one :class:`~clproto.scenarios.Experience`
      (``experience.train_x`` / ``train_y``, ``experience.classes``); called once per experience, in order;
    * ``predict_scores(x)`` — ``(N, ...)`` inputs to ``(N, num_classes)`` scores, higher is more
      likely; classes not learned yet should score ``-inf``.

    Optional members (``state_dict``/``load_state_dict``, ``begin_scenario``, ``check_scenario``,
    ``loop``, ``checkpoint_runs``, ``scores_unseen_classes``) are described in
    :mod:`clproto.strategies.base`. ``isinstance(obj, Strategy)`` checks the two methods only;
    :meth:`Registry.register` checks ``Config`` and ``input_kind`` too.

    Example — a nearest-class-mean strategy on features, registered under a name a definition's
    ``implementation`` can use::

        from dataclasses import dataclass

        import torch

        import clproto

        @dataclass(frozen=True)
        class MeanConfig:
            pass  # no hyperparameters

        class NearestMean:
            \"\"\"Nearest class mean, Euclidean.\"\"\"

            Config = MeanConfig
            input_kind = "features"

            def __init__(self, *, config=MeanConfig(), num_classes, seed=0):
                self.num_classes = num_classes
                self.means = {}  # class -> (D,) mean feature

            def fit_experience(self, experience):
                x, y = experience.train_x, experience.train_y  # (n, D), (n,)
                for c in experience.classes:
                    self.means[c] = x[y == c].mean(dim=0)

            def predict_scores(self, x):
                scores = torch.full((len(x), self.num_classes), float("-inf"))  # (N, C)
                for c, mean in self.means.items():
                    scores[:, c] = -(x - mean).norm(dim=1)
                return scores

        registry = clproto.REGISTRY.copy()
        registry.register("nearest-mean", NearestMean)
        assert isinstance(NearestMean(num_classes=10), clproto.Strategy)
        runner = clproto.Runner(registry=registry)  # runs definitions with implementation = "nearest-mean"
    """

    Config: ClassVar[type]
    input_kind: ClassVar[str]

    def fit_experience(self, experience: Experience) -> None:
        """Learn from one :class:`~clproto.scenarios.Experience`; called once per experience, in stream order."""

    def predict_scores(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, ...)`` inputs -> ``(N, num_classes)`` scores, higher is more likely, ``-inf`` for classes not learned yet."""


@dataclass(frozen=True)
class Registered:
    name: str
    cls: type
    description: str
    scenario_kinds: tuple[str, ...]  # scenario kinds the default run (`clproto run`) uses it for


class Registry:
    """Name -> strategy class: where a definition's ``implementation`` is looked up.

    :data:`clproto.REGISTRY` holds the built-in strategies; :meth:`register` ``(name, cls, *,
    description="", scenario_kinds=...)`` adds one (a class following :class:`Strategy`) and refuses
    duplicate names and malformed classes; :meth:`get` looks one up (a
    :class:`~clproto.errors.ConfigError` listing the known names if absent); :meth:`copy` gives an
    independent registry to extend without changing the default one. Nothing registers itself by
    being imported.

    Example::

        import clproto
        from clproto.strategies import NMC

        registry = clproto.REGISTRY.copy()
        registry.register("my-nmc", NMC, description="NMC under another name")
        print(registry.names())  # the built-in names and "my-nmc"
        runner = clproto.Runner(registry=registry)
    """

    def __init__(self) -> None:
        self._entries: dict[str, Registered] = {}

    def register(self, name: str, cls: type, *, description: str = "", scenario_kinds: tuple[str, ...] = SCENARIO_KINDS) -> type:
        """Add ``cls`` under ``name`` (``description``: one line for ``clproto list``, default its docstring's
        first line; ``scenario_kinds``: the kinds the default ``clproto run`` uses it for). Returns ``cls``."""
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
        """The entry registered as ``name``; a :class:`~clproto.errors.ConfigError` naming ``where`` if none is."""
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
        """Every registered name, sorted."""
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self):
        return iter(self._entries.values())

    def copy(self) -> "Registry":
        """An independent registry with the same entries (registering into it leaves this one unchanged)."""
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
