"""Backbone tables: one frozen dataclass per ``kind`` of a ``[strategy.backbone]`` table (the schema).

A strategy's backbone is a table whose ``kind`` picks one of :data:`KINDS`; its other fields are the
fields of that kind's dataclass (``TorchScriptTable``, ...; ``base-trained``: ``BaseTrainingConfig``),
checked by :func:`clproto.typed.from_mapping` like every other definition (unknown field, wrong type,
bad value: a :class:`~clproto.errors.ConfigError` naming it).
The short strings (``"torchscript:PATH?size=S"``, ``"base-trained:resnet20,epochs=8"``) are
shorthand for these tables (:mod:`clproto.features.backbone.shorthand`).

How each kind is built, and whether it ``needs_scenario``, is the registry of
:mod:`clproto.features.backbone.kinds`; this module is data only (no builder imported), so the builders
(``torch_models``, ``base_trained``) and the shorthand parser can import it without a circle.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Mapping

from clproto.errors import ConfigError
from clproto.typed import from_mapping
from clproto.training.base_session import BaseTrainingConfig

DEFAULT_BATCH = 8  # images per forward pass: on CPU smaller batches were faster than 64 (benchmarks/extract_batch_size.py)
NORMS = ("none", "imagenet")


# --------------------------------------------------------------------------- one dataclass per kind
@dataclass(frozen=True, kw_only=True)
class PixelsTable:
    """``kind = "pixels"``: flattened pixels scaled to [0, 1] (a sanity baseline; no fields)."""


@dataclass(frozen=True, kw_only=True)
class ModelInput:
    """How images are fed to a pretrained model (fields shared by the model kinds)."""

    size: int | str | None = None  # square input side S; "native" keeps the images' size; None: the model's own
    norm: str | None = None  # "imagenet" or "none" mean/std normalisation; None: the weights' own (TorchScript: none)
    batch: int = DEFAULT_BATCH  # images per forward pass

    def __post_init__(self) -> None:
        if isinstance(self.size, str) and self.size != "native":
            raise ConfigError("must be a positive integer or \"native\"", field="size", value=self.size)
        if isinstance(self.size, int) and (isinstance(self.size, bool) or self.size <= 0):
            raise ConfigError("must be a positive integer or \"native\"", field="size", value=self.size)
        if self.norm is not None and self.norm not in NORMS:
            raise ConfigError("unknown normalisation", field="norm", value=self.norm, expected=" or ".join(NORMS))
        if isinstance(self.batch, bool) or not isinstance(self.batch, int) or self.batch <= 0:
            raise ConfigError("must be a positive integer", field="batch", value=self.batch)


def _non_empty(obj: Any, *names: str) -> None:
    for name in names:
        if not isinstance(getattr(obj, name), str) or not getattr(obj, name):
            raise ConfigError("must be a non-empty string", field=name, value=getattr(obj, name))


@dataclass(frozen=True, kw_only=True)
class TorchScriptTable(ModelInput):
    """``kind = "torchscript"``: a TorchScript module ``(N, 3, S, S)`` float RGB in [0, 1] -> ``(N, D)``.

    Without ``size`` the input side comes from the file name's ``_<S>_`` part
    (``mobilenet_v1_0.5_160_imagenet.pt``, TF-slim naming).
    """

    path: str  # the .pt file, relative to the models root (or absolute)

    def __post_init__(self) -> None:
        super().__post_init__()
        _non_empty(self, "path")


@dataclass(frozen=True, kw_only=True)
class TorchvisionTable(ModelInput):
    """``kind = "torchvision"``: a torchvision classifier with downloaded weights, last linear layer dropped."""

    architecture: str  # a classification model of torchvision.models.list_models(), e.g. "resnet18"
    weights: str = "DEFAULT"  # a member of its weights enum, e.g. "IMAGENET1K_V1"; downloaded into <models root>/torchvision

    def __post_init__(self) -> None:
        super().__post_init__()
        _non_empty(self, "architecture", "weights")


@dataclass(frozen=True, kw_only=True)
class TimmTable(ModelInput):
    """``kind = "timm"``: a timm model with its pretrained weights (``pip install timm``), classifier removed."""

    architecture: str  # a name of timm.list_models(), e.g. "resnet18"

    def __post_init__(self) -> None:
        super().__post_init__()
        _non_empty(self, "architecture")


@dataclass(frozen=True, kw_only=True)
class CheckpointTable(ModelInput):
    """``kind = "checkpoint"``: a torchvision or timm architecture with local weights (a state dict file)."""

    library: str  # "torchvision" or "timm": where the architecture comes from
    architecture: str  # the architecture the weights were saved from (checked strictly for torchvision)
    path: str  # the state dict file (or a dict holding it under state_dict / model), relative to the models root
    weights: str = "DEFAULT"  # torchvision only: the weights enum whose preprocessing (side, mean/std) the checkpoint expects

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.library not in ("torchvision", "timm"):
            raise ConfigError("unknown library", field="library", value=self.library, expected="torchvision or timm")
        _non_empty(self, "architecture", "path", "weights")
        if self.library == "timm" and self.weights != "DEFAULT":
            raise ConfigError("a timm checkpoint takes its preprocessing from the model's own config", field="weights",
                              value=self.weights, expected='"DEFAULT" (weights names are torchvision enums)')


# --------------------------------------------------------------------------- building
@dataclass(frozen=True, kw_only=True)
class BuildContext:
    """What building a backbone may need besides its table."""

    models_root: str | None = None  # model files (--models-root / CLPROTO_MODELS / user cache)
    cache_dir: str | None = None  # the on-disk cache (base-trained weights are kept there)
    progress: bool = True  # progress bars while training or extracting
    where: str | None = None  # the definition file, named by errors
    scenario: Any = None  # the run's Scenario, for a kind that needs_scenario
    run: Any = None  # the run's clproto.context.RunContext: extraction's device and precision (None: CPU, fp32)


@dataclass(frozen=True, kw_only=True)
class Built:
    """A backbone ready to extract, and how it came to be."""

    backbone: Any  # a clproto.features.backbone.Backbone
    note: str = ""  # for the run's notes (e.g. "base-trained backbone trained in 40 s"); "" for a loaded model
    computed: bool = False  # True when building it computed something (trained weights): then never a cache hit

# --------------------------------------------------------------------------- name <-> dataclass
TABLES: dict[str, type] = {"pixels": PixelsTable, "torchscript": TorchScriptTable, "torchvision": TorchvisionTable,
                           "timm": TimmTable, "checkpoint": CheckpointTable, "base-trained": BaseTrainingConfig}
_NAMES = {cls: name for name, cls in TABLES.items()}


def _field_names(cls: type) -> list[str]:
    shared = [f.name for f in dataclasses.fields(ModelInput)] if issubclass(cls, ModelInput) else []
    return [f.name for f in dataclasses.fields(cls) if f.name not in shared] + shared


def table_named(name: Any, *, where: str | None = None, field: str = "backbone.kind") -> type:
    """The dataclass of backbone kind ``name``; unknown: a ConfigError listing the kinds."""
    if name not in TABLES:
        raise ConfigError("unknown backbone kind" if name is not None else "a backbone table needs a kind",
                          where=where, field=field, value=name, expected="one of " + ", ".join(TABLES))
    return TABLES[name]


def kind_name(spec: Any) -> str:
    """The ``kind`` of a typed backbone table (an instance of one of the kinds' dataclasses)."""
    try:
        return _NAMES[type(spec)]
    except KeyError:
        raise TypeError(f"{type(spec).__name__} is not a backbone table (kinds: {', '.join(TABLES)})") from None


def from_table(table: Mapping[str, Any], *, where: str | None = None, field: str = "backbone") -> Any:
    """``{"kind": ..., **fields}`` -> the kind's dataclass; unknown kind, field, type or value: ConfigError."""
    if not isinstance(table, Mapping):
        raise ConfigError("expected a table or a shorthand string", where=where, field=field, value=table)
    name = table.get("kind")
    table_class = table_named(name, where=where, field=f"{field}.kind")
    names = _field_names(table_class)
    unknown = sorted(set(table) - {"kind", *names})
    if unknown:
        raise ConfigError(f"unknown field for a {name} backbone", where=where, field=f"{field}.{unknown[0]}",
                          value=table[unknown[0]], expected="one of " + ", ".join(["kind", *names]))
    return from_mapping(table_class, {k: v for k, v in table.items() if k != "kind"}, where=where or field,
                        prefix=f"{field}.")


def to_table(spec: Any) -> dict:
    """A typed backbone table as a plain dict: ``kind`` first, then every field (defaults included; tuples as
    lists, as a recorded configuration holds them), except a
    field added later (metadata ``omit_when_default``) while it holds its default: recorded run identities hold."""
    omit = {f.name for f in dataclasses.fields(spec)
            if f.metadata.get("omit_when_default") and getattr(spec, f.name) == f.default}
    values = {name: getattr(spec, name) for name in _field_names(type(spec)) if name not in omit}
    return {"kind": kind_name(spec), **{k: list(v) if isinstance(v, tuple) else v for k, v in values.items()}}
