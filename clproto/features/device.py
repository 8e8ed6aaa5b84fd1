"""Where and how a backbone extracts: the run's device and precision, the batch size, pinned copies.

The run's :class:`~clproto.context.RunContext` says the device (``cpu``, ``cuda``, ``cuda:N``, ``mps``)
and the precision (``fp32``, ``bf16``, ``fp16``). :func:`plan_for` turns it into an
:class:`ExtractionPlan`; :func:`extract_on_device` runs a model over uint8 images with it:

* uint8 batches are read ahead from the (memory-mapped) store by a thread
  (:mod:`clproto.features.batches`), pinned when the device is CUDA, and copied to the device
  with ``non_blocking=True`` — a quarter of the bytes of a float batch;
* scaling, resizing and normalisation run on the device (:meth:`Preprocess.on_device`);
* the model runs under ``autocast`` at bf16/fp16; features are cast back to float32, and stay float32
  in the cache;
* at fp32 on CUDA, TF32 convolutions and matmuls are switched off for the extraction (and restored
  after), so "fp32" means float32 arithmetic as on the CPU.

Batch size: the table's ``batch`` when it was set; left at its default
(:data:`~clproto.features.backbone.tables.DEFAULT_BATCH`, chosen for CPUs) it becomes
:data:`DEVICE_BATCH` of the device type on an accelerator. On the CPU nothing differs from a plain
loop: the same operations in the same order, so features are bit-for-bit those of earlier versions.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np
import torch

from clproto.context import RunContext
from clproto.devices import device_type
from clproto.features.backbone.tables import DEFAULT_BATCH
from clproto.features.batches import prefetched

DEVICE_BATCH = {"cuda": 256, "mps": 64}  # images per forward pass on an accelerator when the table leaves `batch` at its default


@dataclass(frozen=True, kw_only=True)
class ExtractionPlan:
    """How one extraction runs."""

    device: str = "cpu"  # a resolved torch device name: cpu, cuda, cuda:N or mps
    precision: str = "fp32"  # fp32 | bf16 | fp16: the forward pass under autocast at bf16/fp16
    batch: int = DEFAULT_BATCH  # images per forward pass
    pin_memory: bool = False  # pinned host batches and non-blocking copies (CUDA only)

    @property
    def context(self) -> RunContext:
        return RunContext(device=self.device, precision=self.precision)


def batch_for(device: str, table_batch: int) -> int:
    """The batch size on ``device``: the table's, unless it is the CPU-tuned default and the device an accelerator."""
    kind = device_type(device)
    if table_batch != DEFAULT_BATCH or kind not in DEVICE_BATCH:
        return table_batch
    return DEVICE_BATCH[kind]


def plan_for(context: Optional[RunContext], *, table_batch: int = DEFAULT_BATCH) -> ExtractionPlan:
    """The plan of a run's context (None: CPU, fp32, the table's batch — what extraction always did)."""
    ctx = (context or RunContext()).resolved()
    return ExtractionPlan(device=ctx.device, precision=ctx.precision, batch=batch_for(ctx.device, table_batch),
                          pin_memory=ctx.device.startswith("cuda"))


def precision_tag(context: Optional[RunContext]) -> str:
    """What a precision adds to a feature cache key: "" at fp32 (keys of earlier versions hold), else its name."""
    precision = context.precision if context is not None else "fp32"
    return "" if precision == "fp32" else precision


@contextlib.contextmanager
def _no_tf32(device: str):
    """fp32 on CUDA: no TF32 in convolutions or matmuls while extracting (restored after)."""
    if not device.startswith("cuda"):
        yield
        return
    saved = (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32)
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


def extract_on_device(prepare: Callable[[torch.Tensor], torch.Tensor], model: Callable[[torch.Tensor], torch.Tensor],
                      images: np.ndarray, out: np.ndarray, *, plan: ExtractionPlan, progress: bool = True,
                      desc: str = "") -> np.ndarray:
    """``out[i] = model(prepare(images[i]))`` batch by batch: ``prepare`` takes a ``(B, H, W, C)`` uint8 tensor
    on ``plan.device`` and returns the model's float input there (at float32: no autocast); ``model`` returns
    ``(B, D)`` features (under autocast at bf16/fp16) and may raise on a bad output.

    While the device runs batch ``k``, the reader thread copies batch ``k + 1`` out of the store (and pins
    it); the copy back to the host of batch ``k``'s features is synchronous, small next to the forward pass.
    """
    from clproto.progress import progress_bar

    device = torch.device(plan.device)
    ctx = plan.context
    total = -(-len(images) // plan.batch)
    guard = _no_tf32(plan.device) if plan.precision == "fp32" else contextlib.nullcontext()
    with guard, prefetched(images, batch=plan.batch, pin_memory=plan.pin_memory) as batches:
        for start, host in progress_bar(batches, desc=desc, enabled=progress, total=total, unit="batch"):
            x = host.to(device, non_blocking=plan.pin_memory)  # (B, H, W, C) uint8 on the device
            inputs = prepare(x)  # (B, 3, S, S) float32
            with ctx.autocast():
                f = model(inputs)  # (B, D)
            out[start:start + len(f)] = f.float().cpu().numpy()  # float32 whatever the precision
    return out


def takes_context(backbone) -> bool:
    """Whether ``backbone.extract`` takes the run's ``context`` (the model kinds do; pixels and a plugin's own
    backbone may not, and then extract as they always did — and their cache keys never carry a precision)."""
    import inspect

    try:
        return "context" in inspect.signature(backbone.extract).parameters
    except (TypeError, ValueError):
        return False


def extract_with(backbone, images: np.ndarray, *, context: Optional[RunContext], **kwargs) -> np.ndarray:
    """``backbone.extract(images, **kwargs)``, given the run's ``context`` when it takes one."""
    if context is not None and takes_context(backbone):
        return backbone.extract(images, context=context, **kwargs)
    return backbone.extract(images, **kwargs)


def key_precision(backbone, context: Optional[RunContext]) -> str:
    """The precision part of ``backbone``'s feature cache key under ``context`` ("" = none, as before)."""
    return precision_tag(context) if takes_context(backbone) else ""
