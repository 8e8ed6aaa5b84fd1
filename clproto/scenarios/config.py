"""The typed form of a scenario definition (``[scenario]`` table of a TOML file)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Union

from clproto.errors import ConfigError

ClassOrder = Union[str, list]  # "listed", "random", or an explicit list of class ids / names

KINDS = ("class-incremental", "few-shot")
COUNTS = ("initial_increment", "increment", "base_classes", "ways", "shots", "sessions", "train_per_class",
          "test_per_class")  # integer fields that are counts: 0 or more


@dataclass(frozen=True)
class ScenarioConfig:
    """A scenario definition: the ``[scenario]`` table of a TOML file, typed and checked.

    It says how to cut a dataset into experiences; :func:`~clproto.scenarios.build_scenario` does the
    cutting for a seed. ``name`` and ``dataset`` are required; ``kind`` picks the fields that apply:
    ``"class-incremental"`` uses ``initial_increment`` / ``increment`` / ``increments``,
    ``"few-shot"`` uses ``base_classes`` / ``ways`` / ``shots`` / ``sessions`` (or ``index_lists``,
    a published protocol). ``train_per_class`` / ``test_per_class`` cap the samples for quick runs.
    Each field's comment below says its meaning and default; counts must be 0 or more
    (:class:`~clproto.errors.ConfigError` otherwise). Read one from a file with
    :func:`clproto.load_scenario`.

    Example — split-digits (5 experiences of 2 classes, class order drawn with the seed)::

        from clproto import ScenarioConfig

        config = ScenarioConfig(name="split-digits", dataset="digits", increment=2)
    """

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
    sessions: int = 0  # incremental sessions after the base one; 0 infers (classes - base) // ways
    # published session lists (clproto.scenarios.index_lists): "" = classes and shots drawn with the seed;
    # a shipped protocol such as "fscil-topic/cifar100", or a folder of session_1.txt .. session_<N>.txt
    index_lists: str = ""
    # --- quick runs
    train_per_class: int = 0  # cap on training images per class (seeded sample); 0 = all
    test_per_class: int = 0  # cap on test images per class (seeded sample); 0 = all
    description: str = ""  # free text shown by `clproto list`

    def __post_init__(self) -> None:
        # counts are checked here, not when the scenario is built, so that every path that reads a
        # definition (run, sweep, --set) refuses a negative one before any run starts
        for name in COUNTS:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ConfigError("must be a non-negative integer", field=name, value=value,
                                  expected="0 (all images) or a positive cap" if name.endswith("_per_class") else "0 or more")
