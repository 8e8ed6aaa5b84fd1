"""The run context: how a run executes, as opposed to what it computes.

    context = RunContext(seed=0, progress=False)
    loop = TrainingLoop(config=config, seed=0, context=context)

A :class:`RunContext` is built by the :class:`~clproto.runner.Runner` for every run and passed
explicitly — to strategies whose constructor takes a ``context`` keyword, to the
:class:`~clproto.training.loop.TrainingLoop` they build and to base-session training — instead of
travelling through environment variables or the global torch RNG. It never changes a number: the
seed is the run's seed (each component still derives its own generators from it), and progress
bars, threads and listeners only change what is shown or how fast. ``device`` and ``precision`` are
the places where accelerators will plug in; until then only ``"cpu"`` and ``"fp32"`` are accepted,
so that no run claims a device it did not use.

A leaf module: it imports nothing from clproto but the error type.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass
from typing import Any, Callable, Optional

from clproto.errors import ConfigError

DEVICES = ("cpu",)  # devices the run path can place tensors on (accelerators: not yet)
PRECISIONS = ("fp32",)  # compute precisions the run path supports (mixed precision: not yet)


@dataclass(frozen=True)
class RunContext:
    """Execution settings of one run, passed explicitly (keyword-only construction)."""

    seed: int = 0  # the run seed (components derive their own generators from it)
    progress: bool = True  # show progress bars (the CLI's --no-progress / CLPROTO_PROGRESS=0 turn them off)
    device: str = "cpu"  # where tensors live and compute runs
    precision: str = "fp32"  # compute precision of training and extraction
    threads: Optional[int] = None  # torch intra-op threads the caller set (--threads); None = torch's default
    listeners: tuple[Callable[[Any], None], ...] = ()  # told every TrainingEvent of the run's training loops

    def __post_init__(self) -> None:
        if isinstance(self.seed, bool) or not isinstance(self.seed, numbers.Integral):
            raise ConfigError("the seed must be an integer", field="seed", value=self.seed)
        if self.device not in DEVICES:
            raise ConfigError("unsupported device", field="device", value=self.device,
                              expected=" or ".join(DEVICES) + " (accelerators are not supported yet)")
        if self.precision not in PRECISIONS:
            raise ConfigError("unsupported precision", field="precision", value=self.precision,
                              expected=" or ".join(PRECISIONS) + " (mixed precision is not supported yet)")
        if self.threads is not None and (isinstance(self.threads, bool) or not isinstance(self.threads, numbers.Integral)
                                         or self.threads < 1):
            raise ConfigError("must be at least 1", field="threads", value=self.threads)
        if not isinstance(self.listeners, tuple) or not all(callable(f) for f in self.listeners):
            raise ConfigError("listeners must be a tuple of callables", field="listeners", value=self.listeners)
