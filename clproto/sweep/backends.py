"""Where tasks execute: one small interface, three backends.

* :class:`InProcessBackend` — every task in this process, one after the other (``clproto run``);
* :class:`LocalBackend` — a process pool on this machine: ``jobs`` workers with ``threads`` torch
  threads each; workers die with the driver, even when it is killed with ``kill -9``;
* :class:`RayBackend` — every task a Ray task, on an existing cluster or a local Ray (``pip install
  'clproto[ray]'``; Ray is imported only when this backend is used). Ray workers share no folder
  with the driver: they run without a run folder and return what they computed.

Every backend runs :func:`clproto.sweep.worker.execute` on :mod:`clproto.sweep.tasks` and yields
``(task, outcome)`` pairs as tasks finish; the driver records each outcome in its run folder.
A backend holds nothing when it is not started, so ``check`` and ``describe`` are cheap.
"""

from __future__ import annotations

import ctypes
import os
import pickle
import signal
import socket
import sys
import threading
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import Callable, Iterator, Optional, Protocol

from clproto.errors import ConfigError
from clproto.sweep.resources import pin_worker
from clproto.sweep.tasks import Outcome, Task, WorkerSettings
from clproto.sweep.worker import forget_runners, runner_for

TaskFn = Callable[[Task, WorkerSettings], Outcome]  # clproto.sweep.worker.execute


class Backend(Protocol):
    name: str  # "in-process", "local" or "ray": in messages and sweep.json
    in_process: bool  # tasks run in the driver's process (so they may draw progress bars)
    shares_files: bool  # workers see the driver's output folder (config.json, checkpoints, kept models, loggers)

    def check(self) -> None:
        """Fail fast (ConfigError) on what would fail later, before anything is written."""

    def describe(self) -> str:
        """One line: where and how wide tasks run."""

    def start(self, settings: WorkerSettings) -> None:
        """Get the workers ready to run tasks with ``settings``."""

    def map(self, fn: TaskFn, tasks: list[Task]) -> Iterator[tuple[Task, Outcome]]:
        """``fn(task, settings)`` for every task, yielded with its task as each finishes (any order)."""

    def close(self) -> None:
        """Release the workers."""


def default_jobs() -> int:
    """The cores this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:
        return max(1, os.cpu_count() or 1)


# --------------------------------------------------------------------------- in this process
class InProcessBackend:
    """Every task in this process, one after the other; datasets and features stay loaded across its runs."""

    name = "in-process"
    in_process = True
    shares_files = True

    def __init__(self, *, threads: int) -> None:
        self.threads = threads  # torch threads (for the description: settings.threads is what runs use)
        self._settings: Optional[WorkerSettings] = None

    def check(self) -> None:
        if self.threads < 1:
            raise ConfigError("must be at least 1", where="--threads", value=self.threads)

    def describe(self) -> str:
        return f"in this process, {self.threads} torch thread(s)"

    def start(self, settings: WorkerSettings) -> None:
        forget_runners()
        self._settings = settings

    def map(self, fn: TaskFn, tasks: list[Task]) -> Iterator[tuple[Task, Outcome]]:
        for task in tasks:
            yield task, fn(task, self._settings)

    def close(self) -> None:
        forget_runners()  # free the datasets
        self._settings = None


# --------------------------------------------------------------------------- a local process pool
class LocalBackend:
    """A process pool on this machine: ``jobs`` workers with ``threads`` torch threads each."""

    name = "local"
    in_process = False
    shares_files = True

    def __init__(self, *, jobs: int, threads: int, gpus: tuple[str, ...] = ()) -> None:
        self.jobs = jobs
        self.threads = threads
        self.gpus = tuple(gpus)  # GPUs the workers are pinned to, round-robin (clproto.sweep.resources); () = none
        self._pool: Optional[ProcessPoolExecutor] = None
        self._settings: Optional[WorkerSettings] = None

    def check(self) -> None:
        if self.jobs < 1 or self.threads < 1:
            raise ConfigError("jobs and threads must be at least 1", where="--jobs/--threads",
                              value=(self.jobs, self.threads))

    def describe(self) -> str:
        gpus = f", pinned round-robin to GPU(s) {','.join(self.gpus)}" if self.gpus else ""
        return f"local: {self.jobs} worker process(es) x {self.threads} torch thread(s){gpus}"

    def start(self, settings: WorkerSettings) -> None:
        import multiprocessing

        # fork (Linux): workers start at once with clproto and torch already imported (a spawned worker
        # re-imports torch: seconds each). The driver runs no torch operation before, so no thread pool
        # is copied mid-use. Elsewhere: spawn.
        method = "fork" if sys.platform.startswith("linux") else "spawn"
        self._settings = settings
        context = multiprocessing.get_context(method)
        counter = context.Value("i", 0)  # each new worker takes the next number: its GPU, round-robin
        self._pool = ProcessPoolExecutor(max_workers=self.jobs, mp_context=context, initializer=_init_local_worker,
                                         initargs=(settings, os.getpid(), self.gpus, counter))

    def map(self, fn: TaskFn, tasks: list[Task]) -> Iterator[tuple[Task, Outcome]]:
        """At most ``jobs`` tasks in flight, so every one is running.

        A worker that dies (segfault, out-of-memory kill) breaks the whole pool: the tasks that were
        running are re-run one at a time in a fresh pool, so only the one that kills its worker
        again is reported failed.
        """
        pending = list(reversed(tasks))  # pop() takes them in order
        suspects: list[Task] = []  # running when the pool broke: re-run alone
        running: dict = {}  # future -> (task, alone)
        while pending or suspects or running:
            if suspects and not running:
                task = suspects.pop(0)
                running[self._pool.submit(fn, task, self._settings)] = (task, True)
            while pending and not suspects and len(running) < self.jobs:
                task = pending.pop()
                running[self._pool.submit(fn, task, self._settings)] = (task, False)
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
                    outcome = Outcome.died("the worker process died (killed, or out of memory)")
                yield task, outcome
            if broken:
                suspects += [task for task, _ in running.values()]
                running.clear()
                self._pool.shutdown(wait=True, cancel_futures=True)
                self.start(self._settings)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None


def _init_local_worker(settings: WorkerSettings, driver_pid: int, gpus: tuple[str, ...] = (), counter=None) -> None:
    """Pool worker set-up: its GPU (before anything initialises CUDA), ``threads`` torch threads, plugins
    loaded, and die with the sweep (even on kill -9)."""
    if gpus and counter is not None:
        with counter.get_lock():
            index = counter.value
            counter.value += 1
        pin_worker(index, list(gpus))
    import torch

    torch.set_num_threads(settings.threads)
    runner_for(settings)  # loads the plugins before any task is unpickled (a spawned worker has none)
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


# --------------------------------------------------------------------------- Ray
class RayBackend:
    """Each task a Ray task with ``threads`` CPUs, on the cluster at ``address`` or a local Ray.

    Tasks travel pickled and are opened on the worker after the plugins are loaded (their classes
    pickle by name). If Ray is already initialised in this process (``ray.init`` called by the
    caller), that instance is used and left running.
    """

    name = "ray"
    in_process = False
    shares_files = False  # the driver writes config.json, log.csv and results.json from what tasks return

    def __init__(self, *, address: Optional[str] = None, threads: int = 1, num_cpus: Optional[int] = None,
                 gpus_per_run: float = 0.0) -> None:
        self.address = address  # None: a local Ray started here with num_cpus CPUs
        self.threads = threads  # CPUs requested per task (= torch threads per run)
        self.gpus_per_run = gpus_per_run  # GPUs requested per task (a fraction shares one; Ray pins the task to it)
        self.num_cpus = num_cpus  # CPUs of a local Ray (None: all cores)
        self._owned = False  # whether this backend started Ray (and so shuts it down)
        self._settings_ref = None

    def check(self) -> None:
        """Fail fast on a missing Ray or on a cluster address that accepts no connection."""
        try:
            import ray  # noqa: F401
        except ImportError:
            raise ConfigError("the Ray backend needs Ray", where="--backend", value="ray",
                              expected="pip install 'clproto[ray]'") from None
        if self.address:
            check_address(self.address)

    def describe(self) -> str:
        where = self.address or f"a local Ray ({self.num_cpus or 'all'} CPUs)"
        gpus = f", {self.gpus_per_run:g} GPU(s)" if self.gpus_per_run else ""
        return f"ray: {where}, {self.threads} CPU(s){gpus} per run"

    def start(self, settings: WorkerSettings) -> None:
        import ray

        if not ray.is_initialized():
            try:
                if self.address:
                    ray.init(address=self.address, logging_level="ERROR", log_to_driver=True)
                else:
                    ray.init(num_cpus=self.num_cpus, include_dashboard=False, logging_level="ERROR")
            except (ConnectionError, RuntimeError, ValueError) as exc:
                raise ConfigError(f"cannot start or connect to Ray ({exc})", where="--address",
                                  value=self.address) from None
            self._owned = True
        if self.gpus_per_run:  # a task asking for more than the cluster has would wait forever: say so now
            have = float(ray.cluster_resources().get("GPU", 0))
            if have < self.gpus_per_run:
                self.close()
                raise ConfigError(f"the Ray cluster has {have:g} GPU(s), each run asks for {self.gpus_per_run:g}",
                                  where="--gpus-per-run", value=self.gpus_per_run,
                                  expected=f"at most {have:g} (0 without GPUs)")
        self._settings_ref = ray.put(settings)

    def map(self, fn: TaskFn, tasks: list[Task]) -> Iterator[tuple[Task, Outcome]]:
        import ray
        from ray.exceptions import RayError

        remote = ray.remote(num_cpus=self.threads, num_gpus=self.gpus_per_run, max_retries=0)(_ray_execute)
        refs = {remote.remote(fn, pickle.dumps(task), self._settings_ref): task for task in tasks}
        while refs:
            done, _ = ray.wait(list(refs), num_returns=1)
            for ref in done:
                task = refs.pop(ref)
                try:
                    outcome = ray.get(ref)
                except RayError as exc:  # the worker died, or Ray itself failed the task
                    outcome = Outcome.died(f"{type(exc).__name__}: {exc}".splitlines()[0], str(exc))
                yield task, outcome

    def close(self) -> None:
        self._settings_ref = None
        if self._owned:
            import ray

            ray.shutdown()
            self._owned = False


def _ray_execute(fn: TaskFn, task_bytes: bytes, settings: WorkerSettings) -> Outcome:
    """In a Ray worker: load the plugins, open the task, run it (quietly: no progress bars in the logs)."""
    try:
        runner_for(settings)
        task = pickle.loads(task_bytes)
    except Exception as exc:  # e.g. a plugin file missing on this node
        return Outcome(status="failed", seconds=0.0, error=f"{type(exc).__name__}: {exc}")
    return fn(task, settings)


def check_address(address: str, *, timeout: float = 5.0) -> None:
    """Fail fast (ConfigError) when ``host:port`` or ``ray://host:port`` accepts no connection."""
    if address in ("auto", "local"):
        return
    rest = address.split("://", 1)[1] if "://" in address else address
    host, sep, port = rest.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ConfigError("malformed Ray address", where="--address", value=address,
                          expected="HOST:PORT, ray://HOST:PORT or auto")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout):
            pass
    except OSError as exc:
        raise ConfigError(f"cannot reach the Ray cluster ({exc})", where="--address", value=address,
                          expected="the address of a running Ray head node (see `ray start --head`)") from None
