"""Class-incremental and few-shot class-incremental scenarios.

A :class:`Scenario` behaves like a read-only sequence of :class:`Experience` (``len``,
indexing, iteration), as in Continuum. Building one is deterministic in (definition,
dataset, seed): the class order, per-class caps and few-shot samples each draw from their own
seeded stream, so e.g. changing ``test_per_class`` does not change the class order
(:mod:`clproto.scenarios.cuts`: the order, the classes per experience and the per-class samples).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Sequence

import numpy as np
import torch

from clproto.data.dataset import Dataset
from clproto.data.rows import ImageRows
from clproto.errors import ConfigError
from clproto.scenarios.config import KINDS, ScenarioConfig
from clproto.scenarios.cuts import (SHOTS_STREAM, TEST_CAP_STREAM, TRAIN_CAP_STREAM, class_label, few_shot_sizes,
                                    increment_sizes, ordered_classes, per_class_indices, shots_hint)


@dataclass(frozen=True, eq=False)
class Experience:
    """One step of the stream: the classes it introduces and its train/test samples.

    What a strategy's ``fit_experience`` receives (built by :class:`Scenario`, not by hand): indices
    into ``dataset``, read as tensors by ``train_x`` / ``train_y`` (``(n, ...)`` inputs, ``(n,)``
    labels), ``test_x`` / ``test_y`` or :meth:`train_chunks`; ``classes`` it introduces,
    ``seen_classes`` so far in arrival order, ``num_classes`` the width of every score vector.
    Example: ``for exp in scenario: print(exp.index, exp.classes, tuple(exp.train_x.shape))``.
    """

    index: int  # position in the stream, 0-based
    task_id: int  # task label for task-incremental evaluation (= index)
    classes: tuple[int, ...]  # dataset labels introduced by this experience
    seen_classes: tuple[int, ...]  # every label introduced so far, in arrival order
    train_indices: np.ndarray  # (n_train,) indices into dataset.train_x
    test_indices: np.ndarray  # (n_test,) indices into dataset.test_x: all test samples of `classes`
    dataset: Dataset
    num_classes: int  # width of every score vector: classes in the whole dataset
    base_classes: tuple[int, ...] = ()  # few-shot: the base session's classes (empty otherwise)

    @property
    def train_x(self) -> torch.Tensor:
        return torch.from_numpy(self.dataset.train_x[self.train_indices])

    @property
    def train_y(self) -> torch.Tensor:
        return torch.from_numpy(self.dataset.train_y[self.train_indices])

    @property
    def train_rows(self) -> ImageRows:
        """The training images not read yet (rows of the dataset's memory-mapped store): what trained strategies
        hand the training loop, which gathers each shuffled batch as it needs it (``train_x`` reads them all)."""
        x = self.dataset.train_x
        if x.ndim != 4 or x.dtype != np.uint8:
            raise ConfigError("a strategy that trains on images needs uint8 images (N, H, W, C)", field="dataset",
                              value=f"{self.dataset.name}: {x.dtype} of shape {tuple(x.shape)}")
        return ImageRows(x, self.train_indices)

    def train_chunks(self, size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """The training samples in scenario order, ``size`` at a time: ``(n, ...)`` inputs and ``(n,)`` labels
        read straight from the (memory-mapped) dataset, so the working copy stays small however large the experience."""
        idx = self.train_indices
        for start in range(0, len(idx), size):
            part = idx[start:start + size]  # (n,)
            yield torch.from_numpy(self.dataset.train_x[part]), torch.from_numpy(self.dataset.train_y[part])

    @property
    def test_x(self) -> torch.Tensor:
        return torch.from_numpy(self.dataset.test_x[self.test_indices])

    @property
    def test_y(self) -> torch.Tensor:
        return torch.from_numpy(self.dataset.test_y[self.test_indices])

    def __repr__(self) -> str:
        return (
            f"Experience(index={self.index}, classes={list(self.classes)}, "
            f"n_train={len(self.train_indices)}, n_test={len(self.test_indices)})"
        )


class Scenario(Sequence[Experience]):
    """An ordered, immutable sequence of experiences cut from one dataset.

    A read-only sequence of :class:`Experience` (``len``, indexing, iteration), usually built by
    :func:`build_scenario`. The keyword-only constructor takes a cut directly: ``name``, ``kind``
    (``"class-incremental"`` or ``"few-shot"``), ``dataset``, ``class_order`` (arrival order),
    ``experience_classes``, ``train_indices`` / ``test_indices`` (per experience, into the dataset's
    splits) and ``seed``. :meth:`with_dataset` gives the same experiences over other inputs (features).

    Example::

        import clproto

        ds = clproto.load_dataset("digits")
        pick = lambda y, classes: [i for i, c in enumerate(y) if c in classes]
        scenario = clproto.Scenario(name="two-steps", kind="class-incremental", dataset=ds, class_order=range(5),
                                    experience_classes=[[0, 1, 2], [3, 4]], seed=0,
                                    train_indices=[pick(ds.train_y, {0, 1, 2}), pick(ds.train_y, {3, 4})],
                                    test_indices=[pick(ds.test_y, {0, 1, 2}), pick(ds.test_y, {3, 4})])
    """

    def __init__(
        self,
        *,
        name: str,
        kind: str,
        dataset: Dataset,
        class_order: Sequence[int],
        experience_classes: Sequence[Sequence[int]],
        train_indices: Sequence[np.ndarray],
        test_indices: Sequence[np.ndarray],
        seed: int,
    ) -> None:
        self.name = name
        self.kind = kind
        self.dataset = dataset
        self.seed = seed
        self.class_order = tuple(int(c) for c in class_order)
        base = tuple(int(c) for c in experience_classes[0]) if kind == "few-shot" else ()
        seen: list[int] = []
        exps = []
        for i, (cls, tr, te) in enumerate(zip(experience_classes, train_indices, test_indices)):
            seen.extend(int(c) for c in cls)
            exps.append(
                Experience(
                    index=i,
                    task_id=i,
                    classes=tuple(int(c) for c in cls),
                    seen_classes=tuple(seen),
                    train_indices=np.asarray(tr, dtype=np.int64),
                    test_indices=np.asarray(te, dtype=np.int64),
                    dataset=dataset,
                    num_classes=dataset.num_classes,
                    base_classes=base,
                )
            )
        self._experiences = tuple(exps)

    def __len__(self) -> int:
        return len(self._experiences)

    def __getitem__(self, i):  # type: ignore[override]
        if isinstance(i, slice):
            return list(self._experiences[i])
        return self._experiences[i]

    def __iter__(self) -> Iterator[Experience]:
        return iter(self._experiences)

    @property
    def num_classes(self) -> int:
        return self.dataset.num_classes

    @property
    def is_few_shot(self) -> bool:
        return self.kind == "few-shot"

    def with_dataset(self, dataset: Dataset) -> "Scenario":
        """The same experiences (indices, classes, order) over other inputs, e.g. features."""
        if len(dataset.train_y) != len(self.dataset.train_y) or not np.array_equal(dataset.train_y, self.dataset.train_y):
            raise ValueError("with_dataset: the new dataset must have the same samples and labels")
        return Scenario(
            name=self.name,
            kind=self.kind,
            dataset=dataset,
            class_order=self.class_order,
            experience_classes=[e.classes for e in self],
            train_indices=[e.train_indices for e in self],
            test_indices=[e.test_indices for e in self],
            seed=self.seed,
        )

    def __repr__(self) -> str:
        sizes = [len(e.classes) for e in self]
        return f"Scenario({self.name!r}, kind={self.kind!r}, experiences={len(self)}, classes per experience={sizes})"


# --------------------------------------------------------------------------- building
def build_scenario(config: ScenarioConfig, dataset: Dataset, *, seed: int, where: str = "scenario") -> Scenario:
    """Cut ``dataset`` into experiences as ``config`` says, with ``seed`` for every random choice.

    ``config``: a :class:`~clproto.scenarios.ScenarioConfig`; ``dataset``: a :class:`~clproto.data.Dataset`
    (:func:`clproto.load_dataset`); ``seed``: draws the class order, per-class caps and few-shot samples,
    each from its own stream (same arguments, same scenario); ``where``: the name errors report. A cut
    the dataset cannot give is a :class:`~clproto.errors.ConfigError`. Example:
    ``build_scenario(ScenarioConfig(name="split-digits", dataset="digits", increment=2), load_dataset("digits"), seed=0)``.
    """
    if config.kind not in KINDS:
        raise ConfigError("unknown scenario kind", where=where, field="kind", value=config.kind,
                          expected=" or ".join(repr(k) for k in KINDS))
    if config.index_lists:
        return _from_index_lists(config, dataset, seed=seed, where=where)
    order = ordered_classes(config, dataset, seed, where)
    if config.kind == "class-incremental":
        sizes = increment_sizes(config, len(order), where)
    else:
        sizes = few_shot_sizes(config, len(order), where)
    groups, start = [], 0
    for s in sizes:  # few-shot: the classes beyond base + sessions x ways (if any) stay unused
        groups.append(order[start:start + s])
        start += s

    train_by_class = per_class_indices(dataset.train_y, config.train_per_class,
                                       np.random.default_rng([seed, TRAIN_CAP_STREAM]))
    test_by_class = per_class_indices(dataset.test_y, config.test_per_class,
                                      np.random.default_rng([seed, TEST_CAP_STREAM]))
    shot_rng = np.random.default_rng([seed, SHOTS_STREAM])
    train_indices, test_indices = [], []
    for i, group in enumerate(groups):
        tr_parts = []
        for c in group:
            pool = train_by_class.get(c, np.empty(0, np.int64))
            if config.kind == "few-shot" and i > 0:
                if len(pool) < config.shots:
                    raise ConfigError(
                        f"class {class_label(dataset, c)} has only {len(pool)} training images, fewer than the "
                        f"{config.shots} shots requested",
                        where=where, field="shots", value=config.shots,
                        expected=shots_hint(config, len(pool), int(np.count_nonzero(dataset.train_y == c))),
                    )
                pool = np.sort(shot_rng.choice(pool, size=config.shots, replace=False))
            elif len(pool) == 0:
                raise ConfigError(f"class {class_label(dataset, c)} has no training images", where=where,
                                  field="dataset", value=config.dataset)
            tr_parts.append(pool)
        for c in group:
            if len(test_by_class.get(c, ())) == 0:
                raise ConfigError(
                    f"class {class_label(dataset, c)} of experience {i} has an empty test set",
                    where=where, field="dataset", value=config.dataset, expected="test images for every class",
                )
        te = np.sort(np.concatenate([test_by_class[c] for c in group]))
        train_indices.append(np.sort(np.concatenate(tr_parts)))
        test_indices.append(te)
    return Scenario(
        name=config.name,
        kind=config.kind,
        dataset=dataset,
        class_order=order,
        experience_classes=groups,
        train_indices=train_indices,
        test_indices=test_indices,
        seed=seed,
    )


def _from_index_lists(config: ScenarioConfig, dataset: Dataset, *, seed: int, where: str) -> Scenario:
    """A few-shot scenario whose sessions the published lists fix (:mod:`clproto.scenarios.index_lists`)."""
    from clproto.scenarios.index_lists import sessions_from_lists

    if config.kind != "few-shot":
        raise ConfigError("index lists fix few-shot sessions", where=where, field="kind", value=config.kind,
                          expected='"few-shot" with index_lists')
    for f, wrong in (("train_per_class", config.train_per_class), ("class_order", config.class_order not in ("random", "listed"))):
        if wrong:  # the lists fix every training image and the class of every session
            raise ConfigError("cannot be set with index_lists (the lists fix the training images and classes)",
                              where=where, field=f, value=getattr(config, f), expected="leave it out")
    few_shot_sizes(config, dataset.num_classes, where)  # base, ways, shots and sessions fit the dataset
    groups, train_indices = sessions_from_lists(config, dataset, where=where)
    test_by_class = per_class_indices(dataset.test_y, config.test_per_class,
                                      np.random.default_rng([seed, TEST_CAP_STREAM]))
    test_indices = []
    for i, group in enumerate(groups):
        empty = [c for c in group if len(test_by_class.get(c, ())) == 0]
        if empty:
            raise ConfigError(f"class {class_label(dataset, empty[0])} of session {i + 1} has an empty test set",
                              where=where, field="dataset", value=config.dataset,
                              expected="test images for every class")
        test_indices.append(np.sort(np.concatenate([test_by_class[c] for c in group])))
    return Scenario(name=config.name, kind=config.kind, dataset=dataset, class_order=[c for g in groups for c in g],
                    experience_classes=groups, train_indices=train_indices, test_indices=test_indices, seed=seed)
