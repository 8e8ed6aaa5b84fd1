"""Sweeps: the cross product of scenarios × strategies × seeds × override values, run resumably.

A sweep file has an optional ``[sweep]`` table (defaults for every grid) and one or more
``[[grid]]`` tables, each a cross product (fields: :class:`SweepConfig`, :class:`GridConfig`)::

    [sweep]
    seeds = [0, 1, 2, 3, 4]
    set = ["scenario.test_per_class=100"]          # applied to every run

    [[grid]]
    scenarios = ["../scenarios/split-digits.toml"]  # relative to this file
    strategies = ["../strategies/nmc-pixels.toml"]
    vary = { "strategy.params.metric" = ["euclidean", "cosine"] }

A ``vary`` value that changes a strategy (or scenario) renames it ``<name>@<field>=<value>``, so
every run keeps its own folder ``<out>/<scenario>/<strategy>/seed<k>/``. A run is identified by
the hash of its fully resolved configuration (:func:`clproto.runner.resolved_config`): a
folder whose ``results.json`` carries that hash is finished and skipped; a folder holding
another configuration is an error before anything runs. ``results.json`` is only ever
written whole (temporary file + rename), so a sweep killed at any moment — even ``kill -9`` —
leaves at most unfinished folders, which the next invocation redoes (trained strategies
resume from their per-experience checkpoint). A run that raises is recorded in its folder as
``error.txt`` (with the traceback) and the sweep goes on; the next invocation retries it.

Two backends run the same tasks: ``local`` (a process pool, one worker per core by default,
torch threads per run = cores // workers) and ``ray`` (see :mod:`clproto.sweep_ray`). Before
the runs, one *prepare* task per dataset builds each scenario for every seed and computes the
backbone features its strategies need (a base-trained backbone: for the first seed), so definition errors
surface before any run starts and the on-disk feature cache is filled once instead of by every
worker at the same time.
"""

from __future__ import annotations

import ctypes
import itertools
import json
import os
import signal
import sys
import threading
import time
import traceback
from contextlib import contextmanager
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

from clproto.config import (Override, check_overrides_used, config_diff, config_hash, from_mapping, named_scenario, run_hash,
                            named_strategy, parse_override, read_toml, to_plain)
from clproto.config import ResolvedStrategy
from clproto.errors import ConfigError
from clproto.evaluation.results import write_text_atomic
from clproto.scenarios.config import ScenarioConfig
from clproto.strategies.base import Registry

ERROR_FILE = "error.txt"
SUMMARY_FILE = "sweep.json"
LOCK_FILE = ".sweep.lock"


# --------------------------------------------------------------------------- definition
@dataclass(frozen=True)
class GridConfig:
    scenarios: list  # scenario definition files (relative to the sweep file)
    strategies: list  # strategy definition files (relative to the sweep file)
    seeds: list = field(default_factory=list)  # empty: the [sweep] seeds
    set: list = field(default_factory=list)  # fixed overrides "section.key=value" for this grid only
    vary: dict = field(default_factory=dict)  # override key -> list of values; every combination is run
    description: str = ""  # free text


@dataclass(frozen=True)
class SweepConfig:
    seeds: list = field(default_factory=lambda: [0])  # default seeds of every grid
    set: list = field(default_factory=list)  # overrides applied to every grid
    description: str = ""  # free text


@dataclass(frozen=True)
class RunSpec:
    """One run of the sweep: everything a worker needs, as plain JSON-able data."""

    scenario: str  # scenario name (folder level 1)
    strategy: str  # strategy name (folder level 2)
    seed: int
    config: dict  # clproto.runner.resolved_config(...): scenario dict, strategy dict, seed
    config_hash: str  # run_hash(config): the run's identity
    where: str  # the definition files, for messages
    scenario_where: str = ""  # the scenario definition file
    strategy_where: str = ""  # the strategy definition file

    def folder(self, out: str | os.PathLike) -> Path:
        from clproto.runner import run_dir

        return run_dir(out, self.scenario, self.strategy, self.seed)

    @property
    def label(self) -> str:
        return f"{self.scenario} / {self.strategy} / seed {self.seed}"


def load_sweep(path: str | os.PathLike) -> tuple[SweepConfig, list[GridConfig]]:
    """Read a sweep file into typed configs (unknown tables or fields are errors)."""
    raw = read_toml(path)
    extra = sorted(set(raw) - {"sweep", "grid"})
    if extra:
        raise ConfigError(f"unknown table [{extra[0]}]", where=str(path), expected="[sweep] and [[grid]] tables")
    sweep = from_mapping(SweepConfig, raw.get("sweep", {}), where=str(path), prefix="sweep.")
    grids_raw = raw.get("grid", [])
    if not isinstance(grids_raw, list):
        raise ConfigError("`grid` must be an array of tables", where=str(path), field="grid", expected="[[grid]] tables")
    grids = [from_mapping(GridConfig, g, where=str(path), prefix=f"grid[{i}].") for i, g in enumerate(grids_raw)]
    return sweep, grids


def _resolve_path(p: Any, base: Path, *, where: str, field_name: str) -> Path:
    if not isinstance(p, str) or not p:
        raise ConfigError("expected a file path", where=where, field=field_name, value=p)
    path = Path(p).expanduser()
    return path if path.is_absolute() else base / path


MAX_SEED = 2**63 - 1


def check_seeds(seeds: list, *, where: str, field: Optional[str] = None,
                log: Callable[[str], None] = lambda s: print(s, file=sys.stderr)) -> list[int]:
    """Seeds are integers in [0, 2^63 - 1]; a repeated seed is run once (and said so)."""
    for s in seeds:
        if not isinstance(s, int) or isinstance(s, bool) or not 0 <= s <= MAX_SEED:
            raise ConfigError("not a valid seed", where=where, field=field, value=s,
                              expected=f"an integer from 0 to 2^63 - 1 ({MAX_SEED})")
    unique = list(dict.fromkeys(seeds))
    if len(unique) < len(seeds):
        repeated = sorted({s for s in seeds if seeds.count(s) > 1})
        log(f"clproto: note: seed(s) {', '.join(map(str, repeated))} given more than once ({where}); each runs once")
    return unique


def _vary_axes(vary: dict, *, where: str, prefix: str) -> list[list[Override]]:
    axes = []
    for key, values in vary.items():
        if not isinstance(values, list) or not values:
            raise ConfigError("each vary entry needs a non-empty list of values", where=where,
                              field=f"{prefix}vary.{key}", value=values, expected='e.g. ["cosine", "euclidean"]')
        proto = parse_override(f"{key}=0")
        axes.append([Override(proto.target, proto.path, v, f"{key}={json.dumps(v)}") for v in values])
    return axes


def expand_grid(
    sweep: SweepConfig,
    grids: list[GridConfig],
    *,
    registry: Registry,
    base_dir: str | os.PathLike = ".",
    where: str = "sweep",
    extra_overrides: list[str] = (),
    seeds: Optional[list[int]] = None,
    log: Callable[[str], None] = lambda s: print(s, file=sys.stderr),
) -> list[RunSpec]:
    """Every run of the sweep, in a stable order, de-duplicated; bad definitions are ConfigErrors."""
    from clproto.runner import resolved_config

    base = Path(base_dir)
    if not grids:
        raise ConfigError("the sweep defines no grid", where=where, expected="at least one [[grid]] table "
                          "(or --scenario and --strategy on the command line)")
    specs: dict[tuple[str, str, int], RunSpec] = {}
    for gi, grid in enumerate(grids):
        prefix = f"grid[{gi}]."
        grid_seeds = seeds if seeds else (grid.seeds or sweep.seeds)
        for name, items in (("scenarios", grid.scenarios), ("strategies", grid.strategies), ("seeds", grid_seeds)):
            if not items:
                raise ConfigError("empty list: the grid has no runs", where=where, field=prefix + name,
                                  expected=f"at least one of {name}")
        grid_seeds = check_seeds(grid_seeds, where=where if not seeds else "--seeds",
                                 field=prefix + "seeds" if not seeds else None, log=log)
        fixed = [parse_override(o) for o in [*sweep.set, *grid.set, *extra_overrides]]
        sc_paths = [_resolve_path(p, base, where=where, field_name=prefix + "scenarios") for p in grid.scenarios]
        st_paths = [_resolve_path(p, base, where=where, field_name=prefix + "strategies") for p in grid.strategies]
        for combo in itertools.product(*_vary_axes(grid.vary, where=where, prefix=prefix)):
            overrides = [*fixed, *combo]
            scenarios = [named_scenario(p, overrides) for p in sc_paths]
            strategies = [named_strategy(p, overrides, registry) for p in st_paths]
            names = [s.name for s in strategies]
            check_overrides_used(overrides, names, registry, strategies)
            for sc, sc_path in zip(scenarios, sc_paths):
                for st, st_path in zip(strategies, st_paths):
                    for seed in grid_seeds:
                        config = resolved_config(sc, st, seed)
                        spec = RunSpec(sc.name, st.name, seed, to_plain(config), run_hash(config),
                                       f"{sc_path} + {st_path}", str(sc_path), str(st_path))
                        key = (spec.scenario, spec.strategy, seed)
                        if key in specs and specs[key].config_hash != spec.config_hash:
                            raise ConfigError(
                                f"two runs of the sweep would share the folder {'/'.join(map(str, key))} "
                                f"but differ in configuration ({specs[key].where} vs {spec.where})",
                                where=where, expected="unique scenario and strategy names")
                        specs.setdefault(key, spec)
    return list(specs.values())


# --------------------------------------------------------------------------- planning (no run yet)
def _recorded(folder: Path) -> Optional[tuple[dict, Path]]:
    """The run file recorded in a folder (results.json first, else config.json), as a dict with its path."""
    for name in ("results.json", "config.json"):
        f = folder / name
        if f.exists():
            try:
                with open(f, encoding="utf-8") as fh:
                    data = json.load(fh)
                if not isinstance(data, dict):
                    raise ValueError("not a JSON object")
                return data, f
            except (ValueError, OSError) as exc:
                raise ConfigError(f"unreadable run file ({exc})", where=str(f),
                                  expected="a file written by clproto; delete the folder (or use --overwrite) "
                                           "to redo the run") from None
    return None


def _recorded_config(data: dict) -> dict:
    """The resolved configuration in a results.json (under ``config``) or a config.json (the file itself)."""
    return data["config"] if "config" in data else {k: v for k, v in data.items() if k != "config_hash"}


def _recorded_identity(data: dict) -> Optional[str]:
    """A recorded run's identity, recomputed from its configuration (the stored hash may use an older scheme)."""
    try:
        return run_hash(_recorded_config(data))
    except (TypeError, ValueError, AttributeError):
        return None


RUN_FILES = ("results.json", "config.json", ERROR_FILE, "checkpoint.pt")


def plan(specs: list[RunSpec], out: str | os.PathLike, *, overwrite: bool = False,
         remove: bool = True) -> tuple[list[RunSpec], list[RunSpec]]:
    """Split ``specs`` into (to run, finished).

    A folder holding another configuration is an error naming the fields that differ, unless
    ``overwrite``: then its run files are removed (only those: results.json, config.json, error.txt,
    checkpoint.pt) and the run is redone (``remove=False``: only planned, nothing removed).
    """
    todo, finished, conflicts = [], [], []
    for spec in specs:
        folder = spec.folder(out)
        try:
            recorded = _recorded(folder)
        except ConfigError:
            if not overwrite:
                raise
            recorded = ({"config_hash": None}, folder)
        if recorded is not None and _recorded_identity(recorded[0]) != spec.config_hash:
            if not overwrite:
                conflicts.append((spec, recorded))
                continue
            if not remove:
                todo.append(spec)
                continue
            for name in RUN_FILES:
                (folder / name).unlink(missing_ok=True)
        (finished if (folder / "results.json").exists() else todo).append(spec)
    if conflicts:
        spec, (data, path) = conflicts[0]
        diff = config_diff(_recorded_config(data), spec.config)
        shown = "; ".join(diff[:4]) + (f"; and {len(diff) - 4} more" if len(diff) > 4 else "")
        more = f" ({len(conflicts)} runs conflict; the first is shown)" if len(conflicts) > 1 else ""
        raise ConfigError(
            f"the output folder holds a run of the same name with a different configuration{more}: "
            f"{shown or 'config hash ' + str(data.get('config_hash'))} (recorded vs this run)",
            where=str(path), expected="another --out folder, or --overwrite to replace those runs")
    return todo, finished


def _clean_partial(folder: Path) -> None:
    """Remove temporary files a killed writer may have left (never a finished file)."""
    if folder.is_dir():
        for tmp in folder.glob(".*.tmp"):
            tmp.unlink(missing_ok=True)


# --------------------------------------------------------------------------- worker side
_STATE: dict[str, Any] = {}  # per worker process: settings key -> Runner (datasets and features stay loaded)


def _runner(settings: dict):
    key = json.dumps(settings, sort_keys=True)
    if key not in _STATE:
        from clproto.plugins import load_plugins
        from clproto.runner import Runner

        registry = load_plugins(list(settings["plugins"]))
        _STATE.clear()  # one configuration per process: free datasets of an earlier one
        from clproto.loggers import LoggerSettings

        _STATE[key] = Runner(registry=registry, data_root=settings["data_root"], models_root=settings["models_root"],
                             cache_dir=settings["cache_dir"], progress=bool(settings.get("progress", False)),
                             keep_model=settings.get("keep_model"),
                             loggers=LoggerSettings.from_dict(settings.get("loggers")))
    return _STATE[key]


def _scenario(data: dict) -> ScenarioConfig:
    return from_mapping(ScenarioConfig, data, where=f"scenario {data.get('name')!r}")


def _strategy(runner, data: dict, where: Optional[str] = None) -> ResolvedStrategy:
    from clproto.config import strategy_from_dict

    return strategy_from_dict(data, runner.registry, where=where or f"strategy {data.get('name')!r}")


def _prepare(runner, part: dict) -> None:
    """Build one scenario for each seed, check its strategies, and compute the features they need."""
    scenario = _scenario(part["scenario"])
    first = [runner.scenario(scenario, seed=seed, where=part["where"]) for seed in part["seeds"]][0]
    for st_dict, st_where in zip(part["strategies"], part.get("strategy_where") or [None] * len(part["strategies"])):
        strategy = _strategy(runner, st_dict, where=st_where)
        runner.check(scenario, strategy, part["seeds"][0], where=part["where"])
        if runner.registry.get(strategy.config.implementation).cls.input_kind != "features":
            continue
        # a backbone kind that needs_scenario (base-trained) is built from the base session: here for the first
        # seed (other seeds with the same base session, e.g. a fixed class order, then find it in the cache)
        runner.features(first.dataset, strategy.backbone, where=strategy.where, scenario=first)


def execute(task: dict, settings: dict) -> dict:
    """Run one task in a worker; every exception becomes data (``status`` failed / config-error)."""
    import torch

    torch.set_num_threads(int(settings["threads"]))
    t0 = time.perf_counter()
    try:
        runner = _runner(settings)
        if task["kind"] == "prepare":
            for part in task["scenarios"]:  # every scenario cut from this task's dataset
                _prepare(runner, part)
            return {"status": "done", "seconds": time.perf_counter() - t0}
        config = task["config"]
        scenario = _scenario(config["scenario"])
        strategy = _strategy(runner, config["strategy"], where=task.get("strategy_where"))
        out = task["out"] if task["write"] else None
        result = runner.run(scenario, strategy, seed=int(config["seed"]), out_dir=out, where=task["where"])
        if result.config_hash != task["config_hash"]:
            raise RuntimeError(f"resolved configuration hash {result.config_hash} != planned {task['config_hash']}")
        return {"status": "done", "seconds": time.perf_counter() - t0, "final_accuracy": result.metrics.final_accuracy,
                "notes": list(result.notes), "result": None if task["write"] else result.to_dict(),
                "log": None if task["write"] else runner.last_log.csv_text()}
    except ConfigError as exc:
        return {"status": "config-error", "error": str(exc), "traceback": traceback.format_exc(),
                "seconds": time.perf_counter() - t0}
    except Exception as exc:  # a crash inside one run must not sink the sweep
        return {"status": "failed", "error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc(),
                "seconds": time.perf_counter() - t0}


def _init_local_worker(threads: int, driver_pid: int) -> None:
    """Pool worker set-up: quiet, ``threads`` torch threads, and die with the sweep (even on kill -9)."""
    import torch

    os.environ["CLPROTO_PROGRESS"] = "0"
    torch.set_num_threads(threads)
    if sys.platform.startswith("linux"):
        try:  # PR_SET_PDEATHSIG: the kernel sends SIGKILL when the parent dies
            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)
        except (OSError, AttributeError):
            pass
    if os.getppid() != driver_pid:
        os._exit(1)

    def watchdog() -> None:  # portable fallback: poll the parent
        while True:
            if os.getppid() != driver_pid:
                os._exit(1)
            time.sleep(0.5)

    threading.Thread(target=watchdog, daemon=True, name="clproto-watchdog").start()


# --------------------------------------------------------------------------- backends
Outcome = dict
TaskFn = Callable[[dict, dict], Outcome]


class InProcessBackend:
    """Every task in this process, one after the other (``clproto run``, and tests).

    Its runner is fresh for each invocation (datasets and features stay loaded across its runs only).
    """

    name = "in-process"
    writes_results = True

    def __init__(self, *, threads: int) -> None:
        self.threads = threads

    def start(self) -> None:
        _STATE.clear()

    def check(self) -> None:
        if self.threads < 1:
            raise ConfigError("must be at least 1", where="--threads", value=self.threads)

    def describe(self) -> str:
        return f"in this process, {self.threads} torch thread(s)"

    def map_unordered(self, fn: TaskFn, tasks: list[dict], settings: dict) -> Iterator[tuple[dict, Outcome]]:
        for task in tasks:
            yield task, fn(task, settings)

    def close(self) -> None:
        _STATE.clear()  # free the datasets


class LocalBackend:
    """A process pool on this machine: ``jobs`` workers with ``threads`` torch threads each."""

    name = "local"
    writes_results = True  # workers share the driver's filesystem: the runner writes (and checkpoints) itself

    def __init__(self, *, jobs: int, threads: int) -> None:
        self.jobs = jobs
        self.threads = threads
        self._pool: Optional[ProcessPoolExecutor] = None

    def start(self) -> None:
        import multiprocessing

        # fork (Linux): workers start at once with clproto and torch already imported (a spawned worker
        # re-imports torch: seconds each). `clproto sweep` runs no torch operation in the driver, so no
        # thread pool is copied mid-use. Elsewhere: spawn.
        method = "fork" if sys.platform.startswith("linux") else "spawn"
        self._pool = ProcessPoolExecutor(max_workers=self.jobs, mp_context=multiprocessing.get_context(method),
                                         initializer=_init_local_worker, initargs=(self.threads, os.getpid()))

    def check(self) -> None:
        if self.jobs < 1 or self.threads < 1:
            raise ConfigError("jobs and threads must be at least 1", where="--jobs/--threads",
                              value=(self.jobs, self.threads))

    def describe(self) -> str:
        return f"local: {self.jobs} worker process(es) x {self.threads} torch thread(s)"

    def map_unordered(self, fn: TaskFn, tasks: list[dict], settings: dict) -> Iterator[tuple[dict, Outcome]]:
        """Yield (task, outcome) as tasks finish; at most ``jobs`` in flight, so every one is running.

        A worker that dies (segfault, out-of-memory kill) breaks the whole pool: the tasks that were
        running are re-run one at a time in a fresh pool, so only the one that kills its worker
        again is reported failed.
        """
        pending = list(reversed(tasks))  # pop() takes them in order
        suspects: list[dict] = []  # running when the pool broke: re-run alone
        running: dict = {}  # future -> (task, alone)
        while pending or suspects or running:
            if suspects and not running:
                task = suspects.pop(0)
                running[self._pool.submit(fn, task, settings)] = (task, True)
            while pending and not suspects and len(running) < self.jobs:
                task = pending.pop()
                running[self._pool.submit(fn, task, settings)] = (task, False)
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            broken = False
            for fut in done:
                task, alone = running.pop(fut)
                try:
                    outcome = fut.result()
                except BrokenProcessPool:
                    broken = True
                    if not alone:
                        suspects.append(task)
                        continue
                    outcome = {"status": "failed", "error": "the worker process died (killed, or out of memory)",
                               "traceback": "", "seconds": 0.0}
                yield task, outcome
            if broken:
                suspects += [task for task, _ in running.values()]
                running.clear()
                self._pool.shutdown(wait=True, cancel_futures=True)
                self.start()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None


def worker_settings(*, plugins: list[str] = (), threads: int = 1, data_root: Optional[str] = None,
                    models_root: Optional[str] = None, cache_dir: Optional[str] = None, progress: bool = False,
                    keep_model: Optional[str] = None, loggers: Optional[dict] = None) -> dict:
    """What every worker needs, with absolute paths (remote workers do not share our working directory).

    ``keep_model``: --keep-model (None, "last", "every"); ``loggers``: :class:`clproto.loggers.LoggerSettings` as a dict.
    """
    from clproto.data import paths

    return {"plugins": [str(Path(p).resolve()) if p.endswith(".py") else p for p in plugins], "threads": threads,
            "progress": progress, "keep_model": keep_model, "loggers": loggers or {},
            "data_root": str(paths.data_root(data_root).resolve()),
            "models_root": str(paths.models_root(models_root).resolve()),
            "cache_dir": str(paths.cache_root(cache_dir).resolve())}


def default_jobs() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:
        return max(1, os.cpu_count() or 1)


# --------------------------------------------------------------------------- driver
@dataclass
class SweepSummary:
    total: int  # runs in the grid
    done: list  # labels of runs completed now
    skipped: list  # labels of runs finished earlier
    failed: list  # (label, error, folder) of runs that raised
    seconds: float  # wall time of this invocation
    backend: str  # "local" or "ray"

    def text(self) -> str:
        lines = [f"sweep: {self.total} runs — {len(self.done)} done, {len(self.skipped)} skipped (already finished), "
                 f"{len(self.failed)} failed — {self.seconds:.1f}s ({self.backend} backend)"]
        for label, error, folder in self.failed:
            lines.append(f"  FAILED {label}: {error}  (traceback: {Path(folder) / ERROR_FILE})")
        return "\n".join(lines)


def _prepare_tasks(todo: list[RunSpec]) -> list[dict]:
    """One prepare task per dataset (so its features are computed once), listing each scenario cut from it."""
    tasks: dict[str, dict] = {}
    parts: dict[str, dict] = {}
    for spec in todo:
        sc = spec.config["scenario"]
        task = tasks.setdefault(sc["dataset"], {"kind": "prepare", "dataset": sc["dataset"], "scenarios": []})
        key = config_hash(sc)
        if key not in parts:
            parts[key] = {"scenario": sc, "seeds": [], "strategies": [], "strategy_where": [],
                          "where": spec.scenario_where or spec.where.split(" + ")[0]}
            task["scenarios"].append(parts[key])
        if spec.seed not in parts[key]["seeds"]:
            parts[key]["seeds"].append(spec.seed)
        if spec.config["strategy"] not in parts[key]["strategies"]:
            parts[key]["strategies"].append(spec.config["strategy"])
            parts[key]["strategy_where"].append(spec.strategy_where or spec.where)
    return list(tasks.values())


def check_out(out: Path) -> Path:
    """An output folder that is (or can become) a writable folder; checked before anything runs."""
    if out.exists() and not out.is_dir():
        raise ConfigError("exists and is not a folder", where="--out", value=str(out), expected="a folder path")
    parent = out
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise ConfigError(f"cannot create the folder: {parent} is a file", where="--out", value=str(out))
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ConfigError(f"not writable ({parent})", where="--out", value=str(out),
                          expected="a folder you can write to")
    return out


def _check_not_locked(out: Path) -> None:
    """Fail at once (before any preparation) when another sweep holds ``<out>/.sweep.lock``; creates nothing."""
    try:
        import fcntl
    except ImportError:
        return
    if not (out / LOCK_FILE).exists():
        return
    fd = os.open(out / LOCK_FILE, os.O_RDONLY)
    try:
        _lock(fd, out)
        fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _lock(fd: int, out: Path) -> None:
    """Take the advisory lock on ``fd`` without waiting; a sweep holding it already is a ConfigError."""
    import fcntl

    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise ConfigError("another sweep is running on this output folder", where=str(out),
                          expected="to wait for it to finish, or another --out") from None


@contextmanager
def _exclusive(out: Path) -> Iterator[None]:
    """Hold an advisory lock on ``<out>/.sweep.lock`` (released by the kernel even on kill -9)."""
    try:
        import fcntl  # noqa: F401 - only to know whether locks exist here (POSIX)
    except ImportError:  # not POSIX: no lock
        yield
        return
    out.mkdir(parents=True, exist_ok=True)
    fd = os.open(out / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        _lock(fd, out)
        yield
    finally:
        os.close(fd)


def run_sweep(
    specs: list[RunSpec],
    *,
    out: str | os.PathLike,
    backend,
    settings: dict,
    progress: bool = True,
    log: Optional[Callable[[str], None]] = None,
    summary_name: Optional[str] = SUMMARY_FILE,
    overwrite: bool = False,
    desc: str = "sweep",
    announce: bool = True,
) -> SweepSummary:
    """Run every unfinished spec on ``backend``; record failures; return the summary.

    ``settings``: plugins, data_root, models_root, cache_dir, threads (what each worker needs).
    The summary is also written to ``<out>/<summary_name>`` (the CLI uses ``sweep-<sweep file stem>.json``;
    ``None``: not written). ``overwrite``: replace runs whose folder holds another configuration.
    Raises ConfigError (before any run starts) for conflicting output folders or definitions
    that fail to build (unknown dataset, class counts that do not add up, unknown backbone).
    """
    from clproto.evaluation.results import write_json_atomic
    from clproto.progress import progress_bar

    t0 = time.perf_counter()
    out = Path(out)
    log = log or _default_log(progress)
    if not specs:
        raise ConfigError("the sweep has no runs", expected="at least one scenario, strategy and seed")
    backend.check()  # e.g. an unreachable Ray address: an error before anything is written
    _check_not_locked(out)  # another sweep on `out`: refused before any preparation
    todo, finished = plan(specs, out, overwrite=overwrite, remove=False)  # conflicts: an error before any write
    if announce:
        log(f"{desc}: {len(specs)} runs, {len(todo)} to run, {len(finished)} already finished ({backend.describe()})")
    summary = SweepSummary(total=len(specs), done=[], skipped=[s.label for s in finished], failed=[],
                           seconds=0.0, backend=backend.name)
    started = bool(todo)
    if started:
        backend.start()
    try:
        if todo:  # definition errors surface here, before anything is written under `out`
            _prepare_all(backend, todo, settings, progress=progress, log=log, announce=announce)
        with _exclusive(out):  # one sweep at a time per output folder
            todo, finished = plan(specs, out, overwrite=overwrite)  # again: another sweep may have finished some
            summary.skipped = [s.label for s in finished]
            for spec in todo:
                _clean_partial(spec.folder(out))
            tasks = [{"kind": "run", "index": i, "config": spec.config, "config_hash": spec.config_hash,
                      "where": spec.where, "strategy_where": spec.strategy_where,
                      "out": str(out.resolve()), "write": backend.writes_results}
                     for i, spec in enumerate(todo)]
            if tasks:
                bar = progress_bar(backend.map_unordered(execute, tasks, settings), desc=desc, total=len(tasks),
                                   enabled=progress, unit="run")
                for n, (task, outcome) in enumerate(bar, start=1):
                    line = _record(todo[task["index"]], outcome, out, summary)
                    log(f"[{n}/{len(tasks)}] {line}")
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


def _default_log(progress: bool) -> Callable[[str], None]:
    """One line per event on stderr, printed above the progress bar when there is one."""
    from clproto.progress import progress_enabled

    if progress_enabled(progress):
        from tqdm.auto import tqdm

        return lambda s: tqdm.write(s, file=sys.stderr)
    return lambda s: print(s, file=sys.stderr)


def _prepare_all(backend, todo: list[RunSpec], settings: dict, *, progress: bool, log: Callable[[str], None],
                 announce: bool = True) -> None:
    """Run the prepare tasks; a definition error in any of them stops the sweep before its first run."""
    from clproto.progress import progress_bar

    prep = _prepare_tasks(todo)
    bar = progress_bar(backend.map_unordered(execute, prep, settings), desc="sweep: prepare", total=len(prep),
                       enabled=progress, unit="dataset")
    for task, outcome in bar:
        names = ", ".join(repr(p["scenario"].get("name")) for p in task["scenarios"])
        if outcome["status"] == "config-error":
            raise ConfigError(outcome["error"])  # already names the file, field and value
        if outcome["status"] == "failed":
            log(f"sweep: preparing {names} failed ({outcome['error']}); their runs will record their own errors")
        elif announce:
            log(f"sweep: prepared {task['dataset']} for {names} ({outcome['seconds']:.1f}s)")


def _record(spec: RunSpec, outcome: Outcome, out: Path, summary: SweepSummary) -> str:
    """Write what the driver must write for one finished task (results from Ray, or error.txt); return a log line."""
    from clproto.evaluation.results import RunResult, write_json_atomic

    folder = spec.folder(out)
    if outcome["status"] == "done":
        if outcome.get("result") is not None:  # returned by a remote worker: the driver writes it
            write_json_atomic(folder / "config.json", {**spec.config, "config_hash": spec.config_hash})
            if outcome.get("log") is not None:  # log.csv before results.json, as the runner does
                write_text_atomic(folder / "log.csv", outcome["log"])
            RunResult.from_dict(outcome["result"]).save(folder / "results.json")
        (folder / ERROR_FILE).unlink(missing_ok=True)
        summary.done.append(spec.label)
        notes = f" [{'; '.join(outcome['notes'])}]" if outcome.get("notes") else ""
        return f"{spec.label}: final acc {100 * outcome['final_accuracy']:.2f}% ({outcome['seconds']:.1f}s){notes}"
    try:
        write_text_atomic(folder / ERROR_FILE, f"{spec.label}\nconfig_hash: {spec.config_hash}\n\n"
                          f"{outcome['error']}\n\n{outcome.get('traceback', '')}")
    except ConfigError:  # e.g. the disk is full: nothing can be recorded, so stop on the run's own error
        raise ConfigError(outcome["error"]) from None
    summary.failed.append((spec.label, outcome["error"], str(folder)))
    return f"{spec.label}: FAILED {outcome['error']}"


# --------------------------------------------------------------------------- command line
def add_parser(sub, common: Callable) -> None:
    """The ``clproto sweep`` subcommand (``common`` adds the shared location/resource options)."""
    p = sub.add_parser(
        "sweep", help="run a grid of scenarios x strategies x seeds x overrides, resumably, in parallel",
        description="Run the cross product of scenarios, strategies, seeds and override values, each run in "
                    "<out>/<scenario>/<strategy>/seed<k>/. Finished runs are skipped, so re-running the same "
                    "command resumes a killed sweep; a run that raises leaves error.txt and the sweep goes on. "
                    "Then: clproto report <out>.")
    p.add_argument("sweep", nargs="?", metavar="SWEEP.toml", help="sweep definition ([sweep] + [[grid]] tables)")
    p.add_argument("--scenario", dest="scenarios", nargs="+", action="extend", default=[], metavar="SCENARIO.toml",
                   help="scenario definitions of a grid given on the command line")
    p.add_argument("--strategy", dest="strategies", nargs="+", action="extend", default=[], metavar="STRATEGY.toml",
                   help="strategy definitions of that grid")
    p.add_argument("--seeds", type=int, nargs="+", metavar="S", help="seeds of every grid (default: the file's, else 0)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a field in every run, e.g. scenario.train_per_class=50")
    p.add_argument("--vary", action="append", default=[], metavar="KEY=[V1,V2]",
                   help='run every value, e.g. strategy.params.metric=["euclidean","cosine"] (every grid)')
    p.add_argument("--out", metavar="DIR", help="output folder (default: runs/<sweep file name>, or runs/sweep)")
    p.add_argument("--jobs", type=int, metavar="N", help="parallel runs (default: the number of cores; with --backend ray and no "
                                                        "--address: the CPUs of the local Ray)")
    p.add_argument("--backend", choices=("local", "ray"), default="local", help="where runs execute (default: local)")
    p.add_argument("--address", metavar="ADDR", help="Ray cluster address (HOST:PORT, ray://HOST:PORT or auto); "
                                                     "default: start a local Ray")
    p.add_argument("--dry-run", action="store_true", help="list the runs and whether they are finished; run nothing")
    p.add_argument("--overwrite", action="store_true",
                   help="replace runs whose folder holds a different configuration (default: refuse, naming the fields)")
    from clproto.cli import add_run_outputs

    add_run_outputs(p)
    common(p)


def _parse_vary(texts: list[str]) -> dict:
    vary = {}
    for text in texts:
        ov = parse_override(text)
        if not isinstance(ov.value, list) or not ov.value:
            raise ConfigError("--vary needs a non-empty TOML list of values", where="--vary", value=text,
                              expected='e.g. strategy.params.metric=["euclidean","cosine"]')
        vary[text.partition("=")[0].strip()] = ov.value
    return vary


def cmd_sweep(args, *, registry: Registry) -> int:
    from clproto.progress import progress_enabled

    if args.jobs is not None and args.jobs < 1:
        raise ConfigError("must be at least 1", where="--jobs", value=args.jobs)
    if args.sweep:
        path = Path(args.sweep)
        sweep, grids = load_sweep(path)
        base, where = path.parent, str(path)
    else:
        sweep, grids, base, where = SweepConfig(), [], Path("."), "command line"
    vary = _parse_vary(args.vary)
    if args.scenarios or args.strategies:
        grids.append(GridConfig(scenarios=[str(Path(p).resolve()) for p in args.scenarios],
                                strategies=[str(Path(p).resolve()) for p in args.strategies]))
    grids = [replace(g, vary={**g.vary, **vary}) for g in grids]
    specs = expand_grid(sweep, grids, registry=registry, base_dir=base, where=where,
                        extra_overrides=args.overrides, seeds=args.seeds)
    out = check_out(Path(args.out) if args.out else Path("runs") / (Path(args.sweep).stem if args.sweep else "sweep"))
    if args.dry_run:
        todo, finished = plan(specs, out, overwrite=False)
        done = {id(s) for s in finished}
        for s in specs:
            print(f"{'finished' if id(s) in done else 'to run  '}  {s.label}  [{s.config_hash}]")
        print(f"{len(specs)} runs: {len(todo)} to run, {len(finished)} finished (output: {out}/)")
        return 0
    jobs = args.jobs or default_jobs()
    threads = args.threads or max(1, default_jobs() // jobs)
    from clproto.cli import logger_settings, note_unkept

    loggers = logger_settings(args)
    settings = worker_settings(plugins=args.plugin, threads=threads, data_root=args.data_root,
                               models_root=args.models_root, cache_dir=args.cache_dir, keep_model=args.keep_model,
                               loggers=loggers.to_dict())
    if args.backend == "ray" and (args.keep_model or loggers.loggers):
        raise ConfigError("--keep-model and --logger write into run folders on the worker's machine: not with "
                          "the Ray backend (its workers return results; the driver writes results.json and log.csv)",
                          where="--backend", value="ray", expected="--backend local, or no --keep-model/--logger")
    if args.backend == "ray":
        from clproto.sweep_ray import RayBackend

        backend = RayBackend(address=args.address, threads=threads, num_cpus=args.jobs)
    else:
        if args.address:
            raise ConfigError("--address applies to the Ray backend only", where="--address", value=args.address,
                              expected="--backend ray")
        backend = LocalBackend(jobs=min(jobs, len(specs)), threads=threads)
    summary = run_sweep(specs, out=out, backend=backend, settings=settings, progress=progress_enabled(),
                        summary_name=f"sweep-{Path(args.sweep).stem}.json" if args.sweep else SUMMARY_FILE,
                        overwrite=args.overwrite)
    print(summary.text())
    print(f"results: {out}/   report: clproto report {out} --out <report folder>")
    note_unkept(specs, out, args.keep_model)
    return 1 if summary.failed else 0
