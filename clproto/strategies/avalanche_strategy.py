"""Avalanche's strategies as clproto rows: ``implementation = "avalanche"``.

    [strategy.params]
    strategy = "EWC"                          # a strategy class of avalanche.training
    params = {ewc_lambda = 0.4}              # its keyword arguments
    plugins = [{name = "ReplayPlugin", params = {mem_size = 200}}]   # extra avalanche.training.plugins
    architecture = "resnet18-reduced"        # + every clproto.training.loop.TrainingConfig field
    epochs = 5

The method is Avalanche's own (Lomonaco et al., "Avalanche: an End-to-End Library for Continual
Learning", CVPR-W 2021; avalanche-lib 0.6), trained by Avalanche's ``train`` loop and plugins; only
the network, the budget, the data and the scoring come from clproto:

* **Network**: ``Network`` = clproto's ``architecture`` (``clproto.nets``) with a linear head over
  all ``num_classes`` classes (Avalanche's class-incremental baselines use one fixed head, plain
  cross-entropy). It takes uint8 ``(B, C, H, W)`` images and scales them as clproto's trained
  strategies do (the default :class:`~clproto.training.inputs.Normalization`, ``(x/255 − 0.5)/0.25``). It has ``feature_extractor``/``classifier`` (iCaRL,
  FeatureReplay, ER-AML use them) and ``get_features`` (LFL). Initialised from the run seed alone.
* **Budget**: ``epochs`` → ``train_epochs``, ``batch_size`` → ``train_mb_size``; ``optimizer``,
  ``lr``, ``momentum``, ``weight_decay`` build the torch optimiser; ``schedule`` (cosine, step,
  constant; not cosine-steps) is applied per experience by Avalanche's ``LRSchedulerPlugin`` stepping each epoch with
  clproto's :func:`~clproto.training.loop.lr_factor` (reset at every experience, as clproto's loop).
* **Augmentation**: ``crop_padding``/``flip`` are clproto's batched random crop + horizontal flip
  (:func:`~clproto.training.inputs.augment`) applied by a plugin to every training mini-batch just
  before the forward pass — replayed samples included (so iCaRL gets ``buffer_transform=None``) —
  drawn from a generator seeded per experience. Evaluation inputs are never augmented.
* **Data**: each clproto :class:`Experience` becomes an Avalanche experience through
  :func:`clproto.avalanche.to_avalanche` on a one-experience scenario (the same samples, task label
  0, inputs in channel-first layout), numbered ``current_experience = experience.index``. Its
  ``benchmark`` is a :class:`BenchmarkView` of the runner's :class:`ScenarioDescription` (class count,
  class order, classes per experience — never other experiences' samples), given by the optional
  ``begin_scenario`` hook; without the hook, of the experiences seen so far followed by one block of
  the classes not seen yet (so the class count, which iCaRL sizes its class means by, is right).
* **Scoring**: ``predict_scores`` runs Avalanche's eval-iteration callbacks around the model's
  forward pass (so plugins that correct outputs at test time, e.g. BiC's bias layer, apply) and
  scores unseen classes ``-inf``; clproto's evaluator fills the accuracy matrices.
* **Randomness**: experience ``t`` trains with Python's, NumPy's and torch's global generators all
  seeded by :func:`experience_seed` ``(seed, t)`` (Avalanche's ``RNGManager.set_random_seeds``:
  its data loaders shuffle with the torch global generator, its buffers sample with torch/NumPy),
  and the caller's generator states are restored afterwards. The same seeding around a plain
  Avalanche ``strategy.train(experience)`` gives the same network (``tests/test_avalanche_rows.py``).

Not wrapped (:data:`NOT_WRAPPED`, each with its reason): strategies that need task labels (a
class-incremental scenario has none at test time), that bring their own pretrained network, or
that are not classifiers. No checkpoints: an Avalanche strategy's state (buffers, importances,
plugins) is not a weights-only state dict, so an interrupted run restarts from its first experience.
"""

from __future__ import annotations

import contextlib
import inspect
import math
import random
import warnings
from dataclasses import dataclass, field
from typing import Any, Optional

import numpy as np
import torch
import torch.nn as nn

from clproto.context import RunContext
from clproto.errors import ConfigError
from clproto.nets import build_network
from clproto.scenarios.scenario import Experience, Scenario
from clproto.strategies.base import ScenarioDescription
from clproto.training.inputs import Normalization, augment
from clproto.training.loop import DivergedError, TrainingConfig, lr_factor, seeded

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


# --------------------------------------------------------------------------- what Avalanche offers
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


# --------------------------------------------------------------------------- configuration
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


# --------------------------------------------------------------------------- network, plugins, benchmark
class Network(nn.Module):
    """uint8 ``(B, C, H, W)`` images -> clproto architecture -> linear head -> ``(B, num_classes)`` logits."""

    def __init__(self, *, architecture: str, in_channels: int, num_classes: int,
                 normalization: Normalization = Normalization()) -> None:
        super().__init__()
        backbone = build_network(architecture, in_channels=in_channels)
        self.feature_extractor = nn.Sequential(_Scale(normalization), backbone)  # (B, C, H, W) uint8 -> (B, D)
        self.classifier = nn.Linear(backbone.feature_dim, num_classes)  # (B, D) -> (B, num_classes)

    def get_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.feature_extractor(x)  # (B, D)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.feature_extractor(x))  # (B, num_classes)


class _Scale(nn.Module):
    """The network's input scaling (by default clproto's fixed ``(x/255 − 0.5)/0.25``) on channel-first images."""

    def __init__(self, normalization: Normalization) -> None:
        super().__init__()
        self.normalization = normalization

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.normalization.apply(x, channel_dim=1)  # (B, C, H, W) float32


def _own_plugins() -> tuple[type, type]:
    """The wrapper's two plugins, defined on first use (importing Avalanche takes seconds)."""
    from avalanche.training.plugins import SupervisedPlugin

    class Augment(SupervisedPlugin):
        """clproto's batched random crop + flip on every training mini-batch, replayed samples included."""

        def __init__(self, *, padding: int, flip: bool) -> None:
            super().__init__()
            self.padding, self.flip = padding, flip
            self.generator = torch.Generator()

        def before_forward(self, strategy, **kwargs) -> None:
            x = strategy.mbatch[0]  # (B, C, H, W) uint8
            hwc = augment(x.permute(0, 2, 3, 1), padding=self.padding, flip=self.flip, generator=self.generator)
            strategy.mbatch[0] = hwc.permute(0, 3, 1, 2).contiguous()  # (B, C, H, W)

    class StopOnDivergence(SupervisedPlugin):
        """A non-finite training loss stops the run with clproto's :class:`DivergedError`."""

        def __init__(self, *, lr: float) -> None:
            super().__init__()
            self.lr = lr

        def before_backward(self, strategy, **kwargs) -> None:
            value = float(strategy.loss.detach())
            if not math.isfinite(value):
                raise DivergedError(
                    f"training diverged: the loss is {value} at experience "
                    f"{strategy.experience.current_experience}, epoch {strategy.clock.train_exp_epochs}",
                    field="params.lr", value=self.lr, expected="a smaller learning rate (or check the inputs)")

    return Augment, StopOnDivergence


@dataclass(frozen=True)
class BenchmarkView:
    """The part of Avalanche's benchmark API strategies read (iCaRL: ``n_classes_per_exp``, ``classes_order``)."""

    n_classes: int  # classes of the dataset (width of the score vectors)
    n_experiences: int
    n_classes_per_exp: list  # classes introduced by each experience
    classes_order: list  # classes in arrival order
    original_classes_order: list  # the same (clproto orders classes itself)
    classes_in_experience: dict  # {"train": [set of classes of each experience]}


def _view(description: ScenarioDescription) -> BenchmarkView:
    order = list(description.class_order)
    return BenchmarkView(n_classes=description.num_classes, n_experiences=len(description.experience_classes),
                         n_classes_per_exp=[len(c) for c in description.experience_classes], classes_order=order,
                         original_classes_order=order,
                         classes_in_experience={"train": [set(c) for c in description.experience_classes]})


def _silent_evaluator(cls: type) -> Any:
    """An EvaluationPlugin without metrics or loggers (clproto's evaluator scores the run), without its warning."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="No loggers specified")
        return cls(loggers=[])


def experience_seed(seed: int, index: int) -> int:
    """The seed of every global generator while experience ``index`` of a run with ``seed`` trains."""
    return int(np.random.SeedSequence([seed, index]).generate_state(1)[0] % (2 ** 31))


@contextlib.contextmanager
def seeded_globals(seed: int):
    """Seed Python's, NumPy's and torch's global generators (as Avalanche's RNGManager does); restore them after."""
    from avalanche.training.determinism.rng_manager import RNGManager

    state = (random.getstate(), np.random.get_state(), torch.get_rng_state())
    RNGManager.set_random_seeds(seed)
    try:
        yield
    finally:
        random.setstate(state[0])
        np.random.set_state(state[1])
        torch.set_rng_state(state[2])


# --------------------------------------------------------------------------- the strategy
class AvalancheStrategy:
    """An Avalanche strategy (``avalanche.training``) trained on clproto experiences, scored by clproto."""

    Config = AvalancheConfig
    input_kind = "images"

    def __init__(self, *, config: AvalancheConfig = AvalancheConfig(), num_classes: int, seed: int = 0,
                 context: Optional[RunContext] = None) -> None:
        self.config = config
        self.num_classes = num_classes
        self.seed = seed
        self.context = context if context is not None else RunContext(seed=seed)  # the device Avalanche trains on
        self.description: Optional[ScenarioDescription] = None  # from begin_scenario, if the runner gives it
        self.template: Any = None  # the Avalanche strategy, built when the input channels are known
        self.seen = torch.zeros(num_classes, dtype=torch.bool)  # (C,) classes trained on so far
        self.history: list[tuple[int, ...]] = []  # classes of each experience trained on (fallback benchmark)
        self._chw: dict[int, tuple[Any, Any]] = {}  # id(dataset) -> (dataset, its channel-first view)

    def begin_scenario(self, description: ScenarioDescription) -> None:
        """The stream's public shape (see :class:`ScenarioDescription`), before the first experience."""
        if description.num_classes != self.num_classes:
            raise ConfigError(f"the scenario has {description.num_classes} classes, the strategy was built for "
                              f"{self.num_classes}", field="num_classes")
        self.description = description
        if len(description.input_shape) == 3:
            self._build(int(description.input_shape[-1]))

    # ------------------------------------------------------------------ building
    def _build(self, in_channels: int) -> None:
        if self.template is not None:
            return
        from avalanche.training.plugins import EvaluationPlugin, LRSchedulerPlugin

        cfg = self.config
        with seeded(self.seed):  # the network's initialisation depends on the run seed alone
            model = Network(architecture=cfg.architecture, in_channels=in_channels, num_classes=self.num_classes)
        if cfg.optimizer == "adam":
            optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        else:
            optimizer = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum,
                                        weight_decay=cfg.weight_decay, nesterov=cfg.optimizer == "nesterov")
        Augment, StopOnDivergence = _own_plugins()
        plugins: list = [StopOnDivergence(lr=cfg.lr)]
        if cfg.schedule != "constant":
            scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda epoch: lr_factor(cfg, epoch))
            plugins.append(LRSchedulerPlugin(scheduler, reset_scheduler=True, reset_lr=True, step_granularity="epoch"))
        self.augment = None
        if cfg.crop_padding > 0 or cfg.flip:
            self.augment = Augment(padding=cfg.crop_padding, flip=cfg.flip)
            plugins.append(self.augment)
        available = _plugin_classes()
        plugins += [available[p["name"]](**p.get("params", {})) for p in cfg.plugins]
        cls = _templates()[cfg.strategy]
        kwargs = dict(optimizer=optimizer, train_mb_size=cfg.batch_size, train_epochs=cfg.epochs,
                      eval_mb_size=cfg.batch_size, device=self.context.device, plugins=plugins,
                      evaluator=_silent_evaluator(EvaluationPlugin), eval_every=-1)
        if cfg.strategy == "ICaRL":
            kwargs.update(feature_extractor=model.feature_extractor, classifier=model.classifier, buffer_transform=None)
        else:
            kwargs.update(model=model)
            if "criterion" in inspect.signature(cls.__init__).parameters:
                kwargs["criterion"] = nn.CrossEntropyLoss()
            if "feature_extractor" in inspect.signature(cls.__init__).parameters:
                kwargs["feature_extractor"] = model.feature_extractor
        try:
            self.template = cls(**kwargs, **cfg.params)
        except (ValueError, TypeError, AssertionError, KeyError) as exc:
            raise ConfigError(f"Avalanche's {cfg.strategy} rejected its parameters: {exc}", field="params",
                              value=cfg.params) from None

    # ------------------------------------------------------------------ data
    def _channel_first(self, experience: Experience):
        """``experience.dataset`` with images as ``(N, C, H, W)`` (a view, no copy), memoised per dataset."""
        ds = experience.dataset
        if id(ds) not in self._chw:
            self._chw = {id(ds): (ds, ds.with_inputs(ds.train_x.transpose(0, 3, 1, 2), ds.test_x.transpose(0, 3, 1, 2),
                                                     suffix="-chw"))}
        return self._chw[id(ds)][1]

    def avalanche_experience(self, experience: Experience):
        """The Avalanche training experience for ``experience``: its samples only, via ``to_avalanche``."""
        from clproto.avalanche import to_avalanche

        one = Scenario(name="clproto-experience", kind="class-incremental", dataset=self._channel_first(experience),
                       class_order=experience.classes, experience_classes=[experience.classes],
                       train_indices=[experience.train_indices], test_indices=[np.empty(0, dtype=np.int64)],
                       seed=self.seed)
        av = to_avalanche(one).train_stream[0]
        av.current_experience = experience.index
        if self.description is not None:
            av.benchmark = _view(self.description)
        else:  # no begin_scenario: the experiences so far, then the classes not seen yet as one block (iCaRL
            # sizes its class means by the sum of n_classes_per_exp, so it must be the dataset's class count)
            order = [c for cls in self.history for c in cls]
            rest = [c for c in range(self.num_classes) if c not in set(order)]
            blocks = [list(c) for c in self.history] + ([rest] if rest else [])
            av.benchmark = BenchmarkView(n_classes=self.num_classes, n_experiences=len(blocks),
                                         n_classes_per_exp=[len(b) for b in blocks], classes_order=order + rest,
                                         original_classes_order=order + rest,
                                         classes_in_experience={"train": [set(b) for b in blocks]})
        return av

    # ------------------------------------------------------------------ protocol
    def fit_experience(self, experience: Experience) -> None:
        if len(experience.train_indices) == 0:
            raise ConfigError(f"experience {experience.index} has no training samples", field="dataset")
        x = experience.dataset.train_x
        if x.dtype != np.uint8 or x.ndim != 4:
            raise ConfigError(f"Avalanche strategies train on uint8 images; the experience holds {x.shape[1:]} "
                              f"({x.dtype})", field="dataset", expected="an image dataset (input_kind = images)")
        self._build(int(x.shape[-1]))
        self.history.append(tuple(experience.classes))
        av = self.avalanche_experience(experience)
        with seeded_globals(experience_seed(self.seed, experience.index)):
            if self.augment is not None:
                self.augment.generator.manual_seed(experience_seed(self.seed, experience.index))
            self.template.train(av)
        self.seen[list(experience.classes)] = True

    def predict_scores(self, x: torch.Tensor) -> torch.Tensor:
        """Avalanche's eval forward (with its plugins' eval callbacks) on uint8 images ``x`` (N, H, W, C)."""
        assert self.template is not None, "the Avalanche strategy has not been trained"
        t = self.template
        t.is_training = False
        t.model.eval()
        xb = x.permute(0, 3, 1, 2).contiguous()  # (N, C, H, W) uint8
        zeros = torch.zeros(len(xb), dtype=torch.long)
        t.mbatch = [xb, zeros, zeros]  # labels are not known at test time; no callback here reads them
        with torch.no_grad():
            t._before_eval_iteration()
            t._before_eval_forward()
            t.mb_output = t.forward()
            t._after_eval_forward()
            t._after_eval_iteration()
        out = t.mb_output.float()  # (N, K)
        if out.shape[1] < self.num_classes:  # e.g. iCaRL's NCM head sized by the largest class seen
            out = torch.cat([out, out.new_full((len(out), self.num_classes - out.shape[1]), float("-inf"))], dim=1)
        return out[:, : self.num_classes].masked_fill(~self.seen, float("-inf"))  # (N, num_classes)
