"""Devices and precision of a run: what they add to its identity, what results.json records, where tensors go.

    context = RunContext(device="cuda", precision="bf16").resolved()
    compute_identity(context.device, context.precision)  # {"device": "cuda", "precision": "bf16"}
    module = place(build_network(...), context.torch_device)  # on the device; channels-last conv nets on CUDA

Identity rule: the device *type* (``cpu``, ``cuda``, ``mps`` — not the index: ``cuda:0`` and ``cuda:1`` compute
the same numbers) and the precision change a run's numbers, so they belong to its identity — but only when
they differ from ``cpu``/``fp32``: every run identity recorded before devices existed (all CPU, float32)
stays what it was (:func:`compute_identity` returns ``None`` there, and
:func:`clproto.runner.resolved_config` adds nothing). A CPU-fp32 run and a GPU-bf16 run of the same name
then have different configurations: ``clproto run`` refuses to mix them in one folder, ``clproto report``
refuses to pool them (or splits them into rows with ``--split-configs``).

``deterministic`` is not part of the identity: on CUDA it trades speed for run-to-run repeatability of the
same computation (torch's deterministic algorithms, no cuDNN autotuning), it does not choose another one.
cuBLAS needs ``CUBLAS_WORKSPACE_CONFIG=:4096:8`` in the environment before CUDA starts: the command line
sets it (its edge module, :mod:`clproto.cli_common`); from Python, set it yourself —
:func:`prepare_run` says so rather than let cuBLAS fail deep inside a run.

A leaf above :mod:`clproto.context`: torch only inside functions.
"""

from __future__ import annotations

import contextlib
import os
from typing import Any, Optional

from clproto.context import RunContext
from clproto.errors import ConfigError

DEFAULT_DEVICE_TYPE = "cpu"  # runs on it (at DEFAULT_PRECISION) keep the identity they had before devices existed
DEFAULT_PRECISION = "fp32"
CUBLAS_WORKSPACE = ":4096:8"  # what deterministic cuBLAS needs in CUBLAS_WORKSPACE_CONFIG (set by the CLI edge)


def device_type(device: str) -> str:
    """``"cuda:1"`` -> ``"cuda"``; a resolved device name (not ``"auto"``)."""
    if device == "auto":
        raise ConfigError("resolve the device first (RunContext.resolved())", field="device", value=device)
    return device.split(":", 1)[0]


def compute_identity(device: str, precision: str) -> Optional[dict]:
    """What a resolved ``device`` and ``precision`` add to a run's identity: ``None`` for cpu/fp32 (identities
    recorded before devices existed are unchanged), else ``{"device": <type>, "precision": <precision>}``."""
    kind = device_type(device)
    if kind == DEFAULT_DEVICE_TYPE and precision == DEFAULT_PRECISION:
        return None
    return {"device": kind, "precision": precision}


def context_identity(context: RunContext) -> Optional[dict]:
    """:func:`compute_identity` of a context (resolved here when it is not)."""
    context = context.resolved()
    return compute_identity(context.device, context.precision)


def compute_record(context: RunContext) -> dict:
    """What results.json records of how a run computed: device, its name, precision, deterministic, versions."""
    import torch

    context = context.resolved()
    kind = device_type(context.device)
    name = "cpu"
    if kind == "cuda":
        name = torch.cuda.get_device_name(context.torch_device)
    elif kind == "mps":
        name = "Apple MPS"
    cudnn = torch.backends.cudnn.version() if kind == "cuda" and torch.backends.cudnn.is_available() else None
    return {"device": context.device, "device_name": name, "precision": context.precision,
            "deterministic": context.deterministic, "torch": torch.__version__,
            "cuda": torch.version.cuda, "cudnn": cudnn}


def prepare_run(context: RunContext) -> None:
    """Set torch's process-wide switches for a run on ``context`` (resolved). CUDA: deterministic algorithms
    and no cuDNN autotuning when ``deterministic``, else autotuning on; CPU and MPS: nothing to set."""
    import torch

    if device_type(context.device) != "cuda":
        return
    if context.deterministic and os.environ.get("CUBLAS_WORKSPACE_CONFIG") not in (CUBLAS_WORKSPACE, ":16:8"):
        raise ConfigError("deterministic CUDA runs need CUBLAS_WORKSPACE_CONFIG=:4096:8 in the environment before "
                          "CUDA starts (the clproto command line sets it with --deterministic)", field="deterministic",
                          value=True, expected="export CUBLAS_WORKSPACE_CONFIG=:4096:8, or deterministic = false")
    torch.use_deterministic_algorithms(context.deterministic)
    torch.backends.cudnn.benchmark = not context.deterministic
    torch.backends.cudnn.deterministic = context.deterministic


def rng_devices(device: Any) -> list[int]:
    """The CUDA device indices whose generators a fork of the RNG must save and restore: the run's CUDA device
    (``torch.device`` or name), none on CPU and MPS."""
    import torch

    device = torch.device(device)
    if device.type != "cuda":
        return []
    return [device.index if device.index is not None else torch.cuda.current_device()]


@contextlib.contextmanager
def fork_rng(device: Any = "cpu"):
    """:func:`torch.random.fork_rng` of the CPU generator and, on CUDA, of ``device``'s generator: draws inside
    leave the caller's generators as they were. (clproto draws everything from CPU generators — initialisations
    are made on the CPU, then moved — so the device's generator is forked for code that draws on the device.
    MPS: the CPU generator only.)"""
    import torch

    with torch.random.fork_rng(devices=rng_devices(device)):
        yield


def place(module, device: Any):
    """``module`` moved to ``device``; on CUDA a network with convolutions also in channels-last memory (the
    layout cuDNN's fast kernels want; inputs are channels-last already, :func:`clproto.training.inputs.to_input`).
    On the CPU only the move (a no-op): CPU numbers stay those of before."""
    import torch
    import torch.nn as nn

    device = torch.device(device)
    module = module.to(device)
    if device.type == "cuda" and any(isinstance(m, nn.Conv2d) for m in module.modules()):
        module = module.to(memory_format=torch.channels_last)
    return module
