"""The run context: how a run executes, as opposed to what it computes.

    context = RunContext(seed=0, progress=False)
    loop = TrainingLoop(config=config, seed=0, context=context)

A :class:`RunContext` is built by the :class:`~clproto.runner.Runner` for every run and passed
explicitly — to strategies whose constructor takes a ``context`` keyword, to the
:class:`~clproto.training.loop.TrainingLoop` they build and to base-session training — instead of
travelling through environment variables or the global torch RNG. It never changes a number: the
seed is the run's seed (each component still derives its own generators from it), and progress
bars, threads and listeners only change what is shown or how fast. ``device`` says where tensors live
(``"auto"`` is resolved once, by :meth:`RunContext.resolved`, to CUDA when available, else CPU) and
``precision`` the compute precision of training and extraction (``"bf16"``/``"fp16"``: autocast;
features and stored results stay float32). ``deterministic`` asks torch for deterministic algorithms
on accelerators (CPU runs are deterministic anyway).

A leaf module: it imports nothing from clproto but the error type (torch only inside methods).
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass
from typing import Any, Callable, Optional

from clproto.errors import ConfigError

DEVICES = ("auto", "cpu", "cuda", "cuda:N", "mps")  # the device names a run accepts (N: a CUDA device index)
PRECISIONS = ("fp32", "bf16", "fp16")  # compute precisions: float32, or autocast to bfloat16 / float16


def check_device(name: Any, *, field: str = "device") -> str:
    """``name`` if it is one of :data:`DEVICES` (``cuda:N`` with an integer N >= 0), else ConfigError."""
    ok = isinstance(name, str) and (name in ("auto", "cpu", "cuda", "mps") or (
        name.startswith("cuda:") and name[5:].isdigit()))
    if not ok:
        raise ConfigError("unknown device", field=field, value=name, expected="one of " + ", ".join(DEVICES))
    return name


def resolve_device(name: str) -> str:
    """A device name with ``"auto"`` resolved (CUDA when available, else CPU); a requested accelerator that
    this machine does not have is a ConfigError naming it (never a silent fall-back to the CPU)."""
    import torch

    check_device(name)
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError("CUDA is not available on this machine (torch " + torch.__version__ + ")",
                              field="device", value=name, expected="cpu, or auto")
        index = int(name[5:]) if ":" in name else 0
        if index >= torch.cuda.device_count():
            raise ConfigError(f"this machine has {torch.cuda.device_count()} CUDA device(s)", field="device",
                              value=name, expected=f"cuda:0 .. cuda:{torch.cuda.device_count() - 1}")
    if name == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ConfigError("MPS is not available on this machine", field="device", value=name,
                          expected="cpu, or auto")
    return name


@dataclass(frozen=True)
class RunContext:
    """Execution settings of one run, passed explicitly (keyword-only construction)."""

    seed: int = 0  # the run seed (components derive their own generators from it)
    progress: bool = True  # show progress bars (the CLI's --no-progress / CLPROTO_PROGRESS=0 turn them off)
    device: str = "cpu"  # where tensors live and compute runs: auto | cpu | cuda | cuda:N | mps
    precision: str = "fp32"  # compute precision of training and extraction: fp32 | bf16 | fp16 (autocast)
    deterministic: bool = False  # accelerators: torch's deterministic algorithms (slower); CPU is deterministic
    threads: Optional[int] = None  # torch intra-op threads the caller set (--threads); None = torch's default
    listeners: tuple[Callable[[Any], None], ...] = ()  # told every TrainingEvent of the run's training loops

    def __post_init__(self) -> None:
        if isinstance(self.seed, bool) or not isinstance(self.seed, numbers.Integral):
            raise ConfigError("the seed must be an integer", field="seed", value=self.seed)
        check_device(self.device)
        if self.precision not in PRECISIONS:
            raise ConfigError("unknown precision", field="precision", value=self.precision,
                              expected=" or ".join(PRECISIONS))
        if not isinstance(self.deterministic, bool):
            raise ConfigError("must be true or false", field="deterministic", value=self.deterministic)
        if self.threads is not None and (isinstance(self.threads, bool) or not isinstance(self.threads, numbers.Integral)
                                         or self.threads < 1):
            raise ConfigError("must be at least 1", field="threads", value=self.threads)
        if not isinstance(self.listeners, tuple) or not all(callable(f) for f in self.listeners):
            raise ConfigError("listeners must be a tuple of callables", field="listeners", value=self.listeners)

    def resolved(self) -> "RunContext":
        """This context with ``device = "auto"`` resolved (CUDA when available, else CPU); an accelerator the
        machine lacks is a ConfigError. The runner resolves once per run, so results record the real device."""
        import dataclasses

        device = resolve_device(self.device)
        return self if device == self.device else dataclasses.replace(self, device=device)

    @property
    def torch_device(self):
        """``torch.device`` of this context (call :meth:`resolved` first: ``"auto"`` is not a torch device)."""
        import torch

        if self.device == "auto":
            raise ConfigError("resolve the context first (RunContext.resolved())", field="device", value="auto")
        return torch.device(self.device)

    @property
    def amp_dtype(self):
        """The autocast dtype of this precision, or None for fp32 (no autocast)."""
        import torch

        return {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[self.precision]

    def autocast(self):
        """A context manager running its block at this precision on this device (``nullcontext`` for fp32).
        Parameters, optimiser state, features and stored results stay float32."""
        import contextlib

        import torch

        dtype = self.amp_dtype
        if dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.torch_device.type, dtype=dtype)
