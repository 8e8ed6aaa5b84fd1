"""What the sweep driver and its workers pass each other: typed, frozen, picklable.

* :class:`RunSpec` — one run: a scenario definition, a resolved strategy, a seed and the hash of
  the resolved configuration (the run's identity). The grid makes them, the planner sorts them,
  the workers run them, the driver records them: it is the one unit passed around.
* :class:`WorkerSettings` — what every worker needs besides its task (the same for a whole sweep).
* :class:`RunTask` / :class:`PrepareTask` — one unit of work for a worker; :class:`Outcome` —
  what came of it (a crash in a worker is data too, never an exception in the driver).

A strategy's ``params`` may be an instance of a plugin's ``Config`` class, which pickles by
reference (module and class name): a worker in another process loads the plugins before it
unpickles a task (the local pool in its initializer, Ray from a pickled task, see
:mod:`clproto.sweep.backends`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Optional, Union

from clproto.config import ResolvedStrategy, to_plain
from clproto.evaluation.results import RunResult
from clproto.loggers import LoggerSettings
from clproto.scenarios.config import ScenarioConfig


@dataclass(frozen=True)
class RunSpec:
    """One run: ``<out>/<scenario.name>/<strategy.name>/seed<seed>/``."""

    scenario: ScenarioConfig  # the scenario definition, overrides applied
    strategy: ResolvedStrategy  # the strategy, its params checked against the registry (strategy.where: its file)
    seed: int  # the run seed
    config_hash: str  # run_hash(config): the run's identity
    scenario_where: str = "scenario"  # the scenario definition file, for messages
    compute: Optional[dict] = None  # clproto.devices.compute_identity: None for cpu/fp32, else device type, precision

    @cached_property
    def config(self) -> dict:
        """The resolved configuration as plain JSON-able data (what config.json records)."""
        from clproto.runner import resolved_config

        return to_plain(resolved_config(self.scenario, self.strategy, self.seed, compute=self.compute))

    @property
    def where(self) -> str:
        """Both definition files, for messages."""
        return f"{self.scenario_where} + {self.strategy.where}"

    @property
    def label(self) -> str:
        return f"{self.scenario.name} / {self.strategy.name} / seed {self.seed}"

    def folder(self, out: str | os.PathLike) -> Path:
        from clproto.runner import run_dir

        return run_dir(out, self.scenario.name, self.strategy.name, self.seed)


@dataclass(frozen=True)
class WorkerSettings:
    """What every worker of a sweep needs; paths are absolute (remote workers do not share our working folder)."""

    plugins: tuple = ()  # --plugin: module names or absolute paths of .py files, loaded by every worker
    threads: int = 1  # torch threads of every run
    data_root: Optional[str] = None  # --data-root (None: $CLPROTO_DATA or the user cache)
    models_root: Optional[str] = None  # --models-root (None: $CLPROTO_MODELS or the user cache)
    cache_dir: Optional[str] = None  # --cache-dir (None: $CLPROTO_CACHE or the user cache)
    keep_model: Optional[str] = None  # --keep-model: None, "last" or "every"
    loggers: LoggerSettings = LoggerSettings()  # --logger: mirrors of log.csv
    device: str = "cpu"  # --device, resolved by the driver (never "auto": the plan's identities name the device type)
    precision: str = "fp32"  # --precision
    deterministic: bool = False  # --deterministic


def worker_settings(*, plugins: list[str] = (), threads: int = 1, data_root: Optional[str] = None,
                    models_root: Optional[str] = None, cache_dir: Optional[str] = None,
                    keep_model: Optional[str] = None, loggers: Optional[LoggerSettings] = None,
                    device: str = "cpu", precision: str = "fp32", deterministic: bool = False) -> WorkerSettings:
    """:class:`WorkerSettings` from command-line values: plugin files and folders made absolute."""
    from clproto.data import paths

    return WorkerSettings(plugins=tuple(str(Path(p).resolve()) if p.endswith(".py") else p for p in plugins),
                          threads=threads, keep_model=keep_model, loggers=loggers or LoggerSettings(),
                          device=device, precision=precision, deterministic=deterministic,
                          data_root=str(paths.data_root(data_root).resolve()),
                          models_root=str(paths.models_root(models_root).resolve()),
                          cache_dir=str(paths.cache_root(cache_dir).resolve()))


@dataclass(frozen=True)
class RunTask:
    """Run one spec. The driver records the outcome (results.json, log.csv or error.txt)."""

    spec: RunSpec
    out: Optional[str] = None  # the absolute output folder when the worker shares it (config.json, checkpoints,
    #                            kept models, loggers written as the run goes); None: a remote worker, no folder
    progress: bool = False  # progress bars in the worker (a worker in the driver's own process only)


@dataclass(frozen=True)
class PreparePart:
    """One scenario cut from a prepare task's dataset, with the seeds and strategies of its runs."""

    scenario: ScenarioConfig
    seeds: tuple  # the seeds of its runs, in order of appearance
    strategies: tuple  # the ResolvedStrategy of its runs, each once
    where: str  # the scenario definition file


@dataclass(frozen=True)
class PrepareTask:
    """Before any run: build every scenario of one dataset for each seed, check its strategies, compute their features."""

    dataset: str  # the scenarios' dataset spec
    parts: tuple  # PreparePart, one per distinct scenario
    progress: bool = False  # progress bars in the worker


Task = Union[RunTask, PrepareTask]


@dataclass(frozen=True)
class Outcome:
    """What came of a task. ``status``: "done", "failed" (the run raised) or "config-error" (a definition error)."""

    status: str
    seconds: float  # wall time in the worker
    error: str = ""  # one line: the exception's type and message
    traceback: str = ""  # the worker's traceback (recorded in error.txt)
    result: Optional[RunResult] = None  # a finished run (RunTask)
    log_csv: str = ""  # its log.csv

    @classmethod
    def died(cls, error: str, traceback: str = "") -> "Outcome":
        """A task whose worker process died (killed, out of memory) or whose remote execution failed."""
        return cls(status="failed", seconds=0.0, error=error, traceback=traceback)
