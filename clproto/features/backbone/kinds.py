"""The backbone-kind registry: for every ``kind`` its table's dataclass, whether it ``needs_scenario``, and how
its backbone is built.

A ``base-trained`` network is trained on the run's base session, so its features depend on the scenario; a
pretrained model's do not. The tables themselves (the schema, and ``from_table`` / ``to_table``) are
:mod:`clproto.features.backbone.tables`; their names stay importable from here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from clproto.features.backbone.base import PixelBackbone
from clproto.features.backbone.tables import (DEFAULT_BATCH, NORMS, BuildContext, Built, CheckpointTable,  # noqa: F401 (re-exported)
                                              ModelInput, PixelsTable, TimmTable, TorchScriptTable, TorchvisionTable,
                                              TABLES, _field_names, from_table, kind_name, table_named, to_table)
from clproto.features.backbone.torch_models import load_model
from clproto.features.base_trained import base_session_key, build_base_trained
from clproto.training.base_session import BaseTrainingConfig


@dataclass(frozen=True, kw_only=True)
class BackboneKind:
    """One entry of the registry: a ``kind``, its table's dataclass, and how to build the backbone."""

    name: str  # the table's `kind`
    config: type  # the frozen dataclass of the table's other fields
    needs_scenario: bool  # built from the run's scenario (e.g. trained on its base session)
    build: Callable[[Any, BuildContext], Built]  # (typed table, context) -> Built
    scenario_key: Callable[..., str] | None = None  # (table, scenario, *, where) -> what of the scenario it depends on

    def fields(self) -> list[str]:
        """The table's field names (besides ``kind``): the kind's own first, then the shared input options."""
        return _field_names(self.config)


def _build_pixels(spec: PixelsTable, ctx: BuildContext) -> Built:
    return Built(backbone=PixelBackbone())


def _build_model(spec: ModelInput, ctx: BuildContext) -> Built:
    return Built(backbone=load_model(spec, models_root=ctx.models_root, where=ctx.where))


def _build_base_trained(spec: BaseTrainingConfig, ctx: BuildContext) -> Built:
    return build_base_trained(spec, ctx)


def _base_session_key(spec: BaseTrainingConfig, scenario: Any, *, where: str | None = None) -> str:
    return base_session_key(spec, scenario, where=where)


# how each table of tables.TABLES is built: a pretrained model unless listed here (the one list of kinds is TABLES)
_SPECIAL = {  # table class -> (needs_scenario, build, scenario_key)
    PixelsTable: (False, _build_pixels, None),
    BaseTrainingConfig: (True, _build_base_trained, _base_session_key),
}
KINDS: dict[str, BackboneKind] = {
    name: BackboneKind(name=name, config=cls, needs_scenario=how[0], build=how[1], scenario_key=how[2])
    for name, cls in TABLES.items() for how in [_SPECIAL.get(cls, (False, _build_model, None))]
}


def kind_named(name: Any, *, where: str | None = None, field: str = "backbone.kind") -> BackboneKind:
    """The kind called ``name``; unknown: the ConfigError of :func:`~clproto.features.backbone.tables.table_named`."""
    table_named(name, where=where, field=field)
    return KINDS[name]


def kind_of(spec: Any) -> BackboneKind:
    """The kind of a typed backbone table (an instance of one of the kinds' dataclasses); else a TypeError."""
    return KINDS[kind_name(spec)]
