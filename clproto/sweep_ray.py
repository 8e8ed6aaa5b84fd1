"""Ray backend for sweeps: every run is one Ray task on an existing cluster, or on a local Ray.

    clproto sweep sweeps/reference.toml --backend ray --address HEAD:6379   # an existing cluster
    clproto sweep sweeps/reference.toml --backend ray                        # starts a local Ray

Tasks return their :class:`~clproto.evaluation.results.RunResult` (as a dict) and the driver
writes ``config.json`` / ``results.json`` / ``error.txt`` into the output folder, so the
cluster's nodes need no shared filesystem for results — only the data (and, for speed, the
feature cache) under the same paths. A task that raises, or whose worker dies, comes back
as a failed outcome: it is recorded and the other tasks go on. Ray is an optional extra:
``pip install clproto[ray]``. If Ray is already initialised in this process (``ray.init``
called by the caller), that instance is used and left running.
"""

from __future__ import annotations

import os
import socket
from typing import Iterator, Optional

from clproto.errors import ConfigError
from clproto.sweep import Outcome, TaskFn, execute


def _ray_execute(task: dict, settings: dict) -> Outcome:
    os.environ["CLPROTO_PROGRESS"] = "0"  # a Ray worker process: no progress bars in the logs
    return execute(task, settings)


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


class RayBackend:
    """Submit each task to Ray with ``threads`` CPUs; yield outcomes as they finish."""

    name = "ray"
    writes_results = False  # remote workers return results; the driver writes them

    def __init__(self, *, address: Optional[str] = None, threads: int = 1, num_cpus: Optional[int] = None) -> None:
        self.address = address  # None: a local Ray started here with num_cpus CPUs
        self.threads = threads  # CPUs requested per task (= torch threads per run)
        self.num_cpus = num_cpus  # CPUs of a local Ray (None: all cores)
        self._owned = False  # whether this backend started Ray (and so shuts it down)

    def check(self) -> None:
        """Fail fast on a cluster address that accepts no connection (or on a missing Ray)."""
        try:
            import ray  # noqa: F401
        except ImportError:
            raise ConfigError("the Ray backend needs Ray", where="--backend", value="ray",
                              expected="pip install 'clproto[ray]'") from None
        if self.address:
            check_address(self.address)

    def start(self) -> None:
        import ray

        if ray.is_initialized():
            return
        try:
            if self.address:
                ray.init(address=self.address, logging_level="ERROR", log_to_driver=True)
            else:
                ray.init(num_cpus=self.num_cpus, include_dashboard=False, logging_level="ERROR")
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise ConfigError(f"cannot start or connect to Ray ({exc})", where="--address",
                              value=self.address) from None
        self._owned = True

    def describe(self) -> str:
        where = self.address or f"a local Ray ({self.num_cpus or 'all'} CPUs)"
        return f"ray: {where}, {self.threads} CPU(s) per run"

    def map_unordered(self, fn: TaskFn, tasks: list[dict], settings: dict) -> Iterator[tuple[dict, Outcome]]:
        import ray
        from ray.exceptions import RayError

        if fn is not execute:
            raise ValueError("the Ray backend runs clproto.sweep.execute only")
        remote = ray.remote(num_cpus=self.threads, max_retries=0)(_ray_execute)
        settings_ref = ray.put(settings)
        refs = {remote.remote(task, settings_ref): task for task in tasks}
        while refs:
            done, _ = ray.wait(list(refs), num_returns=1)
            for ref in done:
                task = refs.pop(ref)
                try:
                    outcome = ray.get(ref)
                except RayError as exc:  # the worker died, or Ray itself failed the task
                    outcome = {"status": "failed", "error": f"{type(exc).__name__}: {exc}".splitlines()[0],
                               "traceback": str(exc), "seconds": 0.0}
                yield task, outcome

    def close(self) -> None:
        if self._owned:
            import ray

            ray.shutdown()
            self._owned = False
