"""Sweeps: the cross product of scenarios × strategies × seeds × override values, run resumably.

``clproto sweep`` runs a grid on a process pool or on Ray; ``clproto run`` is a sweep of one grid
executed in this process. Both go through one driver — plan → ``backend.map(execute)`` → record —
and every run lives in its own folder ``<out>/<scenario>/<strategy>/seed<k>/``. The modules, in
the order a run passes through them:

=====================================  ==========================================================
:mod:`clproto.sweep.grid`              the sweep file schema; expanding grids into :class:`RunSpec`
:mod:`clproto.sweep.tasks`             :class:`RunSpec`, :class:`WorkerSettings`, tasks, outcomes
:mod:`clproto.sweep.plan`              finished / to run / refused; one sweep per output folder
:mod:`clproto.sweep.driver`            :func:`run_sweep`: prepare, execute, record every outcome
:mod:`clproto.sweep.backends`          in-process, local process pool, Ray
:mod:`clproto.sweep.worker`            executing one task in a worker
:mod:`clproto.sweep.cli`               the ``clproto sweep`` command
=====================================  ==========================================================

A run is identified by the hash of its fully resolved configuration: a folder whose
``results.json`` carries that configuration is finished and skipped; a folder holding another
configuration is an error before anything runs. A run that raises is recorded as ``error.txt``
(with the traceback) and the sweep goes on; the next invocation retries it.
"""

from clproto.sweep.backends import InProcessBackend, LocalBackend, RayBackend, default_jobs
from clproto.sweep.driver import SweepSummary, run_sweep
from clproto.sweep.grid import GridConfig, SweepConfig, check_seeds, expand_grid, load_sweep
from clproto.sweep.plan import check_out, plan
from clproto.sweep.tasks import Outcome, RunSpec, RunTask, WorkerSettings, worker_settings

__all__ = [
    "GridConfig", "InProcessBackend", "LocalBackend", "Outcome", "RayBackend", "RunSpec", "RunTask", "SweepConfig",
    "SweepSummary", "WorkerSettings", "check_out", "check_seeds", "default_jobs", "expand_grid", "load_sweep", "plan",
    "run_sweep", "worker_settings",
]
