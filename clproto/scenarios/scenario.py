"""Class-incremental and few-shot class-incremental scenarios.

A :class:`Scenario` behaves like a read-only sequence of :class:`Experience` (``len``,
indexing, iteration), as in Continuum. Building one is deterministic in (definition,
dataset, seed): the class order, per-class caps and few-shot samples each draw from their own
seeded stream, so e.g. changing ``test_per_class`` does not change the class order.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Sequence

import numpy as np
import torch

from clproto.data.dataset import Dataset
from clproto.errors import ConfigError
from clproto.scenarios.config import KINDS, ScenarioConfig

# independent random streams derived from the run seed
_ORDER, _TRAIN_CAP, _TEST_CAP, _SHOTS = 0, 1, 2, 3


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
    order = _class_order(config, dataset, seed, where)
    if config.kind == "class-incremental":
        sizes = _increments(config, len(order), where)
    else:
        sizes = _few_shot_sizes(config, len(order), where)
    groups, start = [], 0
    for s in sizes:  # few-shot: the classes beyond base + sessions x ways (if any) stay unused
        groups.append(order[start:start + s])
        start += s

    train_by_class = _per_class(dataset.train_y, config.train_per_class, np.random.default_rng([seed, _TRAIN_CAP]))
    test_by_class = _per_class(dataset.test_y, config.test_per_class, np.random.default_rng([seed, _TEST_CAP]))
    shot_rng = np.random.default_rng([seed, _SHOTS])
    train_indices, test_indices = [], []
    for i, group in enumerate(groups):
        tr_parts = []
        for c in group:
            pool = train_by_class.get(c, np.empty(0, np.int64))
            if config.kind == "few-shot" and i > 0:
                if len(pool) < config.shots:
                    raise ConfigError(
                        f"class {_name(dataset, c)} has only {len(pool)} training images, fewer than the "
                        f"{config.shots} shots requested",
                        where=where, field="shots", value=config.shots,
                        expected=_shots_hint(config, len(pool), int(np.count_nonzero(dataset.train_y == c))),
                    )
                pool = np.sort(shot_rng.choice(pool, size=config.shots, replace=False))
            elif len(pool) == 0:
                raise ConfigError(f"class {_name(dataset, c)} has no training images", where=where, field="dataset",
                                  value=config.dataset)
            tr_parts.append(pool)
        for c in group:
            if len(test_by_class.get(c, ())) == 0:
                raise ConfigError(
                    f"class {_name(dataset, c)} of experience {i} has an empty test set",
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
    _few_shot_sizes(config, dataset.num_classes, where)  # base, ways, shots and sessions fit the dataset
    groups, train_indices = sessions_from_lists(config, dataset, where=where)
    test_by_class = _per_class(dataset.test_y, config.test_per_class, np.random.default_rng([seed, _TEST_CAP]))
    test_indices = []
    for i, group in enumerate(groups):
        empty = [c for c in group if len(test_by_class.get(c, ())) == 0]
        if empty:
            raise ConfigError(f"class {_name(dataset, empty[0])} of session {i + 1} has an empty test set", where=where,
                              field="dataset", value=config.dataset, expected="test images for every class")
        test_indices.append(np.sort(np.concatenate([test_by_class[c] for c in group])))
    return Scenario(name=config.name, kind=config.kind, dataset=dataset, class_order=[c for g in groups for c in g],
                    experience_classes=groups, train_indices=train_indices, test_indices=test_indices, seed=seed)


def _name(dataset: Dataset, c: int) -> str:
    return f"{c} ({dataset.class_names[c]!r})"


def _shots_hint(config: ScenarioConfig, kept: int, total: int) -> str:
    """What would work when a class has fewer than ``shots`` training images: a larger
    ``train_per_class`` only when the cap, not the dataset, is what keeps too few."""
    if kept == total:
        return f"at most {total} (the class has no more training images)"
    if total >= config.shots:
        return f"at most {kept}, or a train_per_class of at least {config.shots}"
    return f"at most {kept}, or at most {total} with a train_per_class of at least {total}"


def _class_order(config: ScenarioConfig, dataset: Dataset, seed: int, where: str) -> list[int]:
    n = dataset.num_classes
    spec = config.class_order
    if spec == "listed":
        return list(range(n))
    if spec == "random":
        return [int(c) for c in np.random.default_rng([seed, _ORDER]).permutation(n)]
    if not isinstance(spec, (list, tuple)):
        raise ConfigError("invalid class order", where=where, field="class_order", value=spec,
                          expected='"listed", "random" or a list of class ids or names')
    by_name = {name: i for i, name in enumerate(dataset.class_names)}
    order: list[int] = []
    for item in spec:
        if isinstance(item, bool) or not isinstance(item, (int, str)):
            raise ConfigError("class order entries must be class ids or names", where=where, field="class_order", value=item)
        if isinstance(item, int):
            if not 0 <= item < n:
                raise ConfigError(f"class {item} does not exist in dataset {dataset.name!r}", where=where,
                                  field="class_order", value=item, expected=f"an id in 0..{n - 1}")
            order.append(item)
        elif item in by_name:
            order.append(by_name[item])
        else:
            raise ConfigError(f"unknown class name in dataset {dataset.name!r}", where=where, field="class_order",
                              value=item, expected="one of " + ", ".join(dataset.class_names[:10]) + (" ..." if n > 10 else ""))
    dupes = sorted({c for c in order if order.count(c) > 1})
    if dupes:
        raise ConfigError("class order lists classes more than once", where=where, field="class_order",
                          value=[dataset.class_names[c] for c in dupes])
    missing = sorted(set(range(n)) - set(order))
    if missing:
        raise ConfigError(f"class order leaves out {len(missing)} of the dataset's {n} classes", where=where,
                          field="class_order", value=[dataset.class_names[c] for c in missing[:10]],
                          expected="every class exactly once")
    return order


def _positive(value: int, where: str, field: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigError("must be a non-negative integer", where=where, field=field, value=value)


def _increments(config: ScenarioConfig, n: int, where: str) -> list[int]:
    if config.increments:
        sizes = list(config.increments)
        for s in sizes:
            if isinstance(s, bool) or not isinstance(s, int) or s <= 0:
                raise ConfigError("increments must be positive integers", where=where, field="increments", value=sizes)
        if sum(sizes) != n:
            raise ConfigError(f"increments add up to {sum(sizes)} classes but the dataset has {n}", where=where,
                              field="increments", value=sizes, expected=f"a list summing to {n}")
        return sizes
    _positive(config.increment, where, "increment")
    _positive(config.initial_increment, where, "initial_increment")
    inc = config.increment
    first = config.initial_increment or inc
    if inc <= 0:
        raise ConfigError("set `increment` (classes per experience) or `increments`", where=where, field="increment",
                          value=config.increment, expected="a positive integer")
    if first > n or (n - first) % inc:
        raise ConfigError(
            f"an initial increment of {first} then steps of {inc} do not add up to the {n} classes",
            where=where, field="increment", value=inc,
            expected=f"(classes - initial_increment) divisible by increment, or an explicit `increments` list",
        )
    return [first] + [inc] * ((n - first) // inc)


def _few_shot_sizes(config: ScenarioConfig, n: int, where: str) -> list[int]:
    for f in ("base_classes", "ways", "shots", "sessions"):
        _positive(getattr(config, f), where, f)
    if config.base_classes <= 0:
        raise ConfigError("a few-shot scenario needs a base session with at least one class", where=where,
                          field="base_classes", value=config.base_classes, expected="a positive integer")
    if config.ways <= 0 or config.shots <= 0:
        field = "ways" if config.ways <= 0 else "shots"
        raise ConfigError("must be a positive integer", where=where, field=field, value=getattr(config, field))
    rest = n - config.base_classes
    sessions = config.sessions or (rest // config.ways if rest > 0 else 0)
    if sessions <= 0 or config.base_classes + sessions * config.ways > n:
        raise ConfigError(
            f"{config.base_classes} base classes + {max(sessions, 1)} session(s) x {config.ways} ways need more than the "
            f"{n} classes of the dataset",
            where=where, field="sessions", value=config.sessions,
            expected=f"base_classes + sessions * ways <= {n} (the classes beyond are left unused)",
        )
    return [config.base_classes] + [config.ways] * sessions


def _per_class(labels: np.ndarray, cap: int, rng: np.random.Generator) -> dict[int, np.ndarray]:
    """Indices of each class, optionally a seeded sample of at most ``cap`` of them (sorted)."""
    out = {}
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        if cap and len(idx) > cap:
            idx = np.sort(rng.choice(idx, size=cap, replace=False))
        out[int(c)] = idx
    return out
