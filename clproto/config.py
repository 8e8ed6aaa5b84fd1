"""Loading scenario and strategy definitions (TOML) into typed dataclasses, with overrides.

A scenario file has one ``[scenario]`` table (fields: :class:`ScenarioConfig`); a strategy file
has one ``[strategy]`` table (fields: :class:`StrategyConfig`) whose ``params`` sub-table is
checked against the registered implementation's own ``Config`` dataclass, and whose ``backbone``
(a ``[strategy.backbone]`` table, or its shorthand string) against its kind's dataclass
(:mod:`clproto.features.backbone.kinds`). Unknown tables or fields, and values of the wrong type,
are errors naming the file and the field.

Overrides (``--set``) are ``section.key=value`` with a TOML value (strings may go unquoted):
``scenario.train_per_class=50``, ``strategy.params.metric=cosine`` (every strategy whose
Config has that field), ``nmc.params.metric=cosine`` (only the strategy named ``nmc``),
``strategy.backbone.epochs=24`` (every features-strategy whose backbone kind has that field; a
shorthand backbone is first parsed into its table).
"""

from __future__ import annotations

import dataclasses
import json
import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Mapping

from clproto.errors import ConfigError
# the names and hashes of definitions (clproto/identity.py) were defined here: they stay importable from here
from clproto.identity import (NAME_CHARS, check_name, config_diff, config_hash, label_value,  # noqa: F401
                              run_hash, to_plain, without_descriptions)
from clproto.typed import from_mapping  # noqa: F401 (from_mapping stays importable from here)
from clproto.features.backbone import as_backbone, backbone_table, kind_named, kind_of, shorthand, to_table
from clproto.scenarios.config import ScenarioConfig
from clproto.strategies.base import Registry


@dataclass(frozen=True)
class StrategyConfig:
    """A strategy definition: the ``[strategy]`` table of a TOML file, typed.

    It names a registered implementation and the values to build it with; it holds no model.
    ``name`` labels the results (folders, table rows) and must be unique within a comparison;
    ``implementation`` is a name of the registry (``clproto list``; it defaults to ``name`` in a
    file); ``backbone`` is the feature extractor of a ``input_kind = "features"`` strategy, a table
    (``[strategy.backbone]``) or its shorthand string (``"pixels"``, ``"resnet18-imagenet"``...);
    ``params`` (``[strategy.params]``) are the hyperparameters, checked against the
    implementation's own ``Config`` dataclass when the definition is read. Each field's comment
    below says its meaning and default. :func:`clproto.load_strategy` reads a file into a resolved
    strategy whose ``config`` is this dataclass and whose ``params`` is the typed ``Config``; a
    :class:`~clproto.errors.ConfigError` names the file and field of bad input.

    Example — the definition of strategies/nmc-pixels.toml, and what reading that file gives::

        from clproto import StrategyConfig

        config = StrategyConfig(name="nmc-pixels", implementation="nmc", backbone="pixels",
                                params={"metric": "euclidean", "normalize": True},
                                description="nearest class mean, Euclidean on L2-normalised pixels")
        strategy = clproto.load_strategy("strategies/nmc-pixels.toml")
        print(strategy.config == config)  # True
        print(strategy.params)  # NMCConfig(metric='euclidean', normalize=True)
    """

    name: str  # display name, unique within a comparison (e.g. "nmc-cosine")
    implementation: str  # registered implementation (see `clproto list`)
    backbone: str | dict = "pixels"  # feature extractor for input_kind="features" strategies: a table or its shorthand
    params: dict = field(default_factory=dict)  # hyperparameters, checked against the implementation's Config
    description: str = ""  # free text shown by `clproto list`


@dataclass(frozen=True)
class Override:
    target: str  # "scenario", "strategy" or a strategy name
    path: tuple[str, ...]  # keys below the target, e.g. ("params", "metric")
    value: Any
    text: str  # as written, for error messages


# --------------------------------------------------------------------------- TOML + overrides
def read_toml(path: str | Path) -> dict:
    path = Path(path)
    if not path.exists():
        raise ConfigError("file not found", where=str(path))
    if path.is_dir():
        raise ConfigError("is a folder, not a definition file", where=str(path), expected="a .toml file")
    try:
        with open(path, "rb") as fh:
            raw = fh.read()
    except OSError as exc:
        raise ConfigError(f"cannot read the file ({exc.strerror or exc})", where=str(path)) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise ConfigError(f"not UTF-8 text (byte {raw[exc.start]:#04x} on line {line})", where=str(path),
                          expected="a TOML file saved as UTF-8") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"not valid TOML: {exc}", where=str(path)) from None


def parse_override(text: str) -> Override:
    key, eq, raw = text.partition("=")
    parts = tuple(p.strip() for p in key.strip().split("."))
    if not eq or len(parts) < 2 or not all(parts):
        raise ConfigError("malformed override", where="--set", value=text, expected="section.key=value, e.g. scenario.train_per_class=50")
    try:
        value = tomllib.loads(f"v = {raw.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw.strip()  # bare string
    return Override(parts[0], parts[1:], value, text)


def _apply(data: dict, ov: Override) -> dict:
    data = json.loads(json.dumps(data))  # deep copy; never mutate the caller's dict
    node = data
    for k in ov.path[:-1]:
        node = node.setdefault(k, {})
        if not isinstance(node, dict):
            raise ConfigError("override goes below a non-table value", where="--set", value=ov.text)
    node[ov.path[-1]] = ov.value
    return data


# --------------------------------------------------------------------------- scenario / strategy
def _section(raw: dict, section: str, where: str) -> dict:
    extra = sorted(set(raw) - {section})
    if extra:
        raise ConfigError(f"unknown table [{extra[0]}]", where=where, expected=f"a single [{section}] table")
    if section not in raw:
        raise ConfigError(f"missing [{section}] table", where=where)
    if not isinstance(raw[section], dict):
        raise ConfigError(f"`{section}` is not a single table", where=where, field=section,
                          expected=f"one [{section}] table (not [[{section}]], an array of tables)")
    return raw[section]


def scenario_from_dict(data: Mapping[str, Any], *, where: str = "scenario", overrides: list[Override] = ()) -> ScenarioConfig:
    data = dict(data)
    for ov in overrides:
        if ov.target == "scenario":
            data = _apply(data, ov)
            where = f"{where} (with --set {ov.text})"
    config = from_mapping(ScenarioConfig, data, where=where)
    check_name(config.name, where=where)
    return config


def load_scenario(path: str | Path, *, overrides: list[Override] = ()) -> ScenarioConfig:
    """Read a scenario definition file and apply ``scenario.*`` overrides."""
    raw = read_toml(path)
    data = _section(raw, "scenario", str(path))
    data.setdefault("name", Path(path).stem)
    return scenario_from_dict(data, where=str(path), overrides=overrides)


@dataclass(frozen=True)
class ResolvedStrategy:
    config: StrategyConfig
    params: Any  # an instance of the implementation's Config dataclass
    where: str
    defined_name: str = ""  # the name in the definition file, before any override renamed it
    backbone: Any = None  # config.backbone as its kind's typed table (parsed from config.backbone when None)

    def __post_init__(self) -> None:
        if self.backbone is None:
            object.__setattr__(self, "backbone", as_backbone(self.config.backbone, where=self.where))

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def backbone_label(self) -> str:
        """The backbone as one string: the shorthand as written, or the table's shorthand."""
        return self.config.backbone if isinstance(self.config.backbone, str) else shorthand(self.backbone)

    def to_dict(self) -> dict:
        """The resolved definition. A shorthand backbone is recorded as written (so a run's identity does not
        depend on the clproto version that read it); a table is recorded with every field resolved."""
        d = to_plain(self.config)
        d["params"] = to_plain(self.params)
        if dataclasses.is_dataclass(self.params):  # a field added later (omit_when_default) at its default: not
            for f in dataclasses.fields(self.params):  # recorded, so identities recorded before it existed hold
                if f.metadata.get("omit_when_default") and getattr(self.params, f.name) == f.default:
                    d["params"].pop(f.name, None)
        if not isinstance(self.config.backbone, str):
            d["backbone"] = to_table(self.backbone)
        return d


def _backbone_override(data: dict, ov: Override, registry: Registry, *, where: str) -> dict | None:
    """``data`` ready for override ``ov`` of its backbone, or None when a strategy-wide one does not apply.

    A strategy-wide backbone override applies to the strategies that read features, and one of a
    backbone field (``strategy.backbone.epochs``) to those whose backbone kind has the field. A
    shorthand backbone is parsed into its table before one of its fields is set.
    """
    impl = registry.get(str(data.get("implementation", data.get("name"))), where=where)
    if ov.target == "strategy" and impl.cls.input_kind != "features":
        return None
    if len(ov.path) == 1:
        return data
    table = backbone_table(data.get("backbone", "pixels"), where=where)
    if ov.target == "strategy" and ov.path[1] != "kind" and ov.path[1] not in kind_named(table.get("kind"), where=where).fields():
        return None
    return {**data, "backbone": table}


def strategy_from_dict(data: Mapping[str, Any], registry: Registry, *, where: str = "strategy",
                       overrides: list[Override] = ()) -> ResolvedStrategy:
    data = dict(data)
    name = data.get("name")
    for ov in overrides:
        if ov.target == "strategy" or (ov.target == name and ov.target != "scenario"):
            if ov.path[0] == "backbone":
                ready = _backbone_override(data, ov, registry, where=where)
                if ready is None:
                    continue
                data = ready
            if ov.path[0] == "params" and len(ov.path) == 2:
                impl = registry.get(str(data.get("implementation", name)), where=where)
                if ov.path[1] not in {f.name for f in dataclasses.fields(impl.cls.Config)} and ov.target == "strategy":
                    continue  # a strategy-wide param override applies to strategies that have the field
            data = _apply(data, ov)
    cfg = from_mapping(StrategyConfig, data, where=where)
    check_name(cfg.name, where=where)
    entry = registry.get(cfg.implementation, where=where)
    params = from_mapping(entry.cls.Config, cfg.params, where=where, prefix="params.")
    return ResolvedStrategy(config=cfg, params=params, where=where, defined_name=str(name or cfg.name),
                            backbone=as_backbone(cfg.backbone, where=where))


def load_strategy(path: str | Path, registry: Registry, *, overrides: list[Override] = ()) -> ResolvedStrategy:
    """Read a strategy definition file, check its params against the registered implementation."""
    raw = read_toml(path)
    data = _section(raw, "strategy", str(path))
    data.setdefault("name", Path(path).stem)
    data.setdefault("implementation", data["name"])
    return strategy_from_dict(data, registry, where=str(path), overrides=overrides)


# --------------------------------------------------------------------------- names from overrides
def _value_at(d: Any, path: tuple[str, ...]) -> Any:
    for k in path:
        if not isinstance(d, dict) or k not in d:
            return "<absent>"
        d = d[k]
    return d


def override_labels(plain: dict, final: dict, overrides: list[Override]) -> list[str]:
    """``field=value`` for each overridden field whose final value differs from the definition's own.

    ``plain`` / ``final``: the definition without / with the overrides, as plain dicts. An override
    that sets ``name`` explicitly means the user named the result: no labels are added then.
    """
    if plain.get("name") != final.get("name"):
        return []
    labels, seen = [], set()
    for ov in overrides:
        if ov.path in seen:
            continue
        seen.add(ov.path)
        if _value_at(plain, ov.path) != _value_at(final, ov.path):
            labels.append(f"{ov.path[-1]}={label_value(_value_at(final, ov.path))}")
    return labels


def with_labels(name: str, labels: list[str], *, where: str) -> str:
    """``name@a=1,b=2`` — the name a run folder and a table row get when overrides change a definition."""
    return check_name(f"{name}@{','.join(labels)}" if labels else name, where=where)


def named_scenario(path: Path, overrides: list[Override]) -> ScenarioConfig:
    """The scenario of ``path`` with ``overrides``, renamed by the fields they change (see :func:`override_labels`)."""
    plain = load_scenario(path)
    sc = load_scenario(path, overrides=overrides) if overrides else plain
    labels = override_labels(to_plain(plain), to_plain(sc), [ov for ov in overrides if ov.target == "scenario"])
    return replace(sc, name=with_labels(sc.name, labels, where=str(path))) if labels else sc


def named_strategy(path: Path, overrides: list[Override], registry: Registry) -> ResolvedStrategy:
    """The strategy of ``path`` with ``overrides``, renamed by the fields they change."""
    plain = load_strategy(path, registry)
    st = load_strategy(path, registry, overrides=overrides) if overrides else plain
    labels = override_labels(plain.to_dict(), st.to_dict(), [ov for ov in overrides if ov.target != "scenario"])
    if not labels:
        return st
    return replace(st, config=replace(st.config, name=with_labels(st.name, labels, where=str(path))))


def check_overrides_used(overrides: list[Override], strategy_names: list[str], registry: Registry,
                         strategies: list[ResolvedStrategy]) -> None:
    """Every override must target something: an unknown section or param is an error."""
    for ov in overrides:
        if ov.target == "scenario":
            continue
        known = {*strategy_names, *(s.defined_name for s in strategies if s.defined_name)}
        if ov.target not in ("strategy", *known):
            raise ConfigError("override names an unknown section", where="--set", value=ov.text,
                              expected="scenario.*, strategy.* or <strategy name>.* with one of " + ", ".join(strategy_names))
        if ov.target == "strategy" and ov.path[0] == "params" and len(ov.path) == 2:
            if not any(ov.path[1] in {f.name for f in dataclasses.fields(type(s.params))} for s in strategies):
                raise ConfigError("no strategy has this parameter", where="--set", value=ov.text)
        if ov.target == "strategy" and ov.path[0] == "backbone" and len(ov.path) == 2 and ov.path[1] != "kind":
            if not any(ov.path[1] in kind_of(s.backbone).fields() for s in strategies):
                raise ConfigError("no strategy's backbone has this field", where="--set", value=ov.text,
                                  expected="a field of a backbone kind of these strategies (clproto.features.backbone.kinds)")
