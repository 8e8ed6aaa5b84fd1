"""Executing one task in a worker: a run, or the preparation of one dataset's scenarios.

:func:`execute` never raises: an exception becomes a failed :class:`Outcome` (a crash inside one run
must not sink the sweep), a definition error a ``config-error`` one. A finished run is returned,
not recorded: the driver writes its ``results.json`` (:func:`clproto.run_folder.write_finished`),
whatever the backend. A worker keeps one :class:`~clproto.runner.Runner` per settings, so the
datasets and features it loaded stay loaded for its next tasks.
"""

from __future__ import annotations

import time
import traceback

from clproto.errors import ConfigError
from clproto.sweep.tasks import Outcome, PreparePart, PrepareTask, RunTask, Task, WorkerSettings

_RUNNERS: dict = {}  # per worker process: (settings, progress) -> Runner


def execute(task: Task, settings: WorkerSettings) -> Outcome:
    """Run ``task`` with ``settings.threads`` torch threads; every exception becomes data."""
    import torch

    torch.set_num_threads(settings.threads)
    t0 = time.perf_counter()
    try:
        runner = runner_for(settings, progress=task.progress)
        if isinstance(task, PrepareTask):
            for part in task.parts:  # every scenario cut from this task's dataset
                _prepare(runner, part)
            return Outcome(status="done", seconds=time.perf_counter() - t0)
        return _run(runner, task, t0)
    except ConfigError as exc:
        return Outcome(status="config-error", error=str(exc), traceback=traceback.format_exc(),
                       seconds=time.perf_counter() - t0)
    except Exception as exc:  # a crash inside one run must not sink the sweep
        return Outcome(status="failed", error=f"{type(exc).__name__}: {exc}", traceback=traceback.format_exc(),
                       seconds=time.perf_counter() - t0)


def _run(runner, task: RunTask, t0: float) -> Outcome:
    """One run, in its folder when the worker shares it (config.json, checkpoints, kept models, loggers)."""
    spec = task.spec
    result = runner.run(spec.scenario, spec.strategy, seed=spec.seed, out_dir=task.out, where=spec.where,
                        record=False)  # the driver records it
    if result.config_hash != spec.config_hash:
        raise RuntimeError(f"resolved configuration hash {result.config_hash} != planned {spec.config_hash}")
    return Outcome(status="done", seconds=time.perf_counter() - t0, result=result,
                   log_csv=runner.last_log.csv_text())


def _prepare(runner, part: PreparePart) -> None:
    """Build one scenario for each seed, check its strategies, and compute the features they need."""
    first = [runner.scenario(part.scenario, seed=seed, where=part.where) for seed in part.seeds][0]
    for strategy in part.strategies:
        runner.check(part.scenario, strategy, part.seeds[0], where=part.where)
        if runner.registry.get(strategy.config.implementation).cls.input_kind != "features":
            continue
        # a backbone kind that needs_scenario (base-trained) is built from the base session: here for the first
        # seed (other seeds with the same base session, e.g. a fixed class order, then find it in the cache)
        runner.features(first.dataset, strategy.backbone, where=strategy.where, scenario=first)


def runner_for(settings: WorkerSettings, *, progress: bool = False):
    """This process's Runner for ``settings`` (plugins loaded); one configuration at a time is kept."""
    key = (settings, progress)
    if key not in _RUNNERS:
        from clproto.plugins import load_plugins
        from clproto.runner import Runner

        registry = load_plugins(list(settings.plugins))
        forget_runners()  # one configuration per process: free the datasets of an earlier one
        _RUNNERS[key] = Runner(registry=registry, data_root=settings.data_root, models_root=settings.models_root,
                               cache_dir=settings.cache_dir, progress=progress, keep_model=settings.keep_model,
                               loggers=settings.loggers, device=settings.device, precision=settings.precision,
                               deterministic=settings.deterministic)
    return _RUNNERS[key]


def forget_runners() -> None:
    """Drop this process's runners (and the datasets and features they hold)."""
    _RUNNERS.clear()
