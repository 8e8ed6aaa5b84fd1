"""Avalanche (avalanche-lib 0.6) interop: scenarios both ways, clproto strategies inside Avalanche.

    from clproto.avalanche import ClprotoTemplate, from_avalanche, to_avalanche

    benchmark = to_avalanche(scenario)                  # train_stream / test_stream, one experience each
    template = ClprotoTemplate(strategy=NMC(num_classes=10), num_classes=10, evaluator=my_eval_plugin)
    for t, exp in enumerate(benchmark.train_stream):
        template.train(exp)                              # Avalanche's own loop, plugins and loggers
        template.eval(benchmark.test_stream[: t + 1])   # the seen experiences, as clproto evaluates
    back = from_avalanche(benchmark, dataset=scenario.dataset)   # the same scenario again

Everything here is an adapter over clproto's public API; no clproto class inherits from Avalanche.

**Scenarios.** :func:`to_avalanche` keeps the clproto inputs unchanged (uint8 ``H×W×C`` images or
float feature vectors), one Avalanche experience per clproto experience (few-shot sessions
included), task label 0 everywhere (class-incremental), and a per-sample data attribute
``clproto_index`` (:data:`INDEX_ATTRIBUTE`): the sample's index into the clproto dataset's train
or test split. Experiences also carry ``clproto_classes`` (their classes in clproto's order) and
``clproto_base_classes``; the benchmark carries ``clproto_info`` (:class:`ScenarioInfo`).
:func:`from_avalanche` reads any class-incremental Avalanche benchmark whose experiences hold
classification datasets (``targets``), e.g. from ``class_incremental_benchmark`` or
``benchmark_from_datasets``; with ``dataset=`` it maps samples back onto that clproto dataset
through ``clproto_index``, so the round trip keeps every index.

**Strategies.** :class:`ClprotoTemplate` is a ``SupervisedTemplate`` whose model scores with
``strategy.predict_scores`` and whose per-experience training step calls
``strategy.fit_experience`` once. It runs **zero template epochs**: frozen-feature strategies
(NMC, TEEN) waste no SGD step, and trained strategies (PRD, fine-tuning, joint) run their own
optimiser inside that training hook. Their loss still goes through the template: while it fits,
the template listens to the strategy's :class:`~clproto.training.loop.TrainingLoop` and, after
every optimiser step, sets ``mbatch`` (first augmented view, labels, task 0), ``mb_output`` (the
strategy's training scores) and ``loss``, then fires Avalanche's ``before/after_training_iteration``
callbacks (and ``before/after_training_epoch`` around each epoch), so ``loss_metrics(minibatch=True,
epoch=True)``, training ``accuracy_metrics`` and every logger see the real per-batch loss. Plugins
that change the optimisation itself (e.g. ``LRSchedulerPlugin``, ``EWCPlugin``'s penalty) have no
effect: the template's optimiser is unused. The strategy is fitted on the
template's ``adapted_dataset``, so plugins that replace it (e.g. ``GDumbPlugin``) apply; plugins
that only swap the dataloader (``ReplayPlugin``) do not.

**Metric parity.** ``accuracy_metrics(experience=True)`` equals clproto's ``A[t][j]`` and
``accuracy_metrics(stream=True)`` its seen-class accuracy when ``eval`` gets
``test_stream[: t + 1]`` after training on experience ``t``; ``forgetting_metrics`` equals
:func:`clproto.evaluation.metrics.forgetting_from_first` (``A[j][j] − A[T][j]``), not clproto's
headline ``forgetting`` (``max_l A[l][j] − A[T][j]``, Chaudhry et al. 2018). See
``tests/test_avalanche.py``. Exact score ties may break differently (Avalanche's argmax runs over
class ids, clproto's over the seen classes in arrival order).

**Avalanche pitfalls this adapter does not inherit** (checked in the avalanche-lib 0.6.0 sources):

* ``models.NCMClassifier`` stores its means in a ``(max_class + 1, D)`` tensor whose rows for
  missing classes are zero vectors (``_vectorize_means_dict``), and its ``adaptation`` adds zero
  means for the classes of each evaluated experience (``init_missing_classes``); ``forward`` then
  scores those classes by ``−‖x − 0‖``, so an unseen class can win the argmax. clproto strategies
  score unseen classes ``-inf``, which :class:`StrategyModule` passes through unchanged.
  (``update_class_means_dict`` also blends a re-seen class's mean with momentum 0.5 instead of
  weighting by counts; clproto's NMC keeps running sums.)
* ``class_incremental_benchmark(num_experiences=k)`` gives every experience ``C // k`` classes
  and silently drops the last ``C mod k`` classes of the order (the comment says the final
  experience takes the remainder; the code slices ``[start, start + C // k)``).
  :func:`to_avalanche` builds each experience from the clproto experience's own indices instead,
  and :func:`from_avalanche` reports the classes a benchmark holds.
* The same generator concatenates classes in reverse (``data_by_class[c].concat(curr_data)``), so
  sample positions inside an experience say nothing about the source dataset; clproto carries
  ``clproto_index`` instead of relying on positions.
* ``StreamAccuracy`` averages over whatever stream ``eval`` receives; evaluating the full
  ``test_stream`` mixes in the test samples of classes not yet learned.
"""

from __future__ import annotations

import hashlib
import warnings
from dataclasses import dataclass
from typing import Any, Optional, Sequence

import numpy as np
import torch
from avalanche.benchmarks.scenarios.dataset_scenario import benchmark_from_datasets
from avalanche.benchmarks.scenarios.supervised import with_classes_timeline
from avalanche.benchmarks.utils import DataAttribute, TaskAwareSupervisedClassificationDataset, TaskLabels
from avalanche.benchmarks.utils.flat_data import ConstantSequence
from avalanche.training.plugins.evaluation import default_evaluator
from avalanche.training.templates import SupervisedTemplate
from torch import nn
from torch.utils.data import TensorDataset

from clproto.data.dataset import Dataset
from clproto.errors import ConfigError
from clproto.progress import progress_bar
from clproto.scenarios.scenario import Experience, Scenario

INDEX_ATTRIBUTE = "clproto_index"  # per-sample data attribute: index into the clproto dataset split
WHERE = "from_avalanche"  # `where` of errors about a benchmark handed to clproto
SUPPORTED_BENCHMARKS = (
    "a class-incremental Avalanche benchmark with `train_stream` and `test_stream` of equal length "
    "whose experiences hold classification datasets (AvalancheDataset with `targets`), e.g. from "
    "class_incremental_benchmark, benchmark_from_datasets or clproto.avalanche.to_avalanche"
)


@dataclass(frozen=True)
class ScenarioInfo:
    """What an Avalanche benchmark cannot hold by itself, attached by :func:`to_avalanche`."""

    name: str  # the clproto scenario's name
    kind: str  # "class-incremental" or "few-shot"
    seed: int  # the seed the scenario was built with
    class_order: tuple[int, ...]  # every class in arrival order
    class_names: tuple[str, ...]  # one name per dataset class


# --------------------------------------------------------------------------- clproto -> Avalanche
class _LabelledTensors(TensorDataset):
    """Items ``(x, y)`` with ``y`` a Python int, as in Avalanche's own datasets: replay buffers (iCaRL's)
    are concatenated with the experience's data, and a batch mixing int and tensor labels cannot be collated."""

    def __getitem__(self, i):
        x, y = super().__getitem__(i)
        return x, int(y)


def _split_dataset(x: np.ndarray, y: np.ndarray):
    """A whole clproto split as one task-aware Avalanche classification dataset (task label 0)."""
    n = len(y)
    with warnings.catch_warnings():  # clproto arrays may be read-only; these tensors are never written
        warnings.simplefilter("ignore", UserWarning)
        tensors = _LabelledTensors(torch.from_numpy(x), torch.from_numpy(y))  # items (x, y)
    return TaskAwareSupervisedClassificationDataset(
        [tensors],  # the task label is appended to each item
        data_attributes=[
            DataAttribute(y.tolist(), "targets"),
            TaskLabels(ConstantSequence(0, n)),  # as Avalanche's own datasets: a list would not concat with them
            DataAttribute(list(range(n)), INDEX_ATTRIBUTE),
        ],
    )


def to_avalanche(scenario: Scenario):
    """An Avalanche ``CLScenario`` with the same samples, class order and experience boundaries.

    ``train_stream[t]`` / ``test_stream[t]`` hold exactly ``scenario[t].train_indices`` /
    ``test_indices`` (in that order, inputs unchanged), each sample tagged with its dataset index
    in the data attribute ``clproto_index``. Experiences carry ``classes_in_this_experience`` and
    the other ``with_classes_timeline`` fields, plus ``clproto_classes`` (ordered) and
    ``clproto_base_classes``; the benchmark carries ``clproto_info``.
    """
    ds = scenario.dataset
    train_all = _split_dataset(ds.train_x, ds.train_y)
    test_all = _split_dataset(ds.test_x, ds.test_y)
    benchmark = with_classes_timeline(benchmark_from_datasets(
        train=[train_all.subset(e.train_indices.tolist()) for e in scenario],
        test=[test_all.subset(e.test_indices.tolist()) for e in scenario],
    ))
    for stream in (benchmark.train_stream, benchmark.test_stream):
        for av_exp, exp in zip(stream, scenario):
            av_exp.clproto_classes = exp.classes
            av_exp.clproto_base_classes = exp.base_classes
    benchmark.clproto_info = ScenarioInfo(
        name=scenario.name, kind=scenario.kind, seed=scenario.seed,
        class_order=scenario.class_order, class_names=ds.class_names,
    )
    return benchmark


# --------------------------------------------------------------------------- Avalanche -> clproto
def _as_array(x: Any, where: str) -> np.ndarray:
    """One sample's input as an array: uint8 (H, W, C) image or flattened float32 features."""
    if isinstance(x, torch.Tensor):
        arr = x.detach().cpu().numpy()
    elif isinstance(x, np.ndarray):
        arr = x
    elif type(x).__module__.startswith("PIL."):
        arr = np.asarray(x)
    else:
        raise ConfigError(f"unsupported sample input of type {type(x).__name__}", where=WHERE, field=where,
                          expected="a torch tensor, numpy array or PIL image")
    if arr.dtype == np.uint8:
        if arr.ndim == 2:  # greyscale (H, W) -> (H, W, 1)
            arr = arr[..., None]
        if arr.ndim != 3:
            raise ConfigError(f"uint8 sample of shape {arr.shape}", where=WHERE, field=where,
                              expected="uint8 images of shape (H, W) or (H, W, C)")
        return arr
    if np.issubdtype(arr.dtype, np.floating):
        return arr.reshape(-1).astype(np.float32)  # (D,) feature vector
    raise ConfigError(f"sample input of dtype {arr.dtype}", where=WHERE, field=where,
                      expected="uint8 images or floating-point features")


def _targets(data: Any, where: str) -> np.ndarray:
    targets = getattr(data, "targets", None)
    if targets is None or not hasattr(data, "__getitem__"):
        raise ConfigError(f"unsupported dataset type {type(data).__name__} (no `targets` attribute)",
                          where=WHERE, field=where, expected=SUPPORTED_BENCHMARKS)
    y = np.asarray([int(t) for t in targets], dtype=np.int64)  # (N,)
    if len(y) != len(data):
        raise ConfigError(f"dataset has {len(data)} samples but {len(y)} targets", where=WHERE, field=where)
    if len(y) and y.min() < 0:
        raise ConfigError("negative class labels", where=WHERE, field=where, value=int(y.min()),
                          expected="class ids 0..C-1")
    return y


def _inputs(data: Any, where: str) -> np.ndarray:
    """(N, ...) inputs of an Avalanche dataset, read sample by sample with its current transforms."""
    rows = []
    shape = None
    for i in progress_bar(range(len(data)), desc=f"read {where}", unit="sample"):
        item = data[i]
        x = _as_array(item[0] if isinstance(item, (tuple, list)) else item, where)
        if shape is None:
            shape = (x.shape, x.dtype)
        elif (x.shape, x.dtype) != shape:
            raise ConfigError(f"sample {i} has shape {x.shape} ({x.dtype}), earlier ones {shape[0]} ({shape[1]})",
                              where=WHERE, field=where, expected="every sample of one shape and dtype")
        rows.append(x)
    if not rows:
        raise ConfigError("experience has no samples", where=WHERE, field=where)
    return np.stack(rows)


def _task_labels(data: Any) -> set:
    labels = getattr(data, "targets_task_labels", None)
    return set() if labels is None else {int(t) for t in labels.uniques}


def _indices(data: Any) -> Optional[np.ndarray]:
    attr = getattr(data, INDEX_ATTRIBUTE, None)
    return None if attr is None else np.asarray([int(i) for i in attr], dtype=np.int64)


def _streams(benchmark: Any) -> tuple[list, list]:
    found = sorted(getattr(benchmark, "streams", {}) or {})
    if not (hasattr(benchmark, "train_stream") and hasattr(benchmark, "test_stream")):
        raise ConfigError(f"benchmark of type {type(benchmark).__name__} has streams {found or 'none'}",
                          where=WHERE, expected=SUPPORTED_BENCHMARKS)
    train, test = list(benchmark.train_stream), list(benchmark.test_stream)
    if not train or len(train) != len(test):
        raise ConfigError(f"train_stream has {len(train)} experiences and test_stream {len(test)}", where=WHERE,
                          expected="one test experience per train experience (class-incremental evaluation)")
    for name, stream in (("train_stream", train), ("test_stream", test)):
        for t, exp in enumerate(stream):
            if not hasattr(exp, "dataset"):
                raise ConfigError(f"experience of type {type(exp).__name__} holds no dataset", where=WHERE,
                                  field=f"{name}[{t}]", expected=SUPPORTED_BENCHMARKS)
            if getattr(exp.dataset, "targets", None) is None:
                raise ConfigError(f"unsupported dataset type {type(exp.dataset).__name__} (no `targets` attribute)",
                                  where=WHERE, field=f"{name}[{t}]", expected=SUPPORTED_BENCHMARKS)
            if len(exp.dataset) == 0:
                raise ConfigError("experience has no samples", where=WHERE, field=f"{name}[{t}]",
                                  expected="training and test samples in every experience")
    return train, test


def _check_class_incremental(train: list, test: list) -> list[set]:
    """Per-experience class sets; errors for task labels, overlapping classes, test/train mismatch."""
    tasks: dict[int, list[str]] = {}
    for name, stream in (("train_stream", train), ("test_stream", test)):
        for t, exp in enumerate(stream):
            for label in _task_labels(exp.dataset):
                tasks.setdefault(label, []).append(f"{name}[{t}]")
    if len(tasks) > 1:
        raise ConfigError(
            f"the benchmark has task labels {sorted(tasks)} (e.g. task {sorted(tasks)[1]} in "
            f"{tasks[sorted(tasks)[1]][0]}); clproto scenarios are class-incremental",
            where=WHERE, expected="a single task label throughout (class_incremental_benchmark gives 0); "
                                  "task-incremental benchmarks are not supported")
    classes = []
    owner: dict[int, int] = {}
    for t, exp in enumerate(train):
        cls = {int(c) for c in exp.dataset.targets.uniques}
        for c in sorted(cls):
            if c in owner:
                raise ConfigError(
                    f"class {c} appears in train experiences {owner[c]} and {t}", where=WHERE, field=f"train_stream[{t}]",
                    expected="each class in exactly one experience (class-incremental; new-instance or "
                             "domain-incremental benchmarks are not supported)")
            owner[c] = t
        classes.append(cls)
    for t, exp in enumerate(test):
        cls = {int(c) for c in exp.dataset.targets.uniques}
        if cls != classes[t]:
            raise ConfigError(
                f"test experience {t} holds classes {sorted(cls)} but train experience {t} holds {sorted(classes[t])}",
                where=WHERE, field=f"test_stream[{t}]",
                expected="the test samples of exactly the classes of the matching train experience")
    return classes


def _ordered(exp: Any, classes: set, order: Optional[Sequence[int]]) -> tuple[int, ...]:
    listed = getattr(exp, "clproto_classes", None)
    if listed is not None and set(listed) == classes:
        return tuple(int(c) for c in listed)
    if order is not None:
        return tuple(c for c in order if c in classes)
    return tuple(sorted(classes))


def _hash(*arrays: np.ndarray) -> str:
    h = hashlib.blake2b(b"from-avalanche-v1", digest_size=20)
    for a in arrays:
        h.update(str((a.shape, a.dtype.str)).encode())
        h.update(np.ascontiguousarray(a).data)
    return h.hexdigest()


def _collect(stream: list, split: str) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
    """All samples of a stream as one split: (inputs, labels, per-experience indices into them).

    Samples are ordered by ``clproto_index`` when every experience has it (so an unsubsampled
    clproto scenario gets its own indices back), else in stream order.
    """
    xs, ys, idx = [], [], []
    for t, exp in enumerate(stream):
        data = exp.dataset.eval()
        xs.append(_inputs(data, f"{split}_stream[{t}]"))
        ys.append(_targets(data, f"{split}_stream[{t}]"))
        idx.append(_indices(data))
    x, y = np.concatenate(xs), np.concatenate(ys)
    sizes = np.cumsum([0] + [len(v) for v in ys])
    position = np.arange(len(y))
    if all(i is not None for i in idx):
        keys = np.concatenate(idx)
        if len(np.unique(keys)) == len(keys):
            position = np.argsort(np.argsort(keys, kind="stable"), kind="stable")  # rank of each sample's index
    order = np.argsort(position, kind="stable")
    per_exp = [position[sizes[t]:sizes[t + 1]] for t in range(len(stream))]
    return x[order], y[order], per_exp


def _mapped(stream: list, split: str, labels: np.ndarray) -> list[np.ndarray]:
    """Per-experience ``clproto_index`` arrays, checked against the clproto dataset's labels."""
    out = []
    for t, exp in enumerate(stream):
        field = f"{split}_stream[{t}]"
        idx = _indices(exp.dataset)
        if idx is None:
            raise ConfigError(f"samples carry no `{INDEX_ATTRIBUTE}` attribute", where=WHERE, field=field,
                              expected="a benchmark made by clproto.avalanche.to_avalanche when `dataset` is given")
        y = _targets(exp.dataset, field)
        if len(idx) and (idx.min() < 0 or idx.max() >= len(labels)) or not np.array_equal(labels[idx], y):
            raise ConfigError(f"`{INDEX_ATTRIBUTE}` does not match the given dataset's {split} labels",
                              where=WHERE, field=field, expected="the dataset the benchmark was made from")
        out.append(idx)
    return out


def from_avalanche(benchmark: Any, *, dataset: Optional[Dataset] = None, name: Optional[str] = None,
                   kind: Optional[str] = None, seed: Optional[int] = None) -> Scenario:
    """A clproto :class:`Scenario` from a class-incremental Avalanche benchmark.

    ``dataset``: the clproto dataset the benchmark was made from (by :func:`to_avalanche`); its
    samples are then found through ``clproto_index`` and nothing is copied. Without it the samples
    are read once (eval transforms) into a new dataset: uint8 ``(H, W[, C])`` inputs become images,
    floating-point inputs flattened feature vectors. ``name``/``kind``/``seed`` default to the
    benchmark's ``clproto_info``, else ``"avalanche"``, ``"class-incremental"`` and 0.
    Raises :class:`ConfigError` for task labels, classes in more than one experience, test
    experiences whose classes differ from their train experience, and unsupported datasets.
    """
    train, test = _streams(benchmark)
    classes = _check_class_incremental(train, test)
    info: Optional[ScenarioInfo] = getattr(benchmark, "clproto_info", None)
    order_hint = info.class_order if info is not None else getattr(benchmark, "classes_order", None)
    groups = [_ordered(exp, cls, order_hint) for exp, cls in zip(train, classes)]
    if dataset is not None:
        train_idx = _mapped(train, "train", dataset.train_y)
        test_idx = _mapped(test, "test", dataset.test_y)
    else:
        train_x, train_y, train_idx = _collect(train, "train")
        test_x, test_y, test_idx = _collect(test, "test")
        if train_x.shape[1:] != test_x.shape[1:] or train_x.dtype != test_x.dtype:
            raise ConfigError(f"train inputs are {train_x.shape[1:]} {train_x.dtype}, test inputs "
                              f"{test_x.shape[1:]} {test_x.dtype}", where=WHERE, expected="one input shape and dtype")
        num_classes = int(max(train_y.max(), test_y.max())) + 1
        names = info.class_names if info is not None and len(info.class_names) >= num_classes else \
            tuple(str(c) for c in range(num_classes))
        dataset = Dataset(name=name or (info.name if info else "avalanche"), train_x=train_x, train_y=train_y,
                          test_x=test_x, test_y=test_y, class_names=names,
                          identity=_hash(train_x, train_y, test_x, test_y))
    kind = kind or (info.kind if info is not None else "class-incremental")
    if kind not in ("class-incremental", "few-shot"):
        raise ConfigError("unknown scenario kind", where=WHERE, field="kind", value=kind,
                          expected='"class-incremental" or "few-shot"')
    return Scenario(
        name=name or (info.name if info is not None else "avalanche"),
        kind=kind,
        dataset=dataset,
        class_order=[c for g in groups for c in g],
        experience_classes=groups,
        train_indices=train_idx,
        test_indices=test_idx,
        seed=seed if seed is not None else (info.seed if info is not None else 0),
    )


# --------------------------------------------------------------------------- strategies in Avalanche
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


# --------------------------------------------------------------------------- reading Avalanche's metrics
@dataclass(frozen=True)
class AvalancheMetrics:
    """Avalanche's accuracy/forgetting after each training step, in clproto's matrix layout."""

    accuracy_matrix: list  # A[t][j] from Top1_Acc_Exp (None above the diagonal)
    stream_accuracy: list  # Top1_Acc_Stream after each step
    experience_forgetting: list  # ExperienceForgetting of experience j at the last step (None for the last)
    stream_forgetting: Optional[float]  # StreamForgetting at the last step


def read_metrics(evaluator: Any, *, num_experiences: int, stream: str = "test_stream") -> AvalancheMetrics:
    """Read an EvaluationPlugin's history, assuming one ``eval(test_stream[: t + 1])`` per step ``t``."""
    history = evaluator.get_all_metrics()  # name -> (x positions, values)

    def values(prefix: str, suffix: str = "") -> list:
        hits = [v for k, v in history.items() if k.startswith(prefix) and k.endswith(suffix)]
        if len(hits) != 1:
            raise KeyError(f"expected one metric named {prefix}...{suffix}, found {len(hits)}: {sorted(history)}")
        return list(hits[0][1])

    T = num_experiences
    A: list = [[None] * T for _ in range(T)]
    for j in range(T):
        for offset, v in enumerate(values(f"Top1_Acc_Exp/eval_phase/{stream}/", f"/Exp{j:03d}")):
            A[j + offset][j] = float(v)
    forgetting = [values(f"ExperienceForgetting/eval_phase/{stream}/", f"/Exp{j:03d}")[-1] if j < T - 1 else None
                  for j in range(T)]
    stream_forgetting = values(f"StreamForgetting/eval_phase/{stream}")[-1] if T > 1 else None
    return AvalancheMetrics(
        accuracy_matrix=A,
        stream_accuracy=[float(v) for v in values(f"Top1_Acc_Stream/eval_phase/{stream}")],
        experience_forgetting=forgetting,
        stream_forgetting=stream_forgetting,
    )


__all__ = [
    "INDEX_ATTRIBUTE", "AvalancheMetrics", "ClprotoTemplate", "ScenarioInfo", "StrategyModule", "from_avalanche",
    "read_metrics", "to_avalanche",
]
