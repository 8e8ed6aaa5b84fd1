"""How a scenario definition cuts a dataset's classes, before any sample is chosen: the class order, the
number of classes per experience (class-incremental increments, few-shot base + sessions x ways), and the
seeded per-class samples; every check names the field at fault (:class:`~clproto.errors.ConfigError`).
:func:`~clproto.scenarios.scenario.build_scenario` puts them together.

Each random choice draws from its own stream derived from the run seed (``np.random.default_rng([seed,
stream])``), so e.g. changing ``test_per_class`` does not change the class order.
"""

from __future__ import annotations

import numpy as np

from clproto.data.dataset import Dataset
from clproto.errors import ConfigError
from clproto.scenarios.config import ScenarioConfig

# independent random streams derived from the run seed
ORDER_STREAM, TRAIN_CAP_STREAM, TEST_CAP_STREAM, SHOTS_STREAM = 0, 1, 2, 3


def ordered_classes(config: ScenarioConfig, dataset: Dataset, seed: int, where: str) -> list[int]:
    """The classes in arrival order: ``class_order`` "listed" (the dataset's), "random" (drawn with ``seed``)
    or a list of every class once, by id or name."""
    n = dataset.num_classes
    spec = config.class_order
    if spec == "listed":
        return list(range(n))
    if spec == "random":
        return [int(c) for c in np.random.default_rng([seed, ORDER_STREAM]).permutation(n)]
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


def _non_negative(value: int, where: str, field: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigError("must be a non-negative integer", where=where, field=field, value=value)


def increment_sizes(config: ScenarioConfig, n: int, where: str) -> list[int]:
    """Classes per experience of a class-incremental scenario with ``n`` classes: ``increments`` as listed, or
    ``initial_increment`` then ``increment`` each, which must add up to ``n``."""
    if config.increments:
        sizes = list(config.increments)
        for s in sizes:
            if isinstance(s, bool) or not isinstance(s, int) or s <= 0:
                raise ConfigError("increments must be positive integers", where=where, field="increments", value=sizes)
        if sum(sizes) != n:
            raise ConfigError(f"increments add up to {sum(sizes)} classes but the dataset has {n}", where=where,
                              field="increments", value=sizes, expected=f"a list summing to {n}")
        return sizes
    _non_negative(config.increment, where, "increment")
    _non_negative(config.initial_increment, where, "initial_increment")
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


def few_shot_sizes(config: ScenarioConfig, n: int, where: str) -> list[int]:
    """Classes per session of a few-shot scenario with ``n`` classes: ``base_classes``, then ``ways`` per
    session (``sessions`` of them, or as many as fit); classes beyond are left unused."""
    for f in ("base_classes", "ways", "shots", "sessions"):
        _non_negative(getattr(config, f), where, f)
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


def per_class_indices(labels: np.ndarray, cap: int, rng: np.random.Generator) -> dict[int, np.ndarray]:
    """Indices of each class, optionally a seeded sample of at most ``cap`` of them (sorted)."""
    out = {}
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        if cap and len(idx) > cap:
            idx = np.sort(rng.choice(idx, size=cap, replace=False))
        out[int(c)] = idx
    return out


def class_label(dataset: Dataset, c: int) -> str:
    """A class as error messages show it: ``3 ('cat')``."""
    return f"{c} ({dataset.class_names[c]!r})"


def shots_hint(config: ScenarioConfig, kept: int, total: int) -> str:
    """What would work when a class has fewer than ``shots`` training images: a larger
    ``train_per_class`` only when the cap, not the dataset, is what keeps too few."""
    if kept == total:
        return f"at most {total} (the class has no more training images)"
    if total >= config.shots:
        return f"at most {kept}, or a train_per_class of at least {config.shots}"
    return f"at most {kept}, or at most {total} with a train_per_class of at least {total}"
