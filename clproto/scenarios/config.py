"""The typed form of a scenario definition (``[scenario]`` table of a TOML file)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Union

ClassOrder = Union[str, list]  # "listed", "random", or an explicit list of class ids / names

KINDS = ("class-incremental", "few-shot")


@dataclass(frozen=True)
class ScenarioConfig:
    name: str  # short identifier used in result folders and tables, e.g. "split-cifar10"
    dataset: str  # dataset spec, see clproto.data.sources (e.g. "digits", "imagefolder:cifar10.zip")
    kind: str = "class-incremental"  # "class-incremental" or "few-shot"
    class_order: ClassOrder = "random"  # "listed" (dataset order), "random" (seeded by the run seed) or a list
    # --- class-incremental
    initial_increment: int = 0  # classes in the first experience; 0 means the same as `increment`
    increment: int = 0  # classes in each later experience (used when `increments` is empty)
    increments: list = field(default_factory=list)  # explicit classes per experience, e.g. [50, 10, 10, 10, 10, 10]
    # --- few-shot class-incremental (TOPIC/CEC/TEEN protocol)
    base_classes: int = 0  # classes in the base session, with all their training data
    ways: int = 0  # new classes per incremental session (N-way)
    shots: int = 0  # training images per new class (K-shot), sampled with the seed
    sessions: int = 0  # incremental sessions after the base one; 0 infers (classes - base) / ways
    # --- quick runs
    train_per_class: int = 0  # cap on training images per class (seeded sample); 0 = all
    test_per_class: int = 0  # cap on test images per class (seeded sample); 0 = all
    description: str = ""  # free text shown by `clproto list`
