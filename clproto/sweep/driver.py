"""The driver of ``clproto run`` and ``clproto sweep``: plan → backend.map(execute) → record.

1. **plan** (:mod:`clproto.sweep.plan`): finished runs are skipped, a folder holding another
   configuration is refused (or replaced with ``overwrite``) — before anything is written;
2. **prepare**: one task per dataset builds each of its scenarios for every seed and computes the
   backbone features its strategies need (a base-trained backbone: for the first seed), so a
   definition error stops the sweep before its first run and the on-disk feature cache is filled
   once instead of by every worker at the same time;
3. **execute** every unfinished run on the backend (:mod:`clproto.sweep.backends`);
4. **record** each outcome as it arrives, here and only here: a finished run's ``results.json``
   (:func:`clproto.run_folder.write_finished`), a failed run's ``error.txt`` (the next invocation
   retries it); and the sweep's summary.

``results.json`` is only ever written whole, so a sweep killed at any moment — even ``kill -9`` —
leaves at most unfinished folders, which the next invocation redoes (trained strategies resume
from their per-experience checkpoint).
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

from clproto.config import config_hash
from clproto.errors import ConfigError
from clproto.progress import progress_bar
from clproto.run_folder import ERROR_FILE, write_error, write_finished
from clproto.storage import write_json_atomic
from clproto.sweep.backends import Backend
from clproto.sweep.plan import check_not_locked, clean_partial, exclusive, plan
from clproto.sweep.tasks import Outcome, PreparePart, PrepareTask, RunSpec, RunTask, WorkerSettings
from clproto.sweep.worker import execute

SUMMARY_FILE = "sweep.json"


@dataclass
class SweepSummary:
    total: int  # runs in the grid
    backend: str  # the backend's name
    done: list = field(default_factory=list)  # labels of runs completed now
    skipped: list = field(default_factory=list)  # labels of runs finished earlier
    failed: list = field(default_factory=list)  # (label, error, folder) of runs that raised
    seconds: float = 0.0  # wall time of this invocation

    def text(self) -> str:
        lines = [f"sweep: {self.total} runs — {len(self.done)} done, {len(self.skipped)} skipped (already finished), "
                 f"{len(self.failed)} failed — {self.seconds:.1f}s ({self.backend} backend)"]
        for label, error, folder in self.failed:
            lines.append(f"  FAILED {label}: {error}  (traceback: {Path(folder) / ERROR_FILE})")
        return "\n".join(lines)


def run_sweep(
    specs: list[RunSpec],
    *,
    out: str | os.PathLike,
    backend: Backend,
    settings: WorkerSettings,
    progress: bool = True,
    log: Optional[Callable[[str], None]] = None,
    summary_name: Optional[str] = SUMMARY_FILE,
    overwrite: bool = False,
    desc: str = "sweep",
    announce: bool = True,
) -> SweepSummary:
    """Run every unfinished spec on ``backend``; record every outcome; return the summary.

    ``progress``: progress bars (the driver's, and those of tasks run in this process).
    The summary is also written to ``<out>/<summary_name>`` (the CLI uses ``sweep-<sweep file stem>.json``;
    ``None``: not written). ``overwrite``: replace runs whose folder holds another configuration.
    Raises ConfigError (before any run starts) for conflicting output folders or definitions
    that fail to build (unknown dataset, class counts that do not add up, unknown backbone).
    """
    t0 = time.perf_counter()
    out = Path(out)
    log = log or _default_log(progress)
    if not specs:
        raise ConfigError("the sweep has no runs", expected="at least one scenario, strategy and seed")
    backend.check()  # e.g. an unreachable Ray address: an error before anything is written
    check_not_locked(out)  # another sweep on `out`: refused before any preparation
    todo, finished = plan(specs, out, overwrite=overwrite, remove=False)  # conflicts: an error before any write
    if announce:
        log(f"{desc}: {len(specs)} runs, {len(todo)} to run, {len(finished)} already finished ({backend.describe()})")
    summary = SweepSummary(total=len(specs), backend=backend.name, skipped=[s.label for s in finished])
    worker_progress = progress and backend.in_process  # workers of other processes draw no bars
    started = bool(todo)
    if started:
        backend.start(settings)
    try:
        if todo:  # definition errors surface here, before anything is written under `out`
            _prepare(backend, todo, progress=progress, worker_progress=worker_progress, log=log, announce=announce)
        with exclusive(out):  # one sweep at a time per output folder
            todo, finished = plan(specs, out, overwrite=overwrite)  # again: another sweep may have finished some
            summary.skipped = [s.label for s in finished]
            for spec in todo:
                clean_partial(spec.folder(out))
            shared = str(out.resolve()) if backend.shares_files else None
            tasks = [RunTask(spec=spec, out=shared, progress=worker_progress) for spec in todo]
            if tasks:
                bar = progress_bar(backend.map(execute, tasks), desc=desc, total=len(tasks), enabled=progress,
                                   unit="run")
                for n, (task, outcome) in enumerate(bar, start=1):
                    log(f"[{n}/{len(tasks)}] {record(task.spec, outcome, out, summary)}")
            summary.seconds = time.perf_counter() - t0
            if summary_name is not None:
                write_json_atomic(out / summary_name, {
                    "total": summary.total, "done": summary.done, "skipped": summary.skipped,
                    "failed": [{"run": lbl, "error": e, "folder": f} for lbl, e, f in summary.failed],
                    "seconds": summary.seconds, "backend": summary.backend,
                    "runs": [{"run": s.label, "folder": str(s.folder(out)), "config_hash": s.config_hash}
                             for s in specs],
                })
    finally:
        if started:
            backend.close()
    return summary


def record(spec: RunSpec, outcome: Outcome, out: Path, summary: SweepSummary) -> str:
    """Write what one finished task leaves in its run folder (results.json, or error.txt); return a log line."""
    folder = spec.folder(out)
    if outcome.status == "done":
        write_finished(folder, outcome.result, log_csv=outcome.log_csv)
        summary.done.append(spec.label)
        notes = f" [{'; '.join(outcome.result.notes)}]" if outcome.result.notes else ""
        return (f"{spec.label}: final acc {100 * outcome.result.metrics.final_accuracy:.2f}% "
                f"({outcome.seconds:.1f}s){notes}")
    try:
        write_error(folder, f"{spec.label}\nconfig_hash: {spec.config_hash}\n\n{outcome.error}\n\n{outcome.traceback}")
    except ConfigError:  # e.g. the disk is full: nothing can be recorded, so stop on the run's own error
        raise ConfigError(outcome.error) from None
    summary.failed.append((spec.label, outcome.error, str(folder)))
    return f"{spec.label}: FAILED {outcome.error}"


def prepare_tasks(todo: list[RunSpec], *, progress: bool = False) -> list[PrepareTask]:
    """One prepare task per dataset (so its features are computed once), listing each scenario cut from it."""
    parts: dict[str, dict[str, dict]] = {}  # dataset -> scenario config hash -> part fields
    for spec in todo:
        by_scenario = parts.setdefault(spec.scenario.dataset, {})
        part = by_scenario.setdefault(config_hash(spec.config["scenario"]), {
            "scenario": spec.scenario, "seeds": [], "strategies": {}, "where": spec.scenario_where})
        if spec.seed not in part["seeds"]:
            part["seeds"].append(spec.seed)
        part["strategies"].setdefault(config_hash(spec.config["strategy"]), spec.strategy)
    return [PrepareTask(dataset=dataset, progress=progress, parts=tuple(
                PreparePart(scenario=p["scenario"], seeds=tuple(p["seeds"]), strategies=tuple(p["strategies"].values()),
                            where=p["where"]) for p in by_scenario.values()))
            for dataset, by_scenario in parts.items()]


def _prepare(backend: Backend, todo: list[RunSpec], *, progress: bool, worker_progress: bool,
             log: Callable[[str], None], announce: bool) -> None:
    """Run the prepare tasks; a definition error in any of them stops the sweep before its first run."""
    tasks = prepare_tasks(todo, progress=worker_progress)
    bar = progress_bar(backend.map(execute, tasks), desc="sweep: prepare", total=len(tasks), enabled=progress,
                       unit="dataset")
    for task, outcome in bar:
        names = ", ".join(repr(p.scenario.name) for p in task.parts)
        if outcome.status == "config-error":
            raise ConfigError(outcome.error)  # already names the file, field and value
        if outcome.status == "failed":
            log(f"sweep: preparing {names} failed ({outcome.error}); their runs will record their own errors")
        elif announce:
            log(f"sweep: prepared {task.dataset} for {names} ({outcome.seconds:.1f}s)")


def _default_log(progress: bool) -> Callable[[str], None]:
    """One line per event on stderr, printed above the progress bar when there is one."""
    if progress:
        from tqdm.auto import tqdm

        return lambda s: tqdm.write(s, file=sys.stderr)
    return lambda s: print(s, file=sys.stderr)
