"""Avalanche -> clproto: :func:`from_avalanche`, a class-incremental Avalanche benchmark as a clproto scenario."""

from __future__ import annotations

from typing import Any, Optional

import numpy as np

from clproto.avalanche.samples import (INDEX_ATTRIBUTE, SUPPORTED_BENCHMARKS, WHERE, _hash, _indices, _inputs,
                                       _ordered, _targets)
from clproto.avalanche.to_benchmark import ScenarioInfo
from clproto.data.dataset import Dataset
from clproto.errors import ConfigError
from clproto.scenarios.scenario import Scenario


def _task_labels(data: Any) -> set:
    labels = getattr(data, "targets_task_labels", None)
    return set() if labels is None else {int(t) for t in labels.uniques}


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
