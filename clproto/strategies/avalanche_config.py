"""The definition of an Avalanche row (``implementation = "avalanche"``): :class:`AvalancheConfig`.

Which ``avalanche.training`` strategy classes the wrapper runs (:func:`wrapped_strategies`; the
refused ones in :data:`NOT_WRAPPED` with their reasons), and the check of a definition's
``params`` and ``plugins`` against those classes' signatures, so a typo or a wrongly typed value
is a :class:`~clproto.errors.ConfigError` naming the field before any training.
See :mod:`clproto.strategies.avalanche_strategy` for the strategy itself.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any

from clproto.errors import ConfigError
from clproto.training.loop import TrainingConfig

TASK_LABELS = ("it keeps one column, mask or expert per task label and picks it at test time by the sample's "
               "task label; a class-incremental scenario gives every sample task label 0 and no task at test "
               "time, so it would silently reduce to fine-tuning one network")
NOT_WRAPPED = {  # avalanche.training strategy classes this wrapper refuses, and why
    "PNNStrategy": "needs task labels: " + TASK_LABELS,
    "PackNet": "needs task labels: " + TASK_LABELS,
    "ExpertGateStrategy": "needs task labels: " + TASK_LABELS,
    "AR1": "builds its own pretrained MobileNet instead of clproto's architecture",
    "LearningToPrompt": "builds its own pretrained ViT instead of clproto's architecture",
    "StreamingLDA": "classifies frozen features (use a frozen-feature clproto strategy)",
    "AETraining": "trains an autoencoder, not a classifier",
    "VAETraining": "trains a variational autoencoder, not a classifier",
    "GenerativeReplay": "needs a generator strategy object, which a TOML definition cannot hold",
    "SCR": "needs an SCRModel (projection head) and a GPU augmentation module",
    "BiC": "Avalanche 0.6's BiC plugin assigns experience.dataset, which its DatasetExperience does not allow",
    "JointTraining": "trains once on the whole stream (clproto's own `joint` strategy is that row)",
    "ER_AML": "Avalanche 0.6's ER_AML loops forever on a class-incremental stream (cycles an empty "
              "positive/negative replay loader)",
    "GSS_greedy": "Avalanche 0.6's GSS_greedy fails on a class-incremental stream (max() of an empty sequence "
                  "in get_batch_sim)",
    "CoPE": "its model must output embeddings of size p_size, not class scores",
}
# keyword arguments the wrapper itself supplies to every strategy (the definition cannot set them)
SUPPLIED = ("model", "optimizer", "criterion", "train_mb_size", "train_epochs", "eval_mb_size", "device",
            "plugins", "evaluator", "eval_every", "base_kwargs", "kwargs", "feature_extractor", "classifier",
            "buffer_transform")


def _templates() -> dict[str, type]:
    """Every strategy class exported by ``avalanche.training`` (subclasses of its SupervisedTemplate)."""
    import avalanche.training as at
    from avalanche.training.templates import SupervisedMetaLearningTemplate, SupervisedTemplate

    bases = (SupervisedTemplate, SupervisedMetaLearningTemplate)
    return {n: c for n in dir(at) if inspect.isclass(c := getattr(at, n)) and issubclass(c, bases)}


def wrapped_strategies() -> list[str]:
    """Names ``strategy`` accepts: Avalanche's strategy classes minus :data:`NOT_WRAPPED`."""
    return sorted(n for n in _templates() if n not in NOT_WRAPPED)


def _plugin_classes() -> dict[str, type]:
    import avalanche.training.plugins as ap
    from avalanche.core import BasePlugin

    return {n: c for n in dir(ap) if inspect.isclass(c := getattr(ap, n)) and issubclass(c, BasePlugin)
            and not inspect.isabstract(c) and n not in ("EvaluationPlugin", "SupervisedPlugin")}


def _type_ok(value: Any, default: Any) -> bool:
    """A TOML value for a parameter whose default is ``default`` (numbers may also be lists of numbers)."""
    def number(v: Any) -> bool:
        return isinstance(v, (int, float)) and not isinstance(v, bool)

    if isinstance(default, bool):
        return isinstance(value, bool)
    if number(default):
        return number(value) or (isinstance(value, list) and all(number(v) for v in value))
    if isinstance(default, str):
        return isinstance(value, str)
    return True  # no default, None, or an object: Avalanche checks it


def _check_kwargs(fn: Any, given: dict, *, supplied: tuple[str, ...], field_name: str, owner: str) -> None:
    """``given`` must name keyword arguments of ``fn`` (not the wrapper's own); required ones must be there."""
    sig = inspect.signature(fn)
    accepted = {n: p for n, p in sig.parameters.items() if n != "self" and n not in supplied
                and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}
    if not isinstance(given, dict):
        raise ConfigError("expected a table of keyword arguments", field=field_name, value=given)
    listing = ", ".join(accepted) or "none"
    for name, value in given.items():
        if name not in accepted:
            raise ConfigError(f"{owner} has no parameter {name!r}", field=f"{field_name}.{name}", value=value,
                              expected=f"one of {listing}")
        default = accepted[name].default
        if default is inspect.Parameter.empty and accepted[name].annotation in (bool, int, float, str):
            default = accepted[name].annotation()  # a required parameter: its annotation says the type
        if not _type_ok(value, default):
            raise ConfigError(f"{owner} parameter {name!r} has the wrong type", field=f"{field_name}.{name}",
                              value=value, expected=f"a {type(default).__name__} (the type of its default or annotation)")
    missing = [n for n, p in accepted.items() if p.default is inspect.Parameter.empty and n not in given]
    if missing:
        raise ConfigError(f"{owner} needs the parameter{'s' if len(missing) > 1 else ''} {', '.join(missing)}",
                          field=field_name, expected=f"values for {', '.join(missing)} (accepted: {listing})")


@dataclass(frozen=True)
class AvalancheConfig(TrainingConfig):
    """The Avalanche strategy, its parameters and plugins, plus clproto's training budget fields."""

    strategy: str = "Naive"  # a strategy class of avalanche.training, e.g. "EWC" (see wrapped_strategies())
    params: dict = field(default_factory=dict)  # that class's keyword arguments, e.g. {ewc_lambda = 0.4}
    plugins: list = field(default_factory=list)  # extra plugins: [{name = "ReplayPlugin", params = {mem_size = 200}}]

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.schedule == "cosine-steps":  # Avalanche's scheduler plugin steps per epoch here, with lr_factor
            raise ConfigError("the Avalanche wrapper schedules the learning rate per epoch", field="schedule",
                              value=self.schedule, expected="constant, cosine or step")
        if self.strategy in NOT_WRAPPED:
            raise ConfigError(f"Avalanche's {self.strategy} cannot run as a clproto row: {NOT_WRAPPED[self.strategy]}",
                              field="strategy", value=self.strategy,
                              expected="one of " + ", ".join(wrapped_strategies()))
        templates = _templates()
        if self.strategy not in templates:
            raise ConfigError("unknown Avalanche strategy", field="strategy", value=self.strategy,
                              expected="a strategy class of avalanche.training: " + ", ".join(wrapped_strategies()))
        _check_kwargs(templates[self.strategy].__init__, self.params, supplied=SUPPLIED, field_name="params",
                      owner=self.strategy)
        available = _plugin_classes()
        for i, spec in enumerate(self.plugins):
            where = f"plugins[{i}]"
            if not isinstance(spec, dict) or "name" not in spec or set(spec) - {"name", "params"}:
                raise ConfigError("a plugin is a table with `name` and optional `params`", field=where, value=spec,
                                  expected='{name = "ReplayPlugin", params = {mem_size = 200}}')
            if spec["name"] not in available:
                raise ConfigError("unknown Avalanche plugin", field=f"{where}.name", value=spec["name"],
                                  expected="a plugin class of avalanche.training.plugins: " + ", ".join(sorted(available)))
            _check_kwargs(available[spec["name"]].__init__, spec.get("params", {}), supplied=(),
                          field_name=f"{where}.params", owner=spec["name"])
