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
  Avalanche ``strategy.train(experience)`` gives the same network (``tests/integration/test_avalanche_rows.py``).

Not wrapped (:data:`NOT_WRAPPED`, each with its reason): strategies that need task labels (a
class-incremental scenario has none at test time), that bring their own pretrained network, or
that are not classifiers. No checkpoints: an Avalanche strategy's state (buffers, importances,
plugins) is not a weights-only state dict, so an interrupted run restarts from its first experience.

The definition and its checks are in :mod:`clproto.strategies.avalanche_config`, the network,
the wrapper's own plugins, the benchmark view and the seeding in
:mod:`clproto.strategies.avalanche_parts`; every name stays importable from this module.
"""

from __future__ import annotations

import inspect
from typing import Any, Optional

import numpy as np
import torch
import torch.nn as nn

from clproto.context import RunContext
from clproto.errors import ConfigError
from clproto.scenarios.scenario import Experience, Scenario
from clproto.strategies.avalanche_config import AvalancheConfig, _plugin_classes, _templates
from clproto.strategies.avalanche_config import NOT_WRAPPED, SUPPLIED, TASK_LABELS, wrapped_strategies  # noqa: F401 (importable from here as before)
from clproto.strategies.avalanche_parts import (BenchmarkView, Network, _own_plugins, _silent_evaluator, _view,
                                                experience_seed, seeded_globals)
from clproto.strategies.base import ScenarioDescription
from clproto.training.loop import lr_factor, seeded


class AvalancheStrategy:
    """An Avalanche strategy (``avalanche.training``) trained on clproto experiences, scored by clproto."""

    Config = AvalancheConfig
    input_kind = "images"

    def __init__(self, *, config: Optional[AvalancheConfig] = None, num_classes: int, seed: int = 0,
                 context: Optional[RunContext] = None) -> None:
        # no default instance in the signature: checking one imports Avalanche (seconds) at `import clproto`
        self.config = config if config is not None else AvalancheConfig()
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
