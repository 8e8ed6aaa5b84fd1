"""The short backbone strings, parsed into tables (and tables rendered back as short strings).

=========================================  ======================================================================
shorthand                                  table
=========================================  ======================================================================
``pixels``                                 ``{kind = "pixels"}``
``torchscript:PATH``                       ``{kind = "torchscript", path = PATH}``
``torchvision:ARCH[:WEIGHTS]``             ``{kind = "torchvision", architecture = ARCH, weights = WEIGHTS}``
``torchvision:ARCH[:WEIGHTS]@PATH``        ``{kind = "checkpoint", library = "torchvision", architecture = ARCH, path = PATH, ...}``
``timm:NAME`` / ``timm:NAME@PATH``         ``{kind = "timm", architecture = NAME}`` / ``{kind = "checkpoint", library = "timm", ...}``
``base-trained:ARCH[,key=value,...]``      ``{kind = "base-trained", architecture = ARCH, key = value, ...}`` (values read as TOML)
=========================================  ======================================================================

A base-trained ``ARCH`` is a :mod:`clproto.nets` network or ``torchscript:PATH``, a pretrained network to
fine-tune (``base-trained:torchscript:mobilenet_v1_0.5_160_imagenet.pt,epochs=1``; a PATH with a comma needs the table).
The model kinds take options after ``?`` (``&``-separated): ``size=S|native``, ``norm=none|imagenet``,
``batch=B``, the table fields of the same names. Malformed strings are ConfigErrors; the tables they
give are then checked like any table (:func:`clproto.features.backbone.tables.from_table`).
"""

from __future__ import annotations

import dataclasses
import json
import tomllib
from typing import Any, Mapping

from clproto.errors import ConfigError
from clproto.features.backbone.tables import (CheckpointTable, ModelInput, PixelsTable, TimmTable,
                                              TorchScriptTable, TorchvisionTable, from_table, kind_name)
from clproto.training.base_session import BaseTrainingConfig

SPEC_HELP = ('a [strategy.backbone] table with kind = pixels|torchscript|torchvision|timm|checkpoint|base-trained, '
             'or a shorthand: "pixels", "torchscript:PATH", "torchvision:ARCH[:WEIGHTS][@CHECKPOINT]", '
             '"timm:NAME[@CHECKPOINT]" (each optionally followed by ?size=S&norm=none|imagenet&batch=B), '
             '"base-trained:ARCH[,key=value,...]"')
OPTIONS = ("size", "norm", "batch")
BASE_TRAINED = "base-trained:"


def parse_backbone(value: Any, *, where: str | None = None, field: str = "backbone") -> Any:
    """A backbone as written (a table, or its shorthand string) -> the kind's typed dataclass."""
    return from_table(backbone_table(value, where=where, field=field), where=where, field=field)


def backbone_table(value: Any, *, where: str | None = None, field: str = "backbone") -> dict:
    """A backbone as written -> its table as a plain dict (a shorthand is parsed, a table copied)."""
    if isinstance(value, Mapping):
        return dict(value)
    if not isinstance(value, str) or not value:
        raise ConfigError("a backbone is a table or a non-empty string", where=where, field=field, value=value,
                          expected=SPEC_HELP)
    if value == "pixels":
        return {"kind": "pixels"}
    if value.startswith(BASE_TRAINED):
        return _base_trained(value, where=where, field=field)
    base, _, query = value.partition("?")
    prefix, sep, rest = base.partition(":")
    if not sep or prefix not in ("torchscript", "torchvision", "timm") or not rest:
        raise ConfigError("unknown backbone", where=where, field=field, value=value, expected=SPEC_HELP)
    options = _options(query, value, where=where, field=field)
    if prefix == "torchscript":
        return {"kind": "torchscript", "path": rest, **options}
    rest, at, path = rest.partition("@")
    architecture, _, weights = rest.partition(":") if prefix == "torchvision" else (rest, "", "")
    named = {"weights": weights} if weights else {}
    if at:
        return {"kind": "checkpoint", "library": prefix, "architecture": architecture, "path": path, **named, **options}
    return {"kind": prefix, "architecture": architecture, **named, **options}


def _options(query: str, text: str, *, where: str | None, field: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in filter(None, query.split("&")):
        key, eq, raw = item.partition("=")
        if not eq or key not in OPTIONS:
            raise ConfigError(f"unknown backbone option {item!r}", where=where, field=field, value=text,
                              expected="size=S|native, norm=none|imagenet, batch=B")
        out[key] = int(raw) if raw.isdigit() else raw  # anything else is checked (and named) as a table field
    return out


def _split_options(text: str) -> list[str]:
    """``a,b=[1, 2],c`` -> ``["a", "b=[1, 2]", "c"]``: commas inside brackets belong to a list value."""
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        depth += {"[": 1, "]": -1}.get(ch, 0)
        if ch == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    return [p.strip() for p in [*parts, text[start:]]]


def _base_trained(text: str, *, where: str | None, field: str) -> dict:
    architecture, *pairs = _split_options(text[len(BASE_TRAINED):])
    table: dict[str, Any] = {"kind": "base-trained", "architecture": architecture}
    for pair in pairs:
        key, eq, raw = (p.strip() for p in pair.partition("="))
        if not eq or not key or key == "architecture" or key in table:
            raise ConfigError("malformed base-trained backbone option", where=where, field=field, value=text,
                              expected="base-trained:ARCH[,key=value,...], each key once")
        try:
            table[key] = tomllib.loads(f"v = {raw}")["v"]
        except tomllib.TOMLDecodeError:
            table[key] = raw  # not a TOML value: kept as text, so the type check names the field
    return table


# --------------------------------------------------------------------------- tables -> short strings
def shorthand(spec: Any) -> str:
    """The short string of a typed backbone table, naming only fields that differ from their defaults.

    Used as the backbone's label (notes, cache listings); ``parse_backbone(shorthand(t)) == t``.
    """
    if isinstance(spec, PixelsTable):
        return "pixels"
    if isinstance(spec, BaseTrainingConfig):
        pairs = [f",{f.name}={_toml(getattr(spec, f.name))}" for f in dataclasses.fields(spec)
                 if f.name != "architecture" and getattr(spec, f.name) != f.default]
        return f"{BASE_TRAINED}{spec.architecture}{''.join(pairs)}"
    weights = f":{spec.weights}" if getattr(spec, "weights", "DEFAULT") != "DEFAULT" else ""
    if isinstance(spec, TorchScriptTable):
        head = f"torchscript:{spec.path}"
    elif isinstance(spec, CheckpointTable):
        head = f"{spec.library}:{spec.architecture}{weights}@{spec.path}"
    elif isinstance(spec, (TorchvisionTable, TimmTable)):
        head = f"{kind_name(spec)}:{spec.architecture}{weights}"
    else:
        raise TypeError(f"no shorthand for {type(spec).__name__}")
    defaults = ModelInput()
    options = [f"{k}={getattr(spec, k)}" for k in OPTIONS if getattr(spec, k) != getattr(defaults, k)]
    return head + ("?" + "&".join(options) if options else "")


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_toml(v) for v in value) + "]"
    return json.dumps(value)
