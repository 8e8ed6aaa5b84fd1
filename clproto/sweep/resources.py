"""What one run of a sweep asks for (CPUs, GPUs), and which GPU each local worker process gets.

``cpus_per_run`` and ``gpus_per_run`` come from the sweep file's ``[sweep]`` table, overridden by
``--threads`` / ``--gpus-per-run``. The Ray backend requests them per task (``num_cpus``, ``num_gpus``;
a fraction of a GPU lets several runs share one, Ray sets each task's ``CUDA_VISIBLE_DEVICES``).

The local process pool pins each worker to one GPU, round-robin over the visible ones, by setting
``CUDA_VISIBLE_DEVICES`` in the worker before anything in it initialises CUDA — rather than handing
each run ``cuda:N``: with the variable set, everything in the worker (torch, timm, a plugin calling
``.cuda()``) sees its one device as ``cuda:0``, so a run's recorded device (``cuda``) and therefore its
configuration do not depend on which GPU the pool happened to give it. It works because the pool's
workers are forked from a driver that never initialised CUDA (counting GPUs here reads
``CUDA_VISIBLE_DEVICES`` or asks NVML, never the CUDA runtime), and each one sets the variable first
thing in its initializer. With a fraction ``g`` per run, at most ``floor(GPUs / g)`` runs share the GPUs.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Optional

from clproto.errors import ConfigError


@dataclass(frozen=True, kw_only=True)
class RunResources:
    """What each run of a sweep requests."""

    cpus: int = 1  # CPUs (= torch threads) per run
    gpus: float = 0.0  # GPUs per run; a fraction shares a GPU between runs (0: CPU only)

    def __post_init__(self) -> None:
        if isinstance(self.cpus, bool) or not isinstance(self.cpus, int) or self.cpus < 1:
            raise ConfigError("must be an integer of at least 1", field="cpus_per_run", value=self.cpus)
        if isinstance(self.gpus, bool) or not isinstance(self.gpus, (int, float)) or not (
                0 <= self.gpus and math.isfinite(self.gpus)):
            raise ConfigError("must be a number of at least 0 (a fraction shares a GPU)", field="gpus_per_run",
                              value=self.gpus)
        if self.gpus > 1 and self.gpus != int(self.gpus):
            raise ConfigError("more than one GPU must be a whole number", field="gpus_per_run", value=self.gpus,
                              expected="a fraction up to 1, or 1, 2, ...")


def resources(*, threads: int, gpus_per_run: Optional[float], file_cpus: Optional[int] = None,
              file_gpus: Optional[float] = None, threads_given: bool = False, where: str = "sweep") -> RunResources:
    """Per-run resources: the command line's (``--threads``, ``--gpus-per-run``) over the sweep file's."""
    cpus = threads if threads_given or file_cpus is None else file_cpus
    gpus = gpus_per_run if gpus_per_run is not None else (file_gpus or 0.0)
    try:
        return RunResources(cpus=cpus, gpus=float(gpus) if not isinstance(gpus, bool) else gpus)
    except ConfigError as exc:
        from_cli = (exc.field == "gpus_per_run" and gpus_per_run is not None) or (exc.field == "cpus_per_run"
                                                                                  and threads_given)
        raise ConfigError(exc.message, where="--gpus-per-run" if from_cli and exc.field == "gpus_per_run" else
                          "--threads" if from_cli else where, field=None if from_cli else f"sweep.{exc.field}",
                          value=exc.value, expected=exc.expected) from None


def visible_gpus() -> list[str]:
    """The GPUs a worker may be pinned to (``CUDA_VISIBLE_DEVICES`` entries, else ``0 .. n-1`` from NVML),
    found without initialising CUDA in this process (it forks workers that will)."""
    given = os.environ.get("CUDA_VISIBLE_DEVICES")
    if given is not None:
        return [d.strip() for d in given.split(",") if d.strip() and d.strip() != "-1"]
    try:
        import torch

        count = torch.cuda._device_count_nvml()  # NVML: no CUDA context; -1 when NVML is unusable
    except Exception:
        count = -1
    return [str(i) for i in range(max(0, count))]


def local_jobs(jobs: int, res: RunResources, gpus: list[str]) -> int:
    """How many runs the local pool runs at once: ``jobs``, capped by what the GPUs hold at ``res.gpus`` each."""
    if res.gpus == 0:
        return jobs
    if res.gpus > 1:
        raise ConfigError("the local backend pins each worker to one GPU", where="--gpus-per-run", value=res.gpus,
                          expected="at most 1 with --backend local (several GPUs per run: --backend ray)")
    if not gpus:
        raise ConfigError("no GPU is visible to this process (CUDA_VISIBLE_DEVICES, NVML)", where="--gpus-per-run",
                          value=res.gpus, expected="0 on a machine without GPUs")
    return max(1, min(jobs, math.floor(len(gpus) / res.gpus + 1e-9)))


def pin_worker(index: int, gpus: list[str]) -> Optional[str]:
    """In a fresh worker (before CUDA is initialised): make GPU ``gpus[index % len(gpus)]`` its only device."""
    if not gpus:
        return None
    device = gpus[index % len(gpus)]
    os.environ["CUDA_VISIBLE_DEVICES"] = device
    return device
