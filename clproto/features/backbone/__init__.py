"""Backbones: uint8 images -> float32 feature vectors, each kind with its own table and preprocessing.

A strategy's ``backbone`` is a table (``[strategy.backbone]``) whose ``kind`` is one of:

================  =====================================================================================
``pixels``        flattened pixels scaled to [0, 1] (a sanity baseline)
``torchscript``   a TorchScript file ``path``: ``(N, 3, S, S)`` float RGB in [0, 1] -> ``(N, D)``
``torchvision``   a torchvision classifier ``architecture`` with its ``weights`` (downloaded), head dropped
``timm``          a timm model ``architecture`` with its pretrained weights, head dropped
``checkpoint``    a torchvision or timm ``architecture`` with a local state dict ``path``
``base-trained``  a ``clproto.nets`` network trained on the run's base session (it needs the scenario)
================  =====================================================================================

The model kinds share ``size`` (input side, or ``"native"``), ``norm`` (``"none"`` / ``"imagenet"``)
and ``batch``; every field with its default is in :mod:`clproto.features.backbone.kinds`. The short
strings of earlier versions (``"torchscript:PATH?size=S"``, ``"base-trained:resnet20,epochs=8"``) stay
accepted as shorthand for the tables (:mod:`clproto.features.backbone.shorthand`).

Modules: ``kinds`` (the dataclasses and the registry), ``shorthand`` (strings <-> tables), ``base``
(the :class:`Backbone` protocol, pixels), ``preprocess``, ``torch_models`` (the pretrained kinds);
the ``base-trained`` kind is :mod:`clproto.features.base_trained`.
"""

from __future__ import annotations

import os
from typing import Any

from clproto.errors import ConfigError
from clproto.features.backbone.base import FEATURE_VERSION, Backbone, PixelBackbone
from clproto.features.backbone.kinds import (DEFAULT_BATCH, KINDS, BackboneKind, BuildContext, Built,
                                             CheckpointTable, ModelInput, PixelsTable, TimmTable,
                                             TorchScriptTable, TorchvisionTable, from_table, kind_named,
                                             kind_of, to_table)
from clproto.features.backbone.preprocess import IMAGENET_MEAN, IMAGENET_STD, Preprocess
from clproto.features.backbone.shorthand import SPEC_HELP, backbone_table, parse_backbone, shorthand
from clproto.features.backbone.torch_models import TorchBackbone
from clproto.features.extraction import Extraction, extract_dataset_features


def is_backbone_table(value: Any) -> bool:
    """True for a typed backbone table (an instance of one of the kinds' dataclasses)."""
    return any(type(value) is kind.config for kind in KINDS.values())


def as_backbone(value: Any, *, where: str | None = None) -> Any:
    """A typed backbone table from a typed table, a table (mapping) or a shorthand string."""
    return value if is_backbone_table(value) else parse_backbone(value, where=where)


def load_backbone(backbone: Any, *, models_root: str | os.PathLike | None = None, where: str | None = None) -> Backbone:
    """A ready backbone from its table or shorthand (a kind that needs a scenario: use ``Runner.features``)."""
    spec = as_backbone(backbone, where=where)
    kind = kind_of(spec)
    if kind.needs_scenario:
        raise ConfigError(f"a {kind.name} backbone is built from a scenario and cannot be loaded on its own",
                          where=where, field="backbone", value=shorthand(spec),
                          expected="Runner.features(dataset, backbone, scenario=...)")
    models_root = None if models_root is None else str(models_root)
    return kind.build(spec, BuildContext(models_root=models_root, where=where)).backbone


__all__ = ["Backbone", "BackboneKind", "BuildContext", "Built", "CheckpointTable", "DEFAULT_BATCH", "Extraction",
           "FEATURE_VERSION", "IMAGENET_MEAN", "IMAGENET_STD", "KINDS", "ModelInput", "PixelBackbone", "PixelsTable",
           "Preprocess", "SPEC_HELP", "TimmTable", "TorchBackbone", "TorchScriptTable", "TorchvisionTable",
           "as_backbone", "backbone_table", "extract_dataset_features", "from_table", "is_backbone_table",
           "kind_named", "kind_of", "load_backbone", "parse_backbone", "shorthand", "to_table"]
