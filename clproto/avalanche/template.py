"""clproto strategies inside Avalanche: :class:`ClprotoTemplate` and the :class:`StrategyModule` it scores with."""

from __future__ import annotations

from typing import Any, Optional

import numpy as np
import torch
from avalanche.training.plugins.evaluation import default_evaluator
from avalanche.training.templates import SupervisedTemplate
from torch import nn

from clproto.avalanche.samples import INDEX_ATTRIBUTE, _hash, _indices, _inputs, _ordered, _targets
from clproto.data.dataset import Dataset
from clproto.errors import ConfigError
from clproto.scenarios.scenario import Experience


class StrategyModule(nn.Module):
    """The ``model`` Avalanche sees: ``forward(x) = strategy.predict_scores(x)``, ``(B, C)`` scores.

    Unseen classes keep their ``-inf`` score, so Avalanche's argmax never picks them. The strategy
    is held as a plain attribute, not a submodule: Avalanche's ``model.train()``/``model.eval()``
    and optimiser bookkeeping leave it alone, as clproto's runner does.
    """

    def __init__(self, *, strategy: Any, backbone: Any = None) -> None:
        super().__init__()
        object.__setattr__(self, "strategy", strategy)  # not registered as a submodule (see above)
        self.backbone = backbone  # optional clproto Backbone applied to the inputs first

    def features(self, x: torch.Tensor) -> torch.Tensor:
        if self.backbone is None:
            return x
        return torch.from_numpy(self.backbone.extract(x.cpu().numpy(), progress=False))  # (B, D)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.strategy.predict_scores(self.features(x))  # (B, num_classes)


def _placeholder_optimizer() -> torch.optim.Optimizer:
    """SupervisedTemplate needs an optimiser; the template runs zero epochs, so it never steps."""
    return torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=0.0)


def _check_input_kind(strategy: Any, x: np.ndarray) -> None:
    is_images = x.dtype == np.uint8 and x.ndim == 4
    kind = strategy.input_kind
    if kind == "features" and is_images:
        raise ConfigError(
            f"strategy {type(strategy).__name__} consumes features but the experience holds uint8 images "
            f"{x.shape[1:]}", where="ClprotoTemplate", field="backbone",
            expected="backbone=clproto.features.backbone.load_backbone(...), or to_avalanche(scenario.with_dataset(features))")
    if kind == "images" and not is_images:
        raise ConfigError(
            f"strategy {type(strategy).__name__} trains on uint8 images but the experience holds inputs of "
            f"shape {x.shape[1:]} ({x.dtype})", where="ClprotoTemplate", expected="a benchmark of uint8 images and no backbone")


class ClprotoTemplate(SupervisedTemplate):
    """Avalanche ``SupervisedTemplate`` that trains and evaluates a clproto strategy.

    ``train(experience)`` fits the strategy once per experience (``fit_experience``) inside the
    template's per-experience training step, with zero template epochs; every plugin callback
    around it (``before/after_training_exp``, dataset adaptation, the EvaluationPlugin) runs as
    usual. ``eval(stream)`` scores mini-batches with ``predict_scores``, so Avalanche's metrics
    and loggers measure the clproto strategy.

    ``num_classes``: width of the score vectors (classes of the whole dataset). ``dataset``: the
    clproto dataset a :func:`to_avalanche` benchmark was made from; given it, each experience is
    handed to the strategy as the very :class:`Experience` clproto's runner would build (same
    dataset, same indices) instead of a copy of its samples. ``backbone``: a clproto backbone
    applied to the benchmark's inputs for ``input_kind = "features"`` strategies.

    Without ``dataset``, each experience's adapted samples (Avalanche's ``train`` transform group,
    so random augmentations are drawn once) are read once and appended to a
    growing training set, and the strategy gets an :class:`Experience` indexing into it, so
    strategies that remember samples by index (joint training) stay correct.
    """

    def __init__(self, *, strategy: Any, num_classes: int, dataset: Optional[Dataset] = None, backbone: Any = None,
                 train_mb_size: int = 256, eval_mb_size: int = 256, device: str = "cpu",
                 plugins: Optional[list] = None, evaluator: Any = None, eval_every: int = -1) -> None:
        if dataset is not None and backbone is not None:
            from clproto.features.backbone import extract_dataset_features

            dataset = extract_dataset_features(backbone, dataset, progress=False).features
        self.strategy = strategy  # the clproto strategy being trained and evaluated
        self.num_classes = num_classes
        self.clproto_dataset = dataset
        self.seen_classes: list[int] = []  # classes trained on so far, in arrival order
        self.store: Optional[Dataset] = None  # without `dataset`: every training sample handed to the strategy so far
        super().__init__(
            model=StrategyModule(strategy=strategy, backbone=backbone),
            optimizer=_placeholder_optimizer(),
            criterion=nn.CrossEntropyLoss(),  # only the eval loss metric uses it
            train_mb_size=train_mb_size,
            train_epochs=0,  # no template SGD epoch: the strategy learns in fit_experience
            eval_mb_size=eval_mb_size,
            device=device,
            plugins=plugins,
            evaluator=default_evaluator if evaluator is None else evaluator,
            eval_every=eval_every,
        )

    def make_optimizer(self, **kwargs) -> None:
        """Nothing for the template to optimise: the strategy owns its parameters and optimiser."""

    def _train_exp(self, experience, eval_streams=None, **kwargs) -> None:
        clproto_experience = self.clproto_experience(experience)
        loop = getattr(self.strategy, "loop", None)
        listeners = getattr(loop, "listeners", None)
        if listeners is not None:  # a trained strategy: relay its steps for the duration of this fit only
            listeners.append(self._relay_training_event)
        try:
            self.strategy.fit_experience(clproto_experience)
        finally:
            if listeners is not None:
                listeners.remove(self._relay_training_event)
        super()._train_exp(experience, eval_streams, **kwargs)  # zero epochs: only bookkeeping

    def _relay_training_event(self, event: Any) -> None:
        """A :class:`~clproto.training.loop.TrainingEvent` of the strategy's loop, as Avalanche callbacks."""
        if event.kind == "epoch_start":
            self._before_training_epoch()
        elif event.kind == "epoch_end":
            self._after_training_epoch()
        elif event.kind == "step":
            self.mbatch = [event.inputs, event.targets, torch.zeros_like(event.targets)]  # x (B,C,H,W), y (B,), t (B,)
            self.mb_output = event.scores  # (B, C) or None
            self._before_training_iteration()  # fired after the step: the loss exists only then
            self.loss = torch.tensor(event.loss)
            self._after_training_iteration()

    def clproto_experience(self, experience: Any) -> Experience:
        """The clproto :class:`Experience` for an Avalanche training experience (its adapted dataset)."""
        data = self.adapted_dataset if self.adapted_dataset is not None else experience.dataset
        where = f"train_stream[{experience.current_experience}]"
        y = _targets(data, where)
        classes = _ordered(experience, {int(c) for c in experience.dataset.targets.uniques}, None)
        self.seen_classes.extend(c for c in classes if c not in self.seen_classes)
        if len(y) and y.max() >= self.num_classes:
            raise ConfigError(f"class {int(y.max())} is outside the template's {self.num_classes} classes",
                              where="ClprotoTemplate", field="num_classes", value=self.num_classes)
        index = _indices(data)
        if self.clproto_dataset is not None and index is not None:
            ds = self.clproto_dataset
            if index.max() >= len(ds.train_y) or not np.array_equal(ds.train_y[index], y):
                raise ConfigError(f"`{INDEX_ATTRIBUTE}` of {where} does not match the given dataset", where="ClprotoTemplate",
                                  field="dataset", expected="the clproto dataset the benchmark was made from")
            train_indices = index
        else:  # copy the samples, appended to those of earlier experiences so old indices stay valid
            x = self.model.features(torch.from_numpy(_inputs(data, where))).numpy()
            offset = 0 if self.store is None else len(self.store.train_y)
            if self.store is not None and (x.shape[1:], x.dtype) != (self.store.train_x.shape[1:], self.store.train_x.dtype):
                raise ConfigError(f"{where} holds inputs {x.shape[1:]} ({x.dtype}), earlier experiences "
                                  f"{self.store.train_x.shape[1:]} ({self.store.train_x.dtype})", where="ClprotoTemplate")
            all_x = x if self.store is None else np.concatenate([self.store.train_x, x])
            all_y = y if self.store is None else np.concatenate([self.store.train_y, y])
            ds = self.store = Dataset(name="avalanche-train", train_x=all_x, train_y=all_y, test_x=all_x[:0],
                                      test_y=all_y[:0], class_names=tuple(str(c) for c in range(self.num_classes)),
                                      identity=_hash(all_x, all_y))
            train_indices = np.arange(offset, offset + len(y))
        _check_input_kind(self.strategy, ds.train_x)
        return Experience(
            index=int(experience.current_experience),
            task_id=int(experience.current_experience),
            classes=classes,
            seen_classes=tuple(self.seen_classes),
            train_indices=train_indices,
            test_indices=np.empty(0, dtype=np.int64),
            dataset=ds,
            num_classes=self.num_classes,
            base_classes=tuple(getattr(experience, "clproto_base_classes", ())),
        )
