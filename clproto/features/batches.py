"""uint8 image batches read ahead of the forward pass, from an array that may be a memory map larger than RAM.

    with prefetched(images, batch=256, pin=True) as batches:
        for start, host in batches:          # host: (B, H, W, C) uint8 torch tensor (pinned when pin=True)
            x = host.to(device, non_blocking=True)

Why a thread and not DataLoader workers: the images are already decoded (the decoded store,
:mod:`clproto.data.kinds.decoded`), so reading a batch is one copy out of the memory map (page faults
from disk on a cold store) plus, for CUDA, one copy into pinned memory. numpy and torch release the GIL
for both, and the forward pass releases it too, so one thread keeps ``depth`` batches ready while the
device computes, with no worker processes, no pickling of batches through shared memory and no second
copy of the store. Worker processes would only pay off if batches needed Python-heavy decoding.

Each batch is a contiguous copy (never a view into the map), and the map's pages it came from are
handed back to the kernel right after the copy (:func:`clproto.pages.release_rows`), so streaming an
8 GB store keeps the resident set at about ``depth + 2`` batches. Batches come in order, starting at
row 0; an error in the reader is raised in the consumer at the batch where it happened, and leaving the
``with`` block early (an exception in the forward pass) stops the reader.
"""

from __future__ import annotations

import queue
import threading
from contextlib import contextmanager
from typing import Callable, Iterator, Sequence, TypeVar

import numpy as np
import torch

from clproto.data.rows import gather
from clproto.pages import release_rows

T = TypeVar("T")  # what one read is asked for: a start row, an array of rows
DEPTH = 2  # batches read ahead: one being copied to the device, one ready (more only costs RAM)
_DONE = object()


def pin(tensor: torch.Tensor) -> torch.Tensor:
    """Page-locked copy of a host tensor (CUDA copies from it can run asynchronously). A module-level
    function so tests on machines without CUDA can stand in for it."""
    return tensor.pin_memory()


def read_batch(images: np.ndarray, start: int, stop: int) -> torch.Tensor:
    """Rows ``[start, stop)`` as a contiguous uint8 tensor (a copy: the map's pages are released after it)."""
    host = torch.from_numpy(np.array(images[start:stop], copy=True))  # (B, H, W, C) uint8
    release_rows(images, start, stop)
    return host


@contextmanager
def read_ahead(jobs: Sequence[T], read: Callable[[T], torch.Tensor], *, pin_memory: bool = False,
               depth: int = DEPTH) -> Iterator[Iterator[tuple[T, torch.Tensor]]]:
    """An iterator of ``(job, read(job))`` over ``jobs`` in order, each ``read`` done by a background thread
    ``depth`` jobs ahead (its tensor pinned when ``pin_memory``). An error in ``read`` is raised in the consumer at
    that job; leaving the ``with`` block early stops the thread."""
    if depth < 1:
        raise ValueError(f"depth must be at least 1, not {depth}")
    ready: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item) -> bool:
        while not stop.is_set():
            try:
                ready.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def work() -> None:
        try:
            for job in jobs:
                host = read(job)
                if not put((job, pin(host) if pin_memory else host)):
                    return
            put(_DONE)
        except BaseException as exc:  # handed to the consumer, raised there
            put(exc)

    thread = threading.Thread(target=work, name="clproto-prefetch", daemon=True)
    thread.start()

    def results() -> Iterator[tuple[T, torch.Tensor]]:
        while True:
            item = ready.get()
            if item is _DONE:
                return
            if isinstance(item, BaseException):
                raise item
            yield item

    try:
        yield results()
    finally:
        stop.set()
        thread.join()


@contextmanager
def prefetched(images: np.ndarray, *, batch: int, pin_memory: bool = False, depth: int = DEPTH,
               reader: Callable[[np.ndarray, int, int], torch.Tensor] = read_batch
               ) -> Iterator[Iterator[tuple[int, torch.Tensor]]]:
    """An iterator of ``(start, (B, H, W, C) uint8 tensor)`` over ``images`` in batches of ``batch`` rows, read
    by a background thread ``depth`` batches ahead (pinned when ``pin_memory``)."""
    if batch < 1:
        raise ValueError(f"batch must be at least 1, not {batch}")
    starts = range(0, len(images), batch)
    with read_ahead(starts, lambda start: reader(images, start, min(start + batch, len(images))),
                    pin_memory=pin_memory, depth=depth) as results:
        yield results


def read_rows(images: np.ndarray, rows: np.ndarray) -> torch.Tensor:
    """The rows ``rows`` (any order, e.g. a shuffled epoch's batch) as a contiguous uint8 tensor, each row's pages
    of a memory map released after the copy (:func:`clproto.data.rows.gather`); with :func:`prefetched`'s
    ``reader`` over a permutation::

        reader = lambda images, start, stop: read_rows(images, order[start:stop])
    """
    return gather(images, rows)
