"""What both directions of the Avalanche adapter share: reading Avalanche datasets sample by sample.

The per-sample data attribute ``clproto_index`` (:data:`INDEX_ATTRIBUTE`), the error wording for
benchmarks handed to clproto, and the readers of a dataset's inputs, labels and indices used by
:func:`clproto.avalanche.from_avalanche` and :class:`clproto.avalanche.ClprotoTemplate`.
"""

from __future__ import annotations

import hashlib
from typing import Any, Optional, Sequence

import numpy as np
import torch

from clproto.errors import ConfigError
from clproto.progress import progress_bar

INDEX_ATTRIBUTE = "clproto_index"  # per-sample data attribute: index into the clproto dataset split
WHERE = "from_avalanche"  # `where` of errors about a benchmark handed to clproto
SUPPORTED_BENCHMARKS = (
    "a class-incremental Avalanche benchmark with `train_stream` and `test_stream` of equal length "
    "whose experiences hold classification datasets (AvalancheDataset with `targets`), e.g. from "
    "class_incremental_benchmark, benchmark_from_datasets or clproto.avalanche.to_avalanche"
)


def _as_array(x: Any, where: str) -> np.ndarray:
    """One sample's input as an array: uint8 (H, W, C) image or flattened float32 features."""
    if isinstance(x, torch.Tensor):
        arr = x.detach().cpu().numpy()
    elif isinstance(x, np.ndarray):
        arr = x
    elif type(x).__module__.startswith("PIL."):
        arr = np.asarray(x)
    else:
        raise ConfigError(f"unsupported sample input of type {type(x).__name__}", where=WHERE, field=where,
                          expected="a torch tensor, numpy array or PIL image")
    if arr.dtype == np.uint8:
        if arr.ndim == 2:  # greyscale (H, W) -> (H, W, 1)
            arr = arr[..., None]
        if arr.ndim != 3:
            raise ConfigError(f"uint8 sample of shape {arr.shape}", where=WHERE, field=where,
                              expected="uint8 images of shape (H, W) or (H, W, C)")
        return arr
    if np.issubdtype(arr.dtype, np.floating):
        return arr.reshape(-1).astype(np.float32)  # (D,) feature vector
    raise ConfigError(f"sample input of dtype {arr.dtype}", where=WHERE, field=where,
                      expected="uint8 images or floating-point features")


def _targets(data: Any, where: str) -> np.ndarray:
    targets = getattr(data, "targets", None)
    if targets is None or not hasattr(data, "__getitem__"):
        raise ConfigError(f"unsupported dataset type {type(data).__name__} (no `targets` attribute)",
                          where=WHERE, field=where, expected=SUPPORTED_BENCHMARKS)
    y = np.asarray([int(t) for t in targets], dtype=np.int64)  # (N,)
    if len(y) != len(data):
        raise ConfigError(f"dataset has {len(data)} samples but {len(y)} targets", where=WHERE, field=where)
    if len(y) and y.min() < 0:
        raise ConfigError("negative class labels", where=WHERE, field=where, value=int(y.min()),
                          expected="class ids 0..C-1")
    return y


def _inputs(data: Any, where: str) -> np.ndarray:
    """(N, ...) inputs of an Avalanche dataset, read sample by sample with its current transforms."""
    rows = []
    shape = None
    for i in progress_bar(range(len(data)), desc=f"read {where}", unit="sample"):
        item = data[i]
        x = _as_array(item[0] if isinstance(item, (tuple, list)) else item, where)
        if shape is None:
            shape = (x.shape, x.dtype)
        elif (x.shape, x.dtype) != shape:
            raise ConfigError(f"sample {i} has shape {x.shape} ({x.dtype}), earlier ones {shape[0]} ({shape[1]})",
                              where=WHERE, field=where, expected="every sample of one shape and dtype")
        rows.append(x)
    if not rows:
        raise ConfigError("experience has no samples", where=WHERE, field=where)
    return np.stack(rows)


def _indices(data: Any) -> Optional[np.ndarray]:
    attr = getattr(data, INDEX_ATTRIBUTE, None)
    return None if attr is None else np.asarray([int(i) for i in attr], dtype=np.int64)


def _ordered(exp: Any, classes: set, order: Optional[Sequence[int]]) -> tuple[int, ...]:
    listed = getattr(exp, "clproto_classes", None)
    if listed is not None and set(listed) == classes:
        return tuple(int(c) for c in listed)
    if order is not None:
        return tuple(c for c in order if c in classes)
    return tuple(sorted(classes))


def _hash(*arrays: np.ndarray) -> str:
    h = hashlib.blake2b(b"from-avalanche-v1", digest_size=20)
    for a in arrays:
        h.update(str((a.shape, a.dtype.str)).encode())
        h.update(np.ascontiguousarray(a).data)
    return h.hexdigest()
