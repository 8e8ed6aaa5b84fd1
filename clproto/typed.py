"""Typed definitions: a mapping read from TOML checked against a dataclass's fields and types.

The one place the project's definitions (scenarios, strategies, strategy parameters, backbone tables) are
checked: unknown keys, wrong types and values refused by the dataclass become a
:class:`~clproto.errors.ConfigError` naming the file and field. A leaf module (imports only the errors).
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from typing import Any, Mapping

from clproto.errors import ConfigError


def _type_ok(value: Any, tp: Any) -> bool:
    origin = typing.get_origin(tp)
    if tp is Any:
        return True
    if origin is typing.Union or origin is types.UnionType:
        return any(_type_ok(value, a) for a in typing.get_args(tp))
    if tp is type(None):
        return value is None
    if origin in (list, tuple) or tp in (list, tuple):
        return isinstance(value, (list, tuple))
    if origin is dict or tp is dict:
        return isinstance(value, dict)
    if tp is bool:
        return isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if tp is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if tp is str:
        return isinstance(value, str)
    return True


def _describe(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def from_mapping(cls: type, data: Mapping[str, Any], *, where: str, prefix: str = "") -> Any:
    """Build dataclass ``cls`` from ``data``: unknown keys and wrong types are ConfigErrors."""
    if not isinstance(data, Mapping):
        raise ConfigError("expected a table", where=where, field=prefix.rstrip(".") or None, value=data)
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError("unknown field", where=where, field=prefix + unknown[0], value=data[unknown[0]],
                          expected="one of " + ", ".join(fields))
    kwargs = {}
    for name, value in data.items():
        tp = hints[name]
        if not _type_ok(value, tp):
            raise ConfigError("wrong type", where=where, field=prefix + name, value=value, expected=_describe(tp))
        if tp is float and isinstance(value, int):
            value = float(value)
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError("not a finite number", where=where, field=prefix + name, value=value,
                              expected="a finite number (inf and nan are not valid settings)")
        kwargs[name] = value
    missing = [n for n, f in fields.items() if n not in kwargs and f.default is dataclasses.MISSING
               and f.default_factory is dataclasses.MISSING]  # type: ignore[misc]
    if missing:
        raise ConfigError("required field is missing", where=where, field=prefix + missing[0])
    try:
        return cls(**kwargs)
    except ConfigError as exc:
        raise ConfigError(exc.message, where=where, field=prefix + (exc.field or ""), value=exc.value, expected=exc.expected) from None
    except (ValueError, TypeError) as exc:  # a Config's own __post_init__ check
        raise ConfigError(f"invalid value ({exc})", where=where, field=prefix.rstrip(".") or None) from None
