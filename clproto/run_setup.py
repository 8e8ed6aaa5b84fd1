"""A run's strategy, from its resolved definition: the check that the strategy takes the scenario's kind
(:func:`check_kind`) and the instance (:func:`build_model`), each error naming the definition file."""

from __future__ import annotations

from typing import Optional

from clproto.config import ResolvedStrategy
from clproto.context import RunContext
from clproto.errors import ConfigError
from clproto.strategies import Registry
from clproto.strategies.base import accepts_context


def build_model(entry, strategy: ResolvedStrategy, *, num_classes: int, seed: int, context: Optional[RunContext] = None):
    """Instantiate a strategy (given ``context`` if its constructor takes one); its own checks of parameters
    (ValueError/TypeError) name the definition file."""
    extra = {"context": context} if context is not None and accepts_context(entry.cls) else {}
    try:
        return entry.cls(config=strategy.params, num_classes=num_classes, seed=seed, **extra)
    except ConfigError as exc:
        raise exc.located(strategy.where) from None
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"strategy {strategy.name!r} rejected its parameters: {exc}", where=strategy.where,
                          field="params") from None


def check_kind(entry, strategy: ResolvedStrategy, kind: str, registry: Registry, *, where: str) -> None:
    """A strategy class may declare ``scenario_kinds`` (default: every kind); another kind is a ConfigError."""
    kinds = tuple(getattr(entry.cls, "scenario_kinds", (kind,)))
    if kind in kinds:
        return
    fits = [n for n in registry.names() if kind in getattr(registry.get(n).cls, "scenario_kinds", (kind,))]
    raise ConfigError(
        f"strategy {strategy.name!r} ({entry.name}) supports {' and '.join(kinds)} scenarios only, not {kind}"
        + (": it needs a base session (base_classes, ways, shots)" if kinds == ("few-shot",) else ""),
        where=where, field="kind", value=kind,
        expected=f"a {' or '.join(kinds)} scenario for {entry.name}, or for this scenario one of: {', '.join(fits)}")
