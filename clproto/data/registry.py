"""Dataset kinds: the registry that turns a scenario's ``dataset`` string into a loaded :class:`Dataset`.

A dataset spec is ``KIND``, ``KIND:PATH`` or either followed by ``?key=value&key=value`` options::

    digits
    CIFAR100
    imagefolder:cifar10.zip
    cub200:CUB_200_2011?size=84

Each kind is a :class:`DatasetKind`: a name (matched without regard to case), whether it takes a
path, an optional options dataclass (every field typed, with a default and a comment) and a load
function receiving a :class:`DatasetRequest`. Kinds are registered explicitly
(:func:`clproto.data.sources.default_dataset_kinds` lists the built-in ones); a second kind with the
same name is a ValueError, an unknown kind or option a :class:`ConfigError` listing the valid ones.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Optional

from clproto.errors import ConfigError

PATH_MODES = ("none", "required")  # whether a kind's spec takes ":PATH"


@dataclass(frozen=True)
class DatasetRequest:
    """Everything a kind's load function needs; ``options`` is an instance of the kind's options dataclass."""

    spec: str  # the whole spec, as written in the scenario definition
    kind: str  # the registered name of the kind
    path: Optional[Path]  # ":PATH" resolved against the data root (None for kinds without a path)
    options: Any  # the kind's options dataclass instance (None for kinds without options)
    data_root: Path  # --data-root / CLPROTO_DATA / user cache
    cache_dir: Optional[str]  # --cache-dir / CLPROTO_CACHE / user cache (None: the default)
    progress: bool  # show progress bars while decoding
    download: bool  # may a missing dataset be downloaded (CLPROTO_DOWNLOAD=1 or download=True)
    where: str  # the definition that named this dataset (for error messages)


@dataclass(frozen=True)
class DatasetKind:
    """One kind of dataset source: how its spec reads and how it loads."""

    name: str  # the KIND of a spec, e.g. "cub200"
    load: Callable[[DatasetRequest], Any]  # returns a clproto.data.dataset.Dataset
    summary: str  # one line for `clproto list`
    path: str = "none"  # "none" (KIND) or "required" (KIND:PATH)
    options: Optional[type] = None  # dataclass of the ?key=value options, each field with a default

    def __post_init__(self) -> None:
        if not self.name or any(c in self.name for c in ":?&= "):
            raise ValueError(f"dataset kind name {self.name!r} must be non-empty without ':?&= '")
        if self.path not in PATH_MODES:
            raise ValueError(f"dataset kind {self.name!r}: path must be one of {PATH_MODES}")
        if self.options is not None and not dataclasses.is_dataclass(self.options):
            raise TypeError(f"dataset kind {self.name!r}: options must be a dataclass")
        if not callable(self.load):
            raise TypeError(f"dataset kind {self.name!r}: load must be callable")

    @property
    def form(self) -> str:
        """The spec without options: ``cub200:PATH``."""
        return self.name + (":PATH" if self.path == "required" else "")

    @property
    def option_defaults(self) -> str:
        """``size=224&fit=crop``: every option with its default ("" without options)."""
        return "&".join(f"{f.name}={f.default}" for f in dataclasses.fields(self.options)) if self.options else ""

    @property
    def usage(self) -> str:
        """How a spec of this kind is written, e.g. ``cub200:PATH[?size=224&fit=crop]``."""
        return self.form + (f"[?{self.option_defaults}]" if self.options else "")


class DatasetKinds:
    """Name -> :class:`DatasetKind`. ``register`` refuses a second kind of the same name (case-insensitive)."""

    def __init__(self) -> None:
        self._kinds: dict[str, DatasetKind] = {}

    def register(self, kind: DatasetKind) -> DatasetKind:
        key = kind.name.lower()
        if key in self._kinds:
            raise ValueError(f"a dataset kind named {kind.name!r} is already registered ({self._kinds[key].summary})")
        self._kinds[key] = kind
        return kind

    def get(self, name: str, *, where: str = "dataset", spec: str = "") -> DatasetKind:
        try:
            return self._kinds[name.lower()]
        except KeyError:
            raise ConfigError("unknown dataset kind", where=where, field="dataset", value=spec or name,
                              expected="one of " + ", ".join(k.usage for k in self)) from None

    def copy(self) -> "DatasetKinds":
        new = DatasetKinds()
        new._kinds = dict(self._kinds)
        return new

    def __iter__(self) -> Iterator[DatasetKind]:
        return iter(self._kinds.values())

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._kinds

    def summaries(self) -> "Summaries":
        return Summaries(self)


class Summaries(Mapping[str, str]):
    """A live ``{form: summary (options and defaults)}`` view of a registry (what `clproto list` prints)."""

    def __init__(self, kinds: DatasetKinds) -> None:
        self._kinds = kinds

    def __getitem__(self, form: str) -> str:
        for k in self._kinds:
            if k.form == form:
                return k.summary + (f"; options ?{k.option_defaults}" if k.options else "")
        raise KeyError(form)

    def __iter__(self) -> Iterator[str]:
        return (k.form for k in self._kinds)

    def __len__(self) -> int:
        return sum(1 for _ in self._kinds)


# --------------------------------------------------------------------------- parsing a spec
@dataclass(frozen=True)
class ParsedSpec:
    kind: DatasetKind
    path: Optional[str]  # as written (not yet resolved)
    options: Any  # the kind's options dataclass instance, or None


def parse_spec(spec: str, kinds: DatasetKinds, *, where: str = "dataset") -> ParsedSpec:
    """Split ``KIND[:PATH][?k=v&...]`` and check it against the kind (path, option names and types)."""
    if not isinstance(spec, str) or not spec.strip():
        raise ConfigError("dataset must be a non-empty string", where=where, field="dataset", value=spec)
    body, qmark, query = spec.partition("?")
    name, colon, path = body.partition(":")
    kind = kinds.get(name.strip(), where=where, spec=spec)
    if kind.path == "required" and not path.strip():
        raise ConfigError(f"dataset kind {kind.name!r} needs a path", where=where, field="dataset", value=spec,
                          expected=kind.usage)
    if kind.path == "none" and colon:
        raise ConfigError(f"dataset kind {kind.name!r} takes no path", where=where, field="dataset", value=spec,
                          expected=kind.usage)
    return ParsedSpec(kind, path if colon else None, _options(kind, query if qmark else None, spec, where))


def _options(kind: DatasetKind, query: Optional[str], spec: str, where: str) -> Any:
    if kind.options is None:
        if query is not None:
            raise ConfigError(f"dataset kind {kind.name!r} takes no options", where=where, field="dataset",
                              value=spec, expected=kind.usage)
        return None
    fields = {f.name: f for f in dataclasses.fields(kind.options)}
    hints = typing.get_type_hints(kind.options)
    values: dict[str, Any] = {}
    for item in (query.split("&") if query else []):
        key, eq, text = item.partition("=")
        if not eq or key not in fields:
            raise ConfigError(f"unknown option {key!r} of dataset kind {kind.name!r}" if eq else
                              f"option {item!r} is not key=value", where=where, field="dataset", value=spec,
                              expected=kind.usage)
        if key in values:
            raise ConfigError(f"option {key!r} is given twice", where=where, field="dataset", value=spec)
        values[key] = _typed(text, hints[key], key, spec, where)
    try:
        return kind.options(**values)
    except (ValueError, TypeError) as exc:  # the options dataclass's own checks
        raise ConfigError(f"dataset kind {kind.name!r}: {exc}", where=where, field="dataset", value=spec,
                          expected=kind.usage) from None


def _typed(text: str, tp: Any, key: str, spec: str, where: str) -> Any:
    try:
        if tp is bool:
            if text.lower() not in ("1", "0", "true", "false", "yes", "no"):
                raise ValueError
            return text.lower() in ("1", "true", "yes")
        return tp(text)
    except ValueError:
        raise ConfigError(f"option {key!r} must be {getattr(tp, '__name__', tp)}", where=where, field="dataset",
                          value=spec) from None
