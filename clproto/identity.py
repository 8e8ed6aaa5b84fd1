"""Names and identities of definitions: the names results are filed under (:func:`check_name`,
:func:`label_value` for the ``@field=value`` an override adds), a definition's plain JSON form
(:func:`to_plain`), the fields where two differ (:func:`config_diff`) and the hashes that identify a
configuration and a run (:func:`config_hash`, :func:`run_hash`). Importable from :mod:`clproto.config` too.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from typing import Any

from clproto.errors import ConfigError

NAME_CHARS = "letters, digits and . _ - @ = ,"
_NAME_RE = re.compile(r"[A-Za-z0-9_@=,.-]+")
_LABEL_BAD = re.compile(r"[^A-Za-z0-9_@=,.-]")


def check_name(name: Any, *, where: str, field: str = "name") -> str:
    """A scenario or strategy name: it becomes a folder name, so no path separators and no leading dot."""
    if not isinstance(name, str) or not _NAME_RE.fullmatch(name) or name.startswith(".") or len(name) > 200:
        raise ConfigError("not a valid name (it becomes a folder name under --out)", where=where, field=field,
                          value=name, expected=f"1-200 {NAME_CHARS}, not starting with a dot")
    return name


def label_value(value: Any) -> str:
    """An override value as it appears in a name (``teen@alpha=0.25``): other characters become ``_``."""
    text = value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))
    return _LABEL_BAD.sub("_", text)


def config_diff(a: Any, b: Any, prefix: str = "") -> list[str]:
    """The dotted fields where two plain configurations differ, as ``field: a vs b`` lines."""
    if isinstance(a, dict) and isinstance(b, dict):
        out: list[str] = []
        for k in sorted(set(a) | set(b), key=str):
            out += config_diff(a.get(k, "<absent>"), b.get(k, "<absent>"), f"{prefix}{k}.")
        return out
    return [] if a == b else [f"{prefix.rstrip('.')}: {json.dumps(a)} vs {json.dumps(b)}"]


def to_plain(obj: Any) -> Any:
    """Dataclasses -> dicts, tuples -> lists, for JSON."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, dict):
        return {k: to_plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_plain(v) for v in obj]
    return obj


def config_hash(obj: Any) -> str:
    """16 hex digits of the SHA-256 of ``obj``'s plain JSON form (sorted keys): equal configurations, equal hashes."""
    text = json.dumps(to_plain(obj), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def without_descriptions(config: dict) -> dict:
    """A resolved run configuration minus free text (``description`` of the scenario and strategy)."""
    return {k: ({kk: vv for kk, vv in v.items() if kk != "description"} if isinstance(v, dict) else v)
            for k, v in config.items()}


def run_hash(config: dict) -> str:
    """The identity of a run: the hash of its resolved configuration without free text.

    Computed from the configuration itself (never trusted from a file), so a run recorded by an
    older clproto is recognised by what it ran; editing a definition's ``description`` changes no identity.
    """
    return config_hash(without_descriptions(to_plain(config)))
