"""clproto -> Avalanche: :func:`to_avalanche`, a clproto scenario as an Avalanche benchmark."""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import torch
from avalanche.benchmarks.scenarios.dataset_scenario import benchmark_from_datasets
from avalanche.benchmarks.scenarios.supervised import with_classes_timeline
from avalanche.benchmarks.utils import DataAttribute, TaskAwareSupervisedClassificationDataset, TaskLabels
from avalanche.benchmarks.utils.flat_data import ConstantSequence
from torch.utils.data import TensorDataset

from clproto.avalanche.samples import INDEX_ATTRIBUTE
from clproto.scenarios.scenario import Scenario


@dataclass(frozen=True)
class ScenarioInfo:
    """What an Avalanche benchmark cannot hold by itself, attached by :func:`to_avalanche`."""

    name: str  # the clproto scenario's name
    kind: str  # "class-incremental" or "few-shot"
    seed: int  # the seed the scenario was built with
    class_order: tuple[int, ...]  # every class in arrival order
    class_names: tuple[str, ...]  # one name per dataset class


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
